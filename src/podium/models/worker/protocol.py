"""Validation of OpenAI-style generation requests inside the worker: every bad field is named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_STOP = 8
MAX_N = 16


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
    for name in ("presence_penalty", "frequency_penalty"):
        _number(body, name, 0.0, -2.0, 2.0)
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
    )


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
