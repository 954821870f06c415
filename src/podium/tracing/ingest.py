"""Ingest of spans from the SDK and OTLP: validation, size limits, and their hand-off to the writer.

Spans of one trace may arrive in several requests (a long agent run, an OTLP exporter's batches). Each
request yields, per trace, one trace row *to merge* (this part's totals, its time range, and the trace's
name, input and output when the part holds the root span) plus the span rows; the writer merges trace
rows into the stored one (see `writer.MERGE_RULES`). A span whose parent never arrives stays, and the
query side shows it as an orphan.

Payload rules: an input or output larger than `inline_bytes` goes to the artifact store and the row keeps a
small marker (`{"podium_artifact": "<sha256>", "bytes": n, "preview": "…"}`) fetched on demand; an
attribute value over `MAX_ATTRIBUTE_CHARS` is truncated with a marker, never rejected.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from podium.core.blobs import BlobStore
from podium.core.errors import InvalidInput
from podium.core.ids import new_id
from podium.models.prices import lookup_price
from podium.tracing.kinds import SpanKind
from podium.tracing.markers import ARTIFACT_KEY, reads_as_marker
from podium.tracing.writer import Record

MAX_SPANS_PER_REQUEST = 10_000
MAX_ATTRIBUTE_CHARS = 4_096
MAX_DEPTH = 32  # nesting of inputs, outputs, attributes and metadata (JSON encoders stop at 255)
MAX_TOKENS = 100_000_000  # per span
MAX_COST_USD = 1_000_000.0  # per span
MAX_ERROR_CHARS = 10_000
MAX_TAGS = 100
INLINE_BYTES = 32_768
PREVIEW_CHARS = 1_000
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,40}$")


class SpanIn(BaseModel):
    """One span as clients send it (`POST /api/traces/ingest`, and what OTLP spans are mapped to).

    Trace-level fields (`trace_name`, `session_id`, `user_id`, `tags`, `metadata`) may ride on any span of
    the trace; the root span's win."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str | None = Field(None, description="Span id (generated if absent); unique within the platform.")
    trace_id: str = Field(description="Trace id; every span of a trace carries the same one.")
    parent_id: str | None = Field(None, description="Parent span id; null for the root span.")
    kind: SpanKind = "other"
    name: str = Field("", max_length=200)
    start_time: datetime
    end_time: datetime | None = None
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    input: Any = None
    output: Any = None
    model: str | None = Field(None, max_length=200)
    prompt_tokens: int = Field(0, ge=0, le=MAX_TOKENS)
    completion_tokens: int = Field(0, ge=0, le=MAX_TOKENS)
    cost_usd: float | None = Field(
        None, ge=0, le=MAX_COST_USD, description="Cost; computed from the price table if absent."
    )
    ttft_ms: float | None = Field(None, ge=0, le=86_400_000)
    prompt_version_id: str | None = Field(None, max_length=40)
    model_version_id: str | None = Field(None, max_length=40)
    dataset_version_id: str | None = Field(None, max_length=40)
    attributes: dict[str, Any] = Field(default_factory=dict)
    trace_name: str | None = Field(None, max_length=200)
    session_id: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, max_length=200)
    tags: list[str] | None = Field(None, max_length=MAX_TAGS)
    metadata: dict[str, Any] | None = None

    @field_validator("name", "error", "model", "trace_name", "session_id", "user_id", "prompt_version_id",
                     "model_version_id", "dataset_version_id")  # fmt: skip
    @classmethod
    def _clean_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = _no_nul(value)
        return value[:MAX_ERROR_CHARS] if len(value) > MAX_ERROR_CHARS else value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any(len(tag) > 200 for tag in value):
            raise ValueError("a tag is at most 200 characters")
        return [_no_nul(tag) for tag in value]

    @field_validator("input", "output", "attributes", "metadata")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        return _clean(value, 0)

    @field_validator("id", "trace_id", "parent_id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not _ID.match(value):
            raise ValueError("ids are 1-40 characters of letters, digits, '_', '.', ':' or '-'")
        return value

    @field_validator("start_time", "end_time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _no_nul(text: str) -> str:
    """Text without NUL characters (PostgreSQL stores none; they become U+FFFD)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def clean_value(value: Any) -> Any:
    """A JSON value cleaned of NUL characters; `ValueError` past `MAX_DEPTH` levels of nesting."""
    return _clean(value, 0)


def _clean(value: Any, depth: int) -> Any:
    """A JSON value with its strings (keys too) cleaned of NUL; raises past `MAX_DEPTH` levels."""
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels; flatten it or send it as a string")
        if isinstance(value, dict):
            return {_no_nul(str(k)): _clean(v, depth + 1) for k, v in value.items()}
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**64:  # beyond what JSON encoders write
        return str(value)
    return value


def parse_spans(data: Any) -> list[SpanIn]:
    """Validate a request body (`{"spans": [...]}`) or raise `InvalidInput` naming the span and field."""
    if not isinstance(data, dict) or not isinstance(data.get("spans"), list):
        raise InvalidInput('the body must be a JSON object with a "spans" array', details={"field": "spans"})
    raw = data["spans"]
    if len(raw) > MAX_SPANS_PER_REQUEST:
        raise InvalidInput(
            f"{len(raw)} spans in one request; send at most {MAX_SPANS_PER_REQUEST}", details={"field": "spans"}
        )
    spans = []
    for i, item in enumerate(raw):
        try:
            spans.append(SpanIn.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(f"spans[{i}].{where}: {err['msg']}", details={"field": f"spans[{i}].{where}"}) from None
    return spans


def _truncate(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_CHARS:
        return value[:MAX_ATTRIBUTE_CHARS] + f"…[truncated {len(value) - MAX_ATTRIBUTE_CHARS} characters]"
    if isinstance(value, dict):
        return {k: _truncate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_truncate(v) for v in value[:1000]]
    return value


def _payload(value: Any, blobs: BlobStore, inline_bytes: int) -> str | None:
    """A payload as the stored text: JSON (strings stay plain), or an artifact marker when it is large."""
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    data = text.encode()
    if len(data) <= inline_bytes and not reads_as_marker(text):  # a client's text never reads as a marker
        return text
    digest = blobs.put(data)
    marker = {ARTIFACT_KEY: digest, "bytes": len(data), "preview": text[:PREVIEW_CHARS]}
    return orjson.dumps(marker).decode()


def _cost(span: SpanIn) -> int:
    if span.cost_usd is not None:
        return round(span.cost_usd * 1_000_000)
    if span.model and (span.prompt_tokens or span.completion_tokens):
        price = lookup_price(span.model)
        if price is not None:
            return price.cost_micros(span.prompt_tokens, span.completion_tokens)
    return 0


def to_records(
    spans: list[SpanIn],
    *,
    project_id: str,
    key_id: str | None,
    blobs: BlobStore,
    source: str = "sdk",
    inline_bytes: int = INLINE_BYTES,
) -> list[Record]:
    """One record per trace in `spans`: the trace part to merge and its span rows."""
    by_trace: dict[str, list[SpanIn]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    records = []
    for trace_id, group in by_trace.items():
        root = next((s for s in group if s.parent_id is None), None)
        rows = []
        tokens_in = tokens_out = cost = 0
        error = None
        for s in group:
            span_cost = _cost(s)
            tokens_in += s.prompt_tokens
            tokens_out += s.completion_tokens
            cost += span_cost
            if s.status == "error" and error is None:
                error = s.error or f"span {s.name!r} failed"
            rows.append(
                {
                    "id": s.id or new_id("spn"),
                    "trace_id": trace_id,
                    "parent_id": s.parent_id,
                    "kind": s.kind,
                    "name": s.name,
                    "status": s.status,
                    "start_time": s.start_time,
                    "end_time": s.end_time,
                    "ttft_ms": s.ttft_ms,
                    "model": s.model,
                    "prompt_tokens": s.prompt_tokens,
                    "completion_tokens": s.completion_tokens,
                    "cost_micros": span_cost,
                    "error": s.error,
                    "prompt_version_id": s.prompt_version_id,
                    "model_version_id": s.model_version_id,
                    "dataset_version_id": s.dataset_version_id,
                    "attributes": _truncate(s.attributes),
                    "input": _payload(s.input, blobs, inline_bytes),
                    "output": _payload(s.output, blobs, inline_bytes),
                }
            )

        def first(field: str, group: list[SpanIn] = group, root: SpanIn | None = root) -> Any:
            if root is not None and getattr(root, field) is not None:
                return getattr(root, field)
            return next((getattr(s, field) for s in group if getattr(s, field) is not None), None)

        ends = [s.end_time for s in group if s.end_time is not None]
        llm_models = [s.model for s in group if s.model]
        trace: dict[str, Any] = {
            "id": trace_id,
            "project_id": project_id,
            "name": (root.trace_name or root.name) if root is not None else (first("trace_name") or ""),
            "session_id": first("session_id"),
            "user_id": first("user_id"),
            "key_id": key_id,
            "source": source,
            "status": "error" if error else "ok",
            "start_time": min(s.start_time for s in group),
            "end_time": max(ends) if ends else None,
            "latency_ms": (
                (root.end_time - root.start_time).total_seconds() * 1000
                if root is not None and root.end_time is not None
                else None
            ),
            "ttft_ms": None,
            "model": (root.model if root is not None and root.model else None)
            or (llm_models[0] if llm_models else None),
            "route": None,
            "deployment": None,
            "cache_status": None,
            "attempts": 0,
            "span_count": len(group),
            "http_status": None,
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "cost_micros": cost,
            "error": error,
            "tags": first("tags") or [],
            "meta": _truncate(first("metadata") or {}),
            "input": _payload(root.input, blobs, inline_bytes) if root is not None else None,
            "output": _payload(root.output, blobs, inline_bytes) if root is not None else None,
        }
        records.append(Record(trace=trace, spans=rows, merge=True))
    return records
