"""OTLP/HTTP log ingest (`POST /v1/logs`): decode an `ExportLogsServiceRequest` (protobuf or OTLP/JSON,
optionally gzipped, as `/v1/traces`) and map its log records onto span events (`tracing.events`).

Podium keeps logs as events of spans: a record is taken when it names its trace and span (GenAI
instrumentations emit their message events inside the call's span, so they do); its name is its
`event_name`, or its `event.name` attribute for older senders. A record without trace and span ids, or that
cannot be taken (nested too deep), is rejected alone and counted in the response's `partial_success`.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from podium.core.errors import InvalidInput
from podium.tracing.events import MAX_EVENTS_PER_REQUEST, EventIn, bounded
from podium.tracing.otlp.decode import Format, Rejections, _time, any_value, attributes_dict, parse_export, serialize


@dataclass
class MappedLogs(Rejections):
    """The events a request maps to, and what was rejected."""

    events: list[EventIn] = field(default_factory=list)


def decode_logs(body: bytes, fmt: Format) -> ExportLogsServiceRequest:
    """Parse an OTLP `ExportLogsServiceRequest` or raise `InvalidInput` saying why."""
    return parse_export(body, fmt, ExportLogsServiceRequest(), "resourceLogs", _hex_ids_to_base64)


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex where protobuf's JSON mapping expects base64."""

    def items(obj: Any, *names: str) -> list[Any]:
        if isinstance(obj, dict):
            for name in names:
                value = obj.get(name)
                if isinstance(value, list):
                    return value
        return []

    for resource_logs in items(data, "resourceLogs", "resource_logs"):
        for scope_logs in items(resource_logs, "scopeLogs", "scope_logs"):
            for record in items(scope_logs, "logRecords", "log_records"):
                if not isinstance(record, dict):
                    continue
                for key in ("traceId", "trace_id", "spanId", "span_id"):
                    value = record.get(key)
                    if isinstance(value, str) and len(value) % 2 == 0:
                        with contextlib.suppress(ValueError):
                            record[key] = base64.b64encode(bytes.fromhex(value)).decode()


def encode_logs_response(fmt: Format, rejected: int = 0, message: str = "") -> tuple[bytes, str]:
    """An `ExportLogsServiceResponse` (with `partial_success` when records were rejected) and its media type."""
    response = ExportLogsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return serialize(response, fmt)


def map_logs(request: ExportLogsServiceRequest) -> MappedLogs:
    """Every log record of the request as a span event, or counted as rejected with a reason."""
    mapped = MappedLogs()
    total = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    if total > MAX_EVENTS_PER_REQUEST:
        raise InvalidInput(
            f"{total} log records in one request; send at most {MAX_EVENTS_PER_REQUEST}",
            details={"field": "resourceLogs"},
        )
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                try:
                    mapped.events.append(map_record(record))
                except ValueError as exc:
                    mapped.rejected += 1
                    mapped.reasons.append(f"log record {record.event_name or '?'!r}: {exc}")
    return mapped


def map_record(record: LogRecord) -> EventIn:
    """One log record as a span event; `ValueError` with the reason when it cannot be taken."""
    if len(record.trace_id) != 16 or not any(record.trace_id) or len(record.span_id) != 8 or not any(record.span_id):
        raise ValueError("it names no trace and span (Podium keeps log records as events of spans)")
    attributes = attributes_dict(record.attributes)
    name = record.event_name or str(attributes.pop("event.name", "") or "")
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    if not nanos:
        raise ValueError("it has no time")
    body = any_value(record.body) if record.HasField("body") else None
    return bounded(
        EventIn(
            trace_id=record.trace_id.hex(),
            span_id=record.span_id.hex(),
            time=_time(nanos),
            name=name,
            body=body,
            attributes=attributes,
        )
    )
