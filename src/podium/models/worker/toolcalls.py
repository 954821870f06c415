"""Tool calls on local models, in the text the model reads and writes.

A call is written `<tool_call>` + `{"name": ..., "arguments": {...}}` + `</tool_call>` (the Hermes style that
Qwen and SmolLM3 templates use). A chat template that knows this format renders the tools and the history
itself; for one that does not (SmolLM2's ignores `tools`), the tools are described in the system message,
earlier calls are written back as that text, and results come back as `<tool_response>` blocks in a user
turn. `constrain` holds the model to the format; this module reads calls back out of the text, whole or as
a stream.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

_TOOLS_PROMPT = """You can call tools. Each line between <tools> and </tools> describes one tool as JSON: its name, \
what it does, and the JSON Schema of its arguments.
<tools>
{tools}
</tools>
To call a tool, write one block per call and nothing else:
<tool_call>
{{"name": "<tool name>", "arguments": {{<the arguments as JSON>}}}}
</tool_call>
Each result comes back to you between <tool_response> and </tool_response>. When no tool is needed, answer \
in plain text."""


def template_knows_tools(tokenizer: Any) -> bool:
    """Whether the model's chat template renders tools and calls in the `<tool_call>` format itself."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and CALL_OPEN in template and "tools" in template


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    args = fn.get("arguments", "{}")
    try:
        parsed = json.loads(args) if isinstance(args, str) else args
    except json.JSONDecodeError:
        parsed = args
    return f"{CALL_OPEN}\n{json.dumps({'name': fn.get('name', ''), 'arguments': parsed})}\n{CALL_CLOSE}"


def with_tools_in_prompt(messages: list[dict[str, Any]], functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation rewritten for a template that ignores tools: the tools in the system message,
    earlier calls as `<tool_call>` text, tool results as `<tool_response>` blocks in user turns."""
    listing = "\n".join(json.dumps({"type": "function", "function": f}) for f in functions)
    prompt = _TOOLS_PROMPT.format(tools=listing)
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m["role"]
        if role == "assistant" and m.get("tool_calls"):
            calls = "\n".join(_call_text(c) for c in m["tool_calls"] if isinstance(c, dict))
            out.append({"role": "assistant", "content": "\n".join(p for p in (m.get("content") or "", calls) if p)})
        elif role == "tool":
            block = f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1]["content"].startswith("<tool_response>"):
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + block}
            else:
                out.append({"role": "user", "content": block})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def _call(body: str) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    return {
        "id": "call_" + uuid.uuid4().hex[:24],
        "type": "function",
        "function": {"name": data["name"], "arguments": json.dumps(data.get("arguments", {}))},
    }


def repeated_call(text: str) -> int | None:
    """If `text` ends with a call identical (name and arguments) to an earlier one of the same answer, where
    that last call starts: a small model held to the call format may repeat a call until max_tokens, and a
    call made twice in one answer is never wanted, so the answer ends before the repeat."""
    if not text.rstrip().endswith(CALL_CLOSE):
        return None
    _, calls = parse_calls(text)
    keys = [(c["function"]["name"], c["function"]["arguments"]) for c in calls]
    if len(keys) < 2 or keys[-1] not in keys[:-1]:
        return None
    return text.rfind(CALL_OPEN)


def parse_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(the text outside calls, the OpenAI `tool_calls` in it); a block that is not a call stays text."""
    stream = CallStream()
    pieces = stream.push(text) + stream.finish()
    content = "".join(p for p in pieces if isinstance(p, str))
    return content.strip(), [p for p in pieces if isinstance(p, dict)]


class CallStream:
    """Splits streamed text into content deltas (str) and whole tool calls (dict), holding back text that
    could still turn into `<tool_call>`."""

    def __init__(self) -> None:
        self.buffer = ""
        self.inside = False

    def push(self, delta: str) -> list[str | dict[str, Any]]:
        self.buffer += delta
        out: list[str | dict[str, Any]] = []
        while self.buffer:
            if self.inside:
                end = self.buffer.find(CALL_CLOSE)
                if end < 0:
                    break
                body, self.buffer = self.buffer[:end], self.buffer[end + len(CALL_CLOSE) :]
                self.inside = False
                call = _call(body.strip())
                out.append(call if call is not None else f"{CALL_OPEN}{body}{CALL_CLOSE}")
                self.buffer = self.buffer.lstrip("\n")
                continue
            start = self.buffer.find(CALL_OPEN)
            if start >= 0:
                if start:
                    out.append(self.buffer[:start])
                self.buffer = self.buffer[start + len(CALL_OPEN) :]
                self.inside = True
                continue
            hold = next(
                (
                    k
                    for k in range(min(len(CALL_OPEN) - 1, len(self.buffer)), 0, -1)
                    if self.buffer.endswith(CALL_OPEN[:k])
                ),
                0,
            )
            if len(self.buffer) > hold:
                out.append(self.buffer[: len(self.buffer) - hold])
                self.buffer = self.buffer[len(self.buffer) - hold :]
            break
        return out

    def finish(self) -> list[str | dict[str, Any]]:
        """The end of the text: an unfinished call is returned as the text it is."""
        rest = (CALL_OPEN if self.inside else "") + self.buffer
        self.buffer, self.inside = "", False
        return [rest] if rest else []
