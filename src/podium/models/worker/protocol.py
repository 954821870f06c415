"""Validation of OpenAI-style generation requests inside the worker: every bad field is named."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_STOP = 8
MAX_N = 16
MAX_LOGIT_BIAS = 1024
MAX_TOOLS = 128  # OpenAI's limit
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for function names
# OpenAI chat fields a local model cannot honour: refused with a 400 naming them, never ignored
UNSUPPORTED_CHAT = {
    "audio": "this model does not produce audio",
    "prediction": "predicted outputs are not supported by local models",
    "web_search_options": "local models do not search the web",
    "functions": "the deprecated 'functions' field is not supported; send 'tools' instead",
    "function_call": "the deprecated 'function_call' field is not supported; send 'tool_choice' instead",
    "reasoning_effort": "this model does not reason before answering; remove 'reasoning_effort'",
    "verbosity": "this model has no verbosity setting; bound the answer with 'max_tokens'",
}
# and text-completion fields
UNSUPPORTED_TEXT = {
    "suffix": "inserting between a prompt and a suffix is not supported by local models",
}


class RequestError(Exception):
    """A 400 naming the field at fault."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request", status: int = 400):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


@dataclass
class SamplingParams:
    """Per-request generation settings."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    logprobs: int | None = None  # None: off; k >= 0: the chosen token's logprob and k alternatives
    stream: bool = False
    include_usage: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)


@dataclass
class OutputFormat:
    """`response_format`: free text, any JSON object, or JSON matching `schema`."""

    kind: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None


@dataclass
class ToolRequest:
    """`tools` and `tool_choice`: `functions` are the OpenAI function objects (name, description,
    parameters); `choice` is auto, required, none, or the name of the one tool that must be called."""

    functions: list[dict[str, Any]]
    choice: str
    parallel: bool = True

    @property
    def forced(self) -> str | None:
        """The name of the tool `tool_choice` forces, if it names one."""
        return None if self.choice in ("auto", "required", "none") else self.choice


def _number(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"'{name}' must be a number, got {type(value).__name__}", name)
    if not lo <= float(value) <= hi:
        raise RequestError(f"'{name}' must be between {lo} and {hi}, got {value}", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'{name}' must be an integer, got {type(value).__name__}", name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be between {lo} and {hi}, got {value}", name)
    return value


def parse_sampling(body: dict[str, Any], *, chat: bool) -> SamplingParams:
    """Read and check the sampling fields shared by chat and text completions."""
    max_tokens = _integer(body, "max_completion_tokens", 1, 1_000_000) if chat else None
    if max_tokens is None:
        raw = body.get("max_tokens")
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
            raise RequestError(f"'max_tokens' must be an integer, got {type(raw).__name__}", "max_tokens")
        if raw is not None and raw <= 0:
            raise RequestError(f"'max_tokens' must be at least 1, got {raw}", "max_tokens")
        max_tokens = raw
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise RequestError("'stop' must be a string or a list of strings", "stop")
    if len(stops) > MAX_STOP:
        raise RequestError(f"'stop' takes at most {MAX_STOP} sequences", "stop")
    stops = [s for s in stops if s]
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {type(seed).__name__}", "seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", "stream")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    logprobs: int | None = None
    if chat:
        lp = body.get("logprobs")
        if lp is not None and not isinstance(lp, bool):
            raise RequestError("'logprobs' must be true or false", "logprobs")
        top = _integer(body, "top_logprobs", 0, 20)
        if top is not None and not lp:
            raise RequestError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
        logprobs = (top or 0) if lp else None
    else:
        logprobs = _integer(body, "logprobs", 0, 20)
    n = _integer(body, "n", 1, MAX_N) or 1
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0) or 1.0,
        seed=seed,
        stop=stops,
        n=n,
        logprobs=logprobs,
        stream=stream,
        include_usage=bool(opts.get("include_usage")),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        logit_bias=_logit_bias(body.get("logit_bias")),
    )


def _logit_bias(value: Any) -> dict[int, float]:
    """`logit_bias`: token ids (as JSON object keys) to a bias between -100 and 100."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError("'logit_bias' must be an object of token ids to biases", "logit_bias")
    if len(value) > MAX_LOGIT_BIAS:
        raise RequestError(f"'logit_bias' takes at most {MAX_LOGIT_BIAS} tokens, got {len(value)}", "logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise RequestError(f"'logit_bias' keys are token ids; {key!r} is not one", "logit_bias") from None
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise RequestError(f"'logit_bias[{key}]' must be a number between -100 and 100, got {bias!r}", "logit_bias")
        out[token] = float(bias)
    return out


def check_supported(body: dict[str, Any], *, chat: bool = True) -> None:
    """Refuse fields this engine cannot honour (a 400 naming the field), rather than ignore them."""
    for name, why in (UNSUPPORTED_CHAT if chat else UNSUPPORTED_TEXT).items():
        if body.get(name) is not None:
            raise RequestError(f"'{name}': {why}", name, code="unsupported_parameter")
    if not chat:
        best_of = body.get("best_of")
        if best_of is not None and best_of != body.get("n", 1):
            raise RequestError(
                "'best_of': local models return every sampled choice; send 'n' instead",
                "best_of",
                code="unsupported_parameter",
            )
        return
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise RequestError(
            "'modalities': this model produces text only; send [\"text\"] or leave it out",
            "modalities",
            code="unsupported_parameter",
        )


def parse_response_format(body: dict[str, Any]) -> OutputFormat | None:
    """`response_format`: text (None), json_object, or json_schema with its `json_schema.schema`."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise RequestError('\'response_format\' must be an object such as {"type": "json_object"}', "response_format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat("json_object")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise RequestError(
                "'response_format.json_schema' must be an object with a 'name' and a 'schema' (a JSON Schema object)",
                "response_format.json_schema",
            )
        return OutputFormat("json_schema", spec.get("schema") or {"type": "object"})
    raise RequestError(
        f"'response_format.type' must be text, json_object or json_schema, got {kind!r}", "response_format.type"
    )


def parse_tools(body: dict[str, Any]) -> ToolRequest | None:
    """`tools`, `tool_choice` and `parallel_tool_calls`; None when there are no tools to call."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise RequestError("'parallel_tool_calls' must be true or false", "parallel_tool_calls")
    if tools is None:
        if choice not in (None, "none"):
            raise RequestError("'tool_choice' needs 'tools'", "tool_choice")
        return None
    if not isinstance(tools, list):
        raise RequestError('\'tools\' must be a list of {"type": "function", "function": {...}} objects', "tools")
    if len(tools) > MAX_TOOLS:
        raise RequestError(f"'tools' takes at most {MAX_TOOLS} tools, got {len(tools)}", "tools")
    functions: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise RequestError(f'{where} must be {{"type": "function", "function": {{...}}}}', where)
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise RequestError(
                f"{where}.function.name must be 1-64 letters, digits, '_' or '-', got {name!r}",
                f"{where}.function.name",
            )
        if any(f["name"] == name for f in functions):
            raise RequestError(f"{where}: two tools are named {name!r}", f"{where}.function.name")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise RequestError(
                f"{where}.function.parameters must be a JSON Schema object", f"{where}.function.parameters"
            )
        description = fn.get("description", "")
        if not isinstance(description, str):
            raise RequestError(f"{where}.function.description must be a string", f"{where}.function.description")
        functions.append({"name": name, "description": description, "parameters": params})
    if choice is None or choice in ("auto", "required", "none"):
        picked = choice or "auto"
    elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        picked = choice["function"].get("name")
        if not any(f["name"] == picked for f in functions):
            known = ", ".join(f["name"] for f in functions)
            raise RequestError(f"'tool_choice' names {picked!r}, which is not in 'tools' ({known})", "tool_choice")
    else:
        raise RequestError(
            '\'tool_choice\' must be none, auto, required or {"type": "function", "function": {"name": ...}}',
            "tool_choice",
        )
    if not functions:
        if picked not in ("auto", "none"):
            raise RequestError("'tool_choice' requires a tool call but 'tools' is empty", "tool_choice")
        return None
    return ToolRequest(functions, str(picked), parallel)


def parse_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Check `messages` and flatten content parts to text for the chat template."""
    messages = body.get("messages")
    if messages is None:
        raise RequestError("'messages' is required", "messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(f"messages[{i}] must be an object", f"messages[{i}]")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise RequestError(
                f"messages[{i}].role {role!r} is not system, user, assistant or tool", f"messages[{i}].role"
            )
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise RequestError(
                        f"messages[{i}].content: this model takes text parts only", f"messages[{i}].content"
                    )
                parts.append(str(part.get("text", "")))
            content = "".join(parts)
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string or a list of parts", f"messages[{i}].content")
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": content}
        if m.get("tool_calls"):
            msg["tool_calls"] = m["tool_calls"]
        if m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out
