"""OTLP/HTTP trace ingest: decode an `ExportTraceServiceRequest` (protobuf or OTLP/JSON, optionally gzipped)
and map its spans onto Podium's `SpanIn`, reading the OpenTelemetry GenAI conventions (`gen_ai.*`), the
OpenInference attributes (`openinference.span.kind`, `llm.*`, `input.value`…) and a few OpenLLMetry ones.

What a mapping reads into a column (model, tokens, input, output, session, user, tags) leaves the span's
attributes; everything else, resource attributes included (`service.name`), stays there, span attributes
winning over resource ones. Span events other than the GenAI message events go to `otel.events`, links to
`otel.links`, a non-internal OTel span kind to `otel.span_kind`, the instrumentation scope to
`otel.scope.name`/`otel.scope.version`, so that an export (`otlp_export`) can give them back.

A span the mapping cannot take (a zero trace id, no start time, a field out of range) is rejected alone and
counted in the response's `partial_success`; a body that is not OTLP at all is refused whole.
"""

from __future__ import annotations

import base64
import contextlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus
from pydantic import ValidationError

from podium.core.errors import InvalidInput, PodiumError
from podium.tracing import genai
from podium.tracing.ingest import SpanIn

Format = Literal["protobuf", "json"]
_M = TypeVar("_M", bound=Message)
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")
JSON_TYPES = ("application/json",)
MAX_REASONS = 3

# gen_ai.operation.name (OpenTelemetry GenAI semantic conventions) → Podium span kind
GENAI_OPERATIONS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
}
# openinference.span.kind → Podium span kind
OPENINFERENCE_KINDS = {
    "LLM": "llm",
    "CHAIN": "chain",
    "RETRIEVER": "retriever",
    "RERANKER": "retriever",
    "EMBEDDING": "embedding",
    "TOOL": "tool",
    "AGENT": "agent",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluator",
    "UNKNOWN": "other",
}
# OpenLLMetry: traceloop.span.kind and llm.request.type
TRACELOOP_KINDS = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
LLM_REQUEST_TYPES = {"chat": "llm", "completion": "llm", "embedding": "embedding", "rerank": "retriever"}

MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name", "embedding.model_name")
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
COST_KEYS = ("podium.cost_usd", "llm.cost.total")
TTFT_KEYS = ("podium.ttft_ms",)
SESSION_KEYS = ("session.id", "gen_ai.conversation.id")
USER_KEYS = ("user.id", "enduser.id")
# span events that carry GenAI messages (the older event-based conventions)
MESSAGE_EVENTS = genai.MESSAGE_EVENTS
_KIND_NAMES = {
    OtlpSpan.SPAN_KIND_SERVER: "server",
    OtlpSpan.SPAN_KIND_CLIENT: "client",
    OtlpSpan.SPAN_KIND_PRODUCER: "producer",
    OtlpSpan.SPAN_KIND_CONSUMER: "consumer",
}
_INDEXED = re.compile(r"^(\d+)\.(.+)$")


class UnsupportedMediaType(PodiumError):
    """The request's Content-Type is not one OTLP/HTTP defines."""

    status = 415
    code = "unsupported_media_type"


class BodyTooLarge(PodiumError):
    """The (decompressed) body is over the size limit."""

    status = 413
    code = "body_too_large"


# --- decoding --------------------------------------------------------------------------------------


def request_format(content_type: str | None) -> Format:
    """`protobuf` or `json` from a Content-Type header; 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in PROTOBUF_TYPES:
        return "protobuf"
    if media in JSON_TYPES:
        return "json"
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'!r} is not OTLP/HTTP; send application/x-protobuf or application/json",
        details={"content_type": media},
    )


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body with its Content-Encoding (gzip, deflate or none) undone, refusing more than `max_bytes`."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInput(
            f"Content-Encoding {encoding!r} is not supported; send gzip or none",
            details={"content_encoding": encoding},
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid {encoding}: {exc}") from None
    if len(data) > max_bytes:
        raise BodyTooLarge(f"the decompressed body is larger than the limit of {max_bytes} bytes (max_body_bytes)")
    if not inflater.eof:
        raise InvalidInput(f"the {encoding} body is truncated")
    return data


def parse_export(body: bytes, fmt: Format, message: _M, root: str, hex_ids: Callable[[dict[str, Any]], None]) -> _M:
    """Parse an OTLP export request (protobuf or OTLP/JSON, whose `root` is its top-level list) into
    `message`, or raise `InvalidInput` saying why. `hex_ids` rewrites OTLP/JSON's hex ids for protobuf's
    JSON mapping."""
    kind = type(message).__name__
    if fmt == "protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, ValueError) as exc:
            raise InvalidInput(f"the body is not a valid OTLP {kind} protobuf: {exc}") from None
        return message
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f'the body must be a JSON object with "{root}"', details={"field": root})
    hex_ids(data)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidInput(f"the body is not a valid OTLP/JSON {kind}: {exc}") from None
    return message


def decode_request(body: bytes, fmt: Format) -> ExportTraceServiceRequest:
    """Parse an OTLP `ExportTraceServiceRequest` or raise `InvalidInput` saying why."""
    return parse_export(body, fmt, ExportTraceServiceRequest(), "resourceSpans", _hex_ids_to_base64)


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON writes ids in hex where protobuf's JSON mapping expects base64: rewrite them in place.

    A value that is not hex is left for the protobuf parser (some senders use base64)."""

    def fix(obj: Any, keys: tuple[str, ...]) -> None:
        if not isinstance(obj, dict):
            return
        for key in keys:
            value = obj.get(key)
            if isinstance(value, str) and len(value) % 2 == 0:
                with contextlib.suppress(ValueError):
                    obj[key] = base64.b64encode(bytes.fromhex(value)).decode()

    def items(obj: Any, *names: str) -> list[Any]:
        if not isinstance(obj, dict):
            return []
        for name in names:
            value = obj.get(name)
            if isinstance(value, list):
                return value
        return []

    id_keys = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
    for resource_spans in items(data, "resourceSpans", "resource_spans"):
        for scope_spans in items(resource_spans, "scopeSpans", "scope_spans"):
            for span in items(scope_spans, "spans"):
                fix(span, id_keys)
                for link in items(span, "links"):
                    fix(link, id_keys)


def encode_response(fmt: Format, rejected: int = 0, message: str = "") -> tuple[bytes, str]:
    """An `ExportTraceServiceResponse` (with `partial_success` when spans were rejected) and its media type."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return serialize(response, fmt)


def serialize(response: Message, fmt: Format) -> tuple[bytes, str]:
    """An OTLP response message in the request's format, and its media type."""
    if fmt == "protobuf":
        return response.SerializeToString(), "application/x-protobuf"
    return orjson.dumps(json_format.MessageToDict(response)), "application/json"


# --- mapping -----------------------------------------------------------------------------------------


@dataclass
class Rejections:
    """What of a request was rejected: a count, and the reasons for `partial_success`."""

    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """The partial-success message: the first reasons, and how many more."""
        text = "; ".join(self.reasons[:MAX_REASONS])
        if len(self.reasons) > MAX_REASONS:
            text += f" (and {len(self.reasons) - MAX_REASONS} more)"
        return text


@dataclass
class Mapped(Rejections):
    """The spans a request maps to, and what was rejected."""

    spans: list[SpanIn] = field(default_factory=list)


class _Reject(Exception):
    pass


def any_value(value: AnyValue) -> Any:
    """An OTLP `AnyValue` as a plain (JSON-able) Python value; bytes become base64."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_dict(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes_dict(pairs: Any) -> dict[str, Any]:
    """OTLP `KeyValue`s as a dict (a repeated key keeps its last value)."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in pairs:
        out[kv.key] = any_value(kv.value)
    return out


def map_request(request: ExportTraceServiceRequest) -> Mapped:
    """Every span of the request as a `SpanIn`, or counted as rejected with a reason."""
    mapped = Mapped()
    for resource_spans in request.resource_spans:
        resource = attributes_dict(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = {}
            if scope_spans.scope.name:
                scope["otel.scope.name"] = scope_spans.scope.name
            if scope_spans.scope.version:
                scope["otel.scope.version"] = scope_spans.scope.version
            for span in scope_spans.spans:
                try:
                    mapped.spans.append(map_span(span, resource, scope))
                except _Reject as exc:
                    mapped.rejected += 1
                    label = span.span_id.hex() or "?"
                    mapped.reasons.append(f"span {label} ({span.name!r}): {exc}")
    return mapped


def map_span(span: OtlpSpan, resource: dict[str, Any], scope: dict[str, Any]) -> SpanIn:
    """One OTLP span as a `SpanIn`; raises `_Reject` with the reason when it cannot be taken."""
    attrs: dict[str, Any] = {**resource, **scope, **attributes_dict(span.attributes)}
    trace_id = _id(span.trace_id, 16, "trace_id")
    span_id = _id(span.span_id, 8, "span_id")
    parent_id = _id(span.parent_span_id, 8, "parent_span_id") if span.parent_span_id else None
    # a span exported by Podium whose own ids were not OTLP-shaped carries them here
    trace_id = _pop_str(attrs, "podium.trace_id") or trace_id
    span_id = _pop_str(attrs, "podium.span_id") or span_id
    parent_id = _pop_str(attrs, "podium.parent_id") or parent_id
    if not span.start_time_unix_nano:
        raise _Reject("start_time_unix_nano is missing")

    status: Literal["ok", "error"] = "ok"
    error = None
    if span.status.code == OtlpStatus.STATUS_CODE_ERROR:
        status = "error"
        error = span.status.message or _exception_message(span) or _str(attrs.get("error.type"))

    input_value, output_value = _payloads(attrs)
    events = []
    in_messages: list[Any] = []
    out_messages: list[Any] = []
    ttft_ms: float | None = None
    for event in span.events:
        event_attrs = attributes_dict(event.attributes)
        if input_value is None and event.name in MESSAGE_EVENTS:
            in_messages.append(_event_message(MESSAGE_EVENTS[event.name], event_attrs))
        elif input_value is None and event.name == "gen_ai.content.prompt" and "gen_ai.prompt" in event_attrs:
            in_messages.append(_maybe_json(event_attrs["gen_ai.prompt"]))
        elif output_value is None and event.name == genai.CHOICE_EVENT:
            out_messages.append(genai.choice_message(None, event_attrs))
        elif output_value is None and event.name == "gen_ai.content.completion" and "gen_ai.completion" in event_attrs:
            out_messages.append(_maybe_json(event_attrs["gen_ai.completion"]))
        elif (input_value is None or output_value is None) and event.name == genai.DETAILS_EVENT:
            found_in, found_out = genai.from_events([{"name": event.name, "attributes": event_attrs}])
            input_value = found_in if input_value is None else input_value
            output_value = found_out if output_value is None else output_value
        else:
            if event.name in genai.FIRST_TOKEN_EVENTS and ttft_ms is None and event.time_unix_nano:
                ttft_ms = max(0.0, (event.time_unix_nano - span.start_time_unix_nano) / 1e6)
            entry: dict[str, Any] = {"name": event.name, "time": _time(event.time_unix_nano).isoformat()}
            if event_attrs:
                entry["attributes"] = event_attrs
            events.append(entry)
    if input_value is None and in_messages:
        input_value = in_messages[0] if len(in_messages) == 1 and not isinstance(in_messages[0], dict) else in_messages
    if output_value is None and out_messages:
        single = len(out_messages) == 1 and not isinstance(out_messages[0], dict)
        output_value = out_messages[0] if single else out_messages
    if events:
        attrs["otel.events"] = events
    if span.links:
        attrs["otel.links"] = [
            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
            | ({"attributes": attributes_dict(link.attributes)} if link.attributes else {})
            for link in span.links
        ]
    if span.kind in _KIND_NAMES:
        attrs["otel.span_kind"] = _KIND_NAMES[span.kind]

    tags = _pop_first(attrs, ("tag.tags",))
    metadata = _maybe_json(attrs["metadata"]) if "metadata" in attrs else None
    if isinstance(metadata, dict):
        del attrs["metadata"]
    else:
        metadata = None

    fields: dict[str, Any] = {
        "id": span_id,
        "trace_id": trace_id,
        "parent_id": parent_id,
        "kind": _kind(attrs),
        "name": span.name[:200],
        "start_time": _time(span.start_time_unix_nano),
        "end_time": _time(span.end_time_unix_nano) if span.end_time_unix_nano else None,
        "status": status,
        "error": error or None,
        "input": input_value,
        "output": output_value,
        "model": _clip(_pop_first(attrs, MODEL_KEYS)),
        "prompt_tokens": _count(_pop_first(attrs, INPUT_TOKEN_KEYS)),
        "completion_tokens": _count(_pop_first(attrs, OUTPUT_TOKEN_KEYS)),
        "cost_usd": _number(_pop_first(attrs, COST_KEYS)),
        "ttft_ms": _first_number(_number(_pop_first(attrs, TTFT_KEYS)), ttft_ms),
        "prompt_version_id": _pop_str(attrs, "podium.prompt_version_id"),
        "model_version_id": _pop_str(attrs, "podium.model_version_id"),
        "dataset_version_id": _pop_str(attrs, "podium.dataset_version_id"),
        "trace_name": _clip(_pop_first(attrs, ("podium.trace_name",))),
        "session_id": _clip(_pop_first(attrs, SESSION_KEYS)),
        "user_id": _clip(_pop_first(attrs, USER_KEYS)),
        "tags": _tags(tags),
        "metadata": metadata,
        "attributes": attrs,
    }
    try:
        return SpanIn.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise _Reject(f"{where}: {err['msg']}") from None


def _id(raw: bytes, size: int, name: str) -> str:
    if len(raw) != size or not any(raw):
        raise _Reject(f"{name} must be {size} bytes and not all zero (got {len(raw)} bytes)")
    return raw.hex()


def _time(nanos: int) -> datetime:
    seconds, rest = divmod(nanos, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def _pop_first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first key present (and not empty), taken out of `attrs`."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            del attrs[key]
            return value
    return None


def _pop_str(attrs: dict[str, Any], key: str) -> str | None:
    value = attrs.pop(key, None)
    return str(value) if value not in (None, "") else None


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _clip(value: Any, size: int = 200) -> str | None:
    text = _str(value)
    return text[:size] if text is not None else None


def _count(value: Any) -> int:
    try:
        return max(0, int(float(value)))
    except (TypeError, ValueError):
        return 0


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


_maybe_json = genai.maybe_json


def _first_number(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _tags(value: Any) -> list[str] | None:
    value = _maybe_json(value)
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _kind(attrs: dict[str, Any]) -> str:
    """The Podium span kind from OpenInference, GenAI or OpenLLMetry attributes; `other` without them."""
    value = attrs.get("openinference.span.kind")
    if isinstance(value, str) and value.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[value.upper()]
    value = attrs.get("gen_ai.operation.name")
    if isinstance(value, str) and value.lower() in GENAI_OPERATIONS:
        return GENAI_OPERATIONS[value.lower()]
    value = attrs.get("traceloop.span.kind")
    if isinstance(value, str) and value.lower() in TRACELOOP_KINDS:
        return TRACELOOP_KINDS[value.lower()]
    value = attrs.get("llm.request.type")
    if isinstance(value, str) and value.lower() in LLM_REQUEST_TYPES:
        return LLM_REQUEST_TYPES[value.lower()]
    return "other"


def _payloads(attrs: dict[str, Any]) -> tuple[Any, Any]:
    """A span's input and output, from the first convention that has them; their attributes are taken out."""
    values = []
    for side, messages, legacy, openinference in (
        ("input", "gen_ai.input.messages", "gen_ai.prompt", "llm.input_messages"),
        ("output", "gen_ai.output.messages", "gen_ai.completion", "llm.output_messages"),
    ):
        value = _pop_first(attrs, (f"{side}.value",))
        if value is not None:
            attrs.pop(f"{side}.mime_type", None)
        else:
            value = _maybe_json(_pop_first(attrs, (messages, legacy)))
        if value is None:
            value = _indexed(attrs, legacy) or _indexed(attrs, openinference)
        values.append(value)
    instructions = attrs.pop(genai.SYSTEM_INSTRUCTIONS, None)
    if instructions is not None:
        values[0] = genai.with_instructions(values[0], instructions)
    return values[0], values[1]


def _indexed(attrs: dict[str, Any], prefix: str) -> list[Any] | None:
    """Messages flattened into attributes (`llm.input_messages.0.message.role`, `gen_ai.prompt.0.content`)
    gathered back into a list; their attributes are taken out."""
    start = prefix + "."
    found: dict[int, dict[str, Any]] = {}
    for key in [k for k in attrs if k.startswith(start)]:
        match = _INDEXED.match(key[len(start) :])
        if match is None:
            continue
        node = found.setdefault(int(match.group(1)), {})
        *path, leaf = match.group(2).split(".")
        for part in path:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = attrs.pop(key)
    if not found:
        return None
    items = [found[i] for i in sorted(found)]
    return [item["message"] if set(item) == {"message"} else item for item in items]


def _event_message(role: str, attrs: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": attrs.get("role") or role}
    for key, value in attrs.items():
        if key not in ("role", "gen_ai.system"):
            message[key] = _maybe_json(value) if key != "content" else value
    return message


def _exception_message(span: OtlpSpan) -> str | None:
    for event in span.events:
        if event.name == "exception":
            attrs = attributes_dict(event.attributes)
            kind, text = attrs.get("exception.type"), attrs.get("exception.message")
            if kind or text:
                return f"{kind}: {text}" if kind and text else str(kind or text)
    return None
