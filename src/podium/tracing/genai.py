"""OpenTelemetry GenAI content as chat messages: the latest conventions' `gen_ai.input.messages`,
`gen_ai.output.messages` (messages of typed `parts`) and `gen_ai.system_instructions`, and the events that
carry content (the older per-message events `gen_ai.user.message`, `gen_ai.choice`…, and the latest
`gen_ai.client.inference.operation.details`), whether they come as span events or as OTLP log records.

Messages keep the shape they were sent in (`{"role", "parts": [...]}` or `{"role", "content"}`); the trace
page renders both as chat bubbles. System instructions become a leading `system` message.
"""

from __future__ import annotations

from typing import Any

import orjson

# events that carry one message each (the older event-based conventions) and the role they imply
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CHOICE_EVENT = "gen_ai.choice"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
FIRST_TOKEN_EVENTS = ("First Token Stream Event",)  # OpenInference's, on a streamed span


def maybe_json(value: Any) -> Any:
    """A string holding a JSON object or array, parsed; anything else as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def with_instructions(messages: Any, instructions: Any) -> Any:
    """Input messages with the system instructions (a list of parts, or text) as a leading system message."""
    instructions = maybe_json(instructions)
    if instructions in (None, "", []):
        return messages
    if isinstance(instructions, str):
        system: dict[str, Any] = {"role": "system", "content": instructions}
    elif isinstance(instructions, list):
        system = {"role": "system", "parts": instructions}
    else:
        system = {"role": "system", "parts": [instructions]}
    if messages is None:
        return [system]
    if isinstance(messages, list):
        return [system, *messages]
    return [system, messages]


def event_message(role: str, body: Any, attributes: dict[str, Any]) -> dict[str, Any]:
    """One message event (its body, or its attributes in older senders) as a message."""
    message: dict[str, Any] = {"role": role}
    fields = body if isinstance(body, dict) else {"content": body} if body is not None else {}
    for key, value in {**attributes, **fields}.items():
        if key in ("gen_ai.system", "gen_ai.provider.name", "event.name"):
            continue
        message[key] = value if key == "content" else maybe_json(value)
    if isinstance(message.get("role"), str) and message["role"]:
        return message
    message["role"] = role
    return message


def choice_message(body: Any, attributes: dict[str, Any]) -> dict[str, Any]:
    """A `gen_ai.choice` event as an OpenAI-style choice (`{"index", "finish_reason", "message"}`) whose
    message has a role."""
    choice = dict(body) if isinstance(body, dict) else {}
    for key, value in attributes.items():
        if key not in ("gen_ai.system", "gen_ai.provider.name", "event.name"):
            choice.setdefault(key, value)
    message = maybe_json(choice.get("message"))
    if isinstance(message, dict):
        choice["message"] = {"role": "assistant", **message}
    elif message is not None:
        choice["message"] = {"role": "assistant", "content": message}
    return choice


def from_events(events: list[dict[str, Any]]) -> tuple[Any, Any]:
    """A span's input and output from GenAI events (each `{"name", "body", "attributes"}`, oldest first);
    None for a side no event carries."""
    inputs: list[Any] = []
    choices: list[dict[str, Any]] = []
    details_in: Any = None
    details_out: Any = None
    for event in events:
        name = event.get("name") or ""
        body = event.get("body")
        attrs = event.get("attributes") or {}
        if name in MESSAGE_EVENTS:
            inputs.append(event_message(MESSAGE_EVENTS[name], body, attrs))
        elif name == CHOICE_EVENT:
            choices.append(choice_message(body, attrs))
        elif name == DETAILS_EVENT:
            fields = {**attrs, **(body if isinstance(body, dict) else {})}
            found_in = maybe_json(fields.get(INPUT_MESSAGES))
            details_in = with_instructions(found_in, fields.get(SYSTEM_INSTRUCTIONS))
            found_out = maybe_json(fields.get(OUTPUT_MESSAGES))
            details_out = found_out if found_out is not None else details_out
    input_value = details_in if details_in is not None else (inputs or None)
    output_value = details_out if details_out is not None else (choices or None)
    return input_value, output_value
