"""Export of Podium traces to any OTLP/HTTP endpoint (an OpenTelemetry collector, Jaeger, Phoenix, another
Podium), as gzipped protobuf with the GenAI conventions' attributes (`gen_ai.*`) and OpenInference's.

Column → attribute: kind → `gen_ai.operation.name` and `openinference.span.kind`; model →
`gen_ai.request.model`; tokens → `gen_ai.usage.input_tokens`/`output_tokens`; input and output →
`input.value`/`output.value`; the trace's session, user, tags and metadata → `session.id`, `user.id`,
`tag.tags`, `metadata` on its root spans; Podium-only values (cost, ttft, version links) → `podium.*`.
`service.name` and `otel.scope.*` attributes become the resource and the scope; `otel.events`/`otel.links`
become events and links again. Ids that are not OTLP-shaped (Podium's own `trc_…`/`spn_…`) are hashed to
the OTLP sizes and sent as `podium.trace_id`/`podium.span_id`/`podium.parent_id` too, so a Podium
receiver keeps them. A trace with no spans exports nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus
from sqlalchemy import and_, or_, select

from podium.core.errors import PodiumError
from podium.core.platform import Platform
from podium.core.retry import Backoff, parse_retry_after
from podium.core.version import __version__
from podium.tracing.markers import ARTIFACT_KEY
from podium.tracing.store import Span, Trace

log = logging.getLogger("podium.tracing.export")

BATCH_SPANS = 512
TRACE_PAGE = 200
RETRY_STATUSES = (429, 502, 503, 504)
ATTEMPTS = 4
BACKOFF = Backoff(initial=1.0, cap=30.0)  # waits of about 1, 2 and 4 s between the 4 attempts
_TRACE_HEX = re.compile(r"^[0-9a-f]{32}$")
_SPAN_HEX = re.compile(r"^[0-9a-f]{16}$")
# Podium span kind → gen_ai.operation.name (kinds without a GenAI operation get only openinference.span.kind)
OPERATIONS = {"llm": "chat", "embedding": "embeddings", "tool": "execute_tool", "agent": "invoke_agent"}
_SPAN_KINDS = {
    "internal": OtlpSpan.SPAN_KIND_INTERNAL,
    "server": OtlpSpan.SPAN_KIND_SERVER,
    "client": OtlpSpan.SPAN_KIND_CLIENT,
    "producer": OtlpSpan.SPAN_KIND_PRODUCER,
    "consumer": OtlpSpan.SPAN_KIND_CONSUMER,
}


class ExportFailed(PodiumError):
    """The OTLP endpoint refused the spans or could not be reached."""

    status = 502
    code = "export_failed"


def export_traces(
    platform: Platform,
    endpoint: str,
    *,
    since: datetime | None = None,
    trace_ids: Sequence[str] | None = None,
    headers: dict[str, str] | None = None,
    project_id: str | None = None,
    batch_spans: int = BATCH_SPANS,
    timeout: float = 30.0,
) -> int:
    """POST the spans of the chosen traces (all, those started at or after `since`, those in `trace_ids`, of
    `project_id`) to an OTLP/HTTP `endpoint` (`http://collector:4318/v1/traces`); returns how many spans the
    endpoint accepted. Raises `ExportFailed` when it refuses a batch or cannot be reached."""
    sent = 0
    pending: list[tuple[Trace, list[Span]]] = []
    pending_spans = 0
    with httpx.Client(timeout=timeout, headers=headers or {}) as client:
        for trace, spans in _traces(platform, since, trace_ids, project_id):
            if not spans:
                continue
            pending.append((trace, spans))
            pending_spans += len(spans)
            if pending_spans >= batch_spans:
                sent += _post(client, endpoint, build_request(platform, pending))
                pending, pending_spans = [], 0
        if pending:
            sent += _post(client, endpoint, build_request(platform, pending))
    return sent


def _traces(
    platform: Platform, since: datetime | None, trace_ids: Sequence[str] | None, project_id: str | None
) -> Iterator[tuple[Trace, list[Span]]]:
    """The chosen traces with their spans, a page at a time, oldest first."""
    ids = list(dict.fromkeys(trace_ids)) if trace_ids is not None else None
    after: tuple[datetime, str] | None = None
    offset = 0
    while True:
        query = select(Trace)
        if since is not None:
            query = query.where(Trace.start_time >= since)
        if project_id is not None:
            query = query.where(Trace.project_id == project_id)
        if ids is not None:
            chunk = ids[offset : offset + TRACE_PAGE]
            if not chunk:
                return
            offset += TRACE_PAGE
            query = query.where(Trace.id.in_(chunk))
        else:
            if after is not None:
                query = query.where(
                    or_(Trace.start_time > after[0], and_(Trace.start_time == after[0], Trace.id > after[1]))
                )
            query = query.limit(TRACE_PAGE)
        query = query.order_by(Trace.start_time, Trace.id)
        with platform.db.read_session() as session:
            traces = list(session.scalars(query))
            if not traces and ids is None:
                return
            by_trace: dict[str, list[Span]] = {t.id: [] for t in traces}
            if traces:
                spans = session.scalars(
                    select(Span).where(Span.trace_id.in_(list(by_trace))).order_by(Span.start_time, Span.id)
                )
                for span in spans:
                    by_trace[span.trace_id].append(span)
            session.expunge_all()
        yield from ((t, by_trace[t.id]) for t in traces)
        if ids is None:
            after = (traces[-1].start_time, traces[-1].id)


def build_request(platform: Platform, traces: list[tuple[Trace, list[Span]]]) -> ExportTraceServiceRequest:
    """The traces' spans as one `ExportTraceServiceRequest`, grouped by service and instrumentation scope."""
    request = ExportTraceServiceRequest()
    resources: dict[str, ResourceSpans] = {}
    scopes: dict[tuple[str, str, str], ScopeSpans] = {}
    for trace, spans in traces:
        # trace-level fields ride on the root span (on the first span when the root never arrived)
        root_ids = {s.id for s in spans if s.parent_id is None} or {spans[0].id}
        for span in spans:
            attrs = dict(span.attributes or {})
            service = str(attrs.pop("service.name", None) or "podium")
            scope_name = str(attrs.pop("otel.scope.name", None) or "podium")
            scope_version = str(
                attrs.pop("otel.scope.version", None) or (__version__ if scope_name == "podium" else "")
            )
            resource = resources.get(service)
            if resource is None:
                resource = resources[service] = request.resource_spans.add()
                resource.resource.attributes.append(_kv("service.name", service))
            scope = scopes.get((service, scope_name, scope_version))
            if scope is None:
                scope = scopes[(service, scope_name, scope_version)] = resource.scope_spans.add()
                scope.scope.name = scope_name
                scope.scope.version = scope_version
            _fill_span(scope.spans.add(), platform, trace, span, attrs, span.id in root_ids)
    return request


def _fill_span(out: OtlpSpan, platform: Platform, trace: Trace, span: Span, attrs: dict[str, Any], root: bool) -> None:
    """Write one Podium span into `out`; `attrs` are its attributes, less those already used for resource and scope."""
    out.trace_id = _otlp_id(trace.id, 16, _TRACE_HEX, attrs, "podium.trace_id")
    out.span_id = _otlp_id(span.id, 8, _SPAN_HEX, attrs, "podium.span_id")
    if span.parent_id:
        out.parent_span_id = _otlp_id(span.parent_id, 8, _SPAN_HEX, attrs, "podium.parent_id")
    out.name = span.name
    out.start_time_unix_nano = _nanos(span.start_time)
    if span.end_time is not None:
        out.end_time_unix_nano = _nanos(span.end_time)
    out.kind = _SPAN_KINDS.get(str(attrs.pop("otel.span_kind", "internal")), OtlpSpan.SPAN_KIND_INTERNAL)
    if span.status == "error":
        out.status.code = OtlpStatus.STATUS_CODE_ERROR
        out.status.message = span.error or ""

    events = attrs.pop("otel.events", None)
    if isinstance(events, list) and all(isinstance(e, dict) for e in events):
        for item in events:
            event = out.events.add()
            event.name = str(item.get("name", ""))
            event.time_unix_nano = _nanos_text(item.get("time")) or out.start_time_unix_nano
            for key, value in (item.get("attributes") or {}).items():
                event.attributes.append(_kv(key, value))
    elif events is not None:
        attrs["otel.events"] = events
    links = attrs.pop("otel.links", None)
    if isinstance(links, list) and all(isinstance(x, dict) for x in links):
        for item in links:
            try:
                link = out.links.add()
                link.trace_id = bytes.fromhex(str(item.get("trace_id", "")))
                link.span_id = bytes.fromhex(str(item.get("span_id", "")))
            except ValueError:
                continue
            for key, value in (item.get("attributes") or {}).items():
                link.attributes.append(_kv(key, value))
    elif links is not None:
        attrs["otel.links"] = links

    derived: dict[str, Any] = {}
    if span.kind in OPERATIONS:
        derived["gen_ai.operation.name"] = OPERATIONS[span.kind]
    if span.kind != "other":
        derived["openinference.span.kind"] = span.kind.upper()
    if span.model:
        derived["gen_ai.request.model"] = span.model
    if span.prompt_tokens or span.completion_tokens:
        derived["gen_ai.usage.input_tokens"] = span.prompt_tokens
        derived["gen_ai.usage.output_tokens"] = span.completion_tokens
    if span.cost_micros:
        derived["podium.cost_usd"] = span.cost_micros / 1_000_000
    if span.ttft_ms is not None:
        derived["podium.ttft_ms"] = span.ttft_ms
    for name in ("prompt_version_id", "model_version_id", "dataset_version_id"):
        if getattr(span, name):
            derived[f"podium.{name}"] = getattr(span, name)
    for side, stored in (("input", span.input), ("output", span.output)):
        text = _payload_text(platform, stored)
        if text is not None:
            derived[f"{side}.value"] = text
            if _is_json(text):
                derived[f"{side}.mime_type"] = "application/json"
    if root:
        if trace.session_id:
            derived["session.id"] = trace.session_id
        if trace.user_id:
            derived["user.id"] = trace.user_id
        if trace.tags:
            derived["tag.tags"] = [str(t) for t in trace.tags]
        if trace.meta:
            derived["metadata"] = orjson.dumps(trace.meta).decode()
        if trace.name and trace.name != span.name:
            derived["podium.trace_name"] = trace.name
    for key, value in {**derived, **attrs}.items():
        if value is not None:
            out.attributes.append(_kv(key, value))


def _otlp_id(value: str, size: int, shape: re.Pattern[str], attrs: dict[str, Any], key: str) -> bytes:
    """An id as OTLP bytes: hex ids as they are; others hashed, the original kept in `attrs[key]`."""
    if shape.match(value):
        return bytes.fromhex(value)
    attrs[key] = value
    return hashlib.sha256(value.encode()).digest()[:size]


def _payload_text(platform: Platform, stored: str | None) -> str | None:
    """A stored input or output as its full text (artifact markers are fetched back)."""
    if stored is None or not stored.startswith('{"' + ARTIFACT_KEY):
        return stored
    try:
        marker = orjson.loads(stored)
        return platform.blobs.get(marker[ARTIFACT_KEY]).decode()
    except (orjson.JSONDecodeError, KeyError, TypeError, PodiumError, FileNotFoundError, UnicodeDecodeError):
        log.warning("artifact of a span payload could not be read; exporting its marker")
        return stored


def _is_json(text: str) -> bool:
    if text[:1] not in ("{", "["):
        return False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _nanos(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _nanos_text(value: Any) -> int:
    try:
        return _nanos(datetime.fromisoformat(str(value)))
    except ValueError:
        return 0


def _kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=_any(value))


def _any(value: Any) -> AnyValue:
    """A plain Python value as an OTLP `AnyValue` (what it cannot carry becomes a string)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list | tuple):
        out = AnyValue()
        out.array_value.values.extend(_any(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(_kv(str(k), v) for k, v in value.items())
        return out
    if value is None:
        return AnyValue()
    return AnyValue(string_value=str(value))


def _post(client: httpx.Client, endpoint: str, request: ExportTraceServiceRequest) -> int:
    """Send one request (gzipped protobuf), retrying what OTLP calls retryable (connection errors, 429, 502,
    503, 504) with jittered exponential backoff that honours `Retry-After`; the spans accepted."""
    total = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    body = gzip.compress(request.SerializeToString(), compresslevel=5)
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        try:
            response = client.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            if last:
                raise ExportFailed(f"the OTLP endpoint {endpoint} could not be reached: {exc}") from None
            _wait(endpoint, attempt, None, f"could not be reached ({type(exc).__name__})")
            continue
        if response.status_code in RETRY_STATUSES and not last:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            _wait(endpoint, attempt, retry_after, f"answered {response.status_code}")
            continue
        if not response.is_success:
            raise ExportFailed(
                f"the OTLP endpoint {endpoint} answered {response.status_code}: {response.text[:500]}",
                details={"status": response.status_code},
            )
        return total - _rejected(response, endpoint)
    raise AssertionError("unreachable")


def _wait(endpoint: str, attempt: int, retry_after: float | None, why: str) -> None:
    delay = BACKOFF.delay(attempt, retry_after)
    asked = f" (Retry-After {retry_after:.2f} s)" if retry_after is not None else ""
    log.warning("the OTLP endpoint %s %s; retrying in %.2f s%s", endpoint, why, delay, asked)
    time.sleep(delay)


def _rejected(response: httpx.Response, endpoint: str) -> int:
    """How many spans a collector's `partial_success` says it rejected (logged with its message)."""
    answer = ExportTraceServiceResponse()
    try:
        if "json" in response.headers.get("content-type", ""):
            data = orjson.loads(response.content or b"{}")
            partial = data.get("partialSuccess") or data.get("partial_success") or {}
            rejected = int(partial.get("rejectedSpans") or partial.get("rejected_spans") or 0)
            message = str(partial.get("errorMessage") or partial.get("error_message") or "")
        else:
            answer.ParseFromString(response.content)
            rejected = answer.partial_success.rejected_spans
            message = answer.partial_success.error_message
    except Exception:  # a collector answering 2xx with a body we cannot read still accepted the spans
        return 0
    if rejected or message:
        log.warning("the OTLP endpoint %s rejected %d spans: %s", endpoint, rejected, message)
    return rejected
