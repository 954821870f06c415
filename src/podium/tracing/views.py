"""What trace reads answer: the shapes of traces, spans and payloads in lists, exports and detail views (as
`/api/traces` serialises them), and the helpers that cut stored text to previews and read artifact markers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel, Field, SerializeAsAny, ValidationError
from sqlalchemy import case, func

from podium.core.money import usd
from podium.tracing.markers import ARTIFACT_KEY, MARKER_PREFIX
from podium.tracing.store import Trace

PREVIEW_CHARS = 200
ERROR_CHARS = 300
_MARKER_PREFIX = MARKER_PREFIX


class ArtifactRef(BaseModel):
    """A payload kept in the artifact store: fetch it whole from `/api/traces/{id}/payload`."""

    sha256: str
    bytes: int
    preview: str


class TraceSummary(BaseModel):
    """A trace in a list: its columns and short previews of its input and output, never the bodies."""

    id: str
    project_id: str | None
    name: str
    source: str
    status: str
    start_time: datetime
    end_time: datetime | None
    latency_ms: float | None
    ttft_ms: float | None
    model: str | None
    route: str | None
    deployment: str | None
    key_id: str | None
    user_id: str | None
    session_id: str | None
    tags: list[Any]
    cache_status: str | None
    http_status: int | None
    attempts: int
    span_count: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    cost_usd: Decimal
    error: str | None = Field(description="The error, cut to a few hundred characters in lists.")
    input_preview: str | None
    output_preview: str | None


class TraceRecord(TraceSummary):
    """A trace with its bodies as stored (artifact markers left as markers) and its metadata: what
    `GET /api/traces?bodies=true` and exports carry."""

    input: str | None
    output: str | None
    metadata: dict[str, Any]


class SpanNode(BaseModel):
    """A span in a trace's skeleton: its place in the tree and its figures, without payloads."""

    id: str
    parent_id: str | None
    depth: int
    orphan: bool = Field(description="Its parent is not in the trace (never arrived), or its parent chain loops.")
    kind: str
    name: str
    status: str
    start_time: datetime
    end_time: datetime | None
    duration_ms: float | None
    ttft_ms: float | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    cost_usd: Decimal


class SpanFull(SpanNode):
    """A span with its payloads and attributes. `input` and `output` are JSON values: an object or array as
    itself, text as a string; one kept in the artifact store is null here, with `*_artifact` saying where
    (`/api/traces/{id}/payload` fetches it whole)."""

    error: str | None
    input: Any = Field(description="The span's input as JSON (text as a string); null when kept as an artifact.")
    output: Any = Field(description="The span's output as JSON (text as a string); null when kept as an artifact.")
    input_artifact: ArtifactRef | None
    output_artifact: ArtifactRef | None
    attributes: dict[str, Any]
    prompt_version_id: str | None
    model_version_id: str | None
    dataset_version_id: str | None
    events: list[dict[str, Any]] = Field(
        default_factory=list,
        description="GenAI events sent as OTLP log records for this span (`/v1/logs`), oldest first.",
    )

    def stored(self, field: str) -> str | None:
        """The input or output as the row keeps it (JSON text, plain text, or an artifact marker)."""
        ref: ArtifactRef | None = getattr(self, f"{field}_artifact")
        if ref is not None:
            return orjson.dumps({ARTIFACT_KEY: ref.sha256, "bytes": ref.bytes, "preview": ref.preview}).decode()
        return stored_text(getattr(self, field))


def payload_value(text: str | None) -> Any:
    """A stored payload as the JSON value the API answers: a JSON object or array parsed, other text as a
    string, an artifact marker as None (its `ArtifactRef` tells where it is)."""
    if text is None or artifact_ref(text) is not None:
        return None
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    return text


def stored_text(value: Any) -> str | None:
    """The text a payload value is kept as (the inverse of `payload_value` for what is not an artifact)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


class TraceDetail(TraceRecord):
    """One trace in full, with its span skeleton in tree order (depth-first, children by start time)."""

    input_artifact: ArtifactRef | None
    output_artifact: ArtifactRef | None
    spans: list[SpanNode]
    spans_total: int = Field(description="Spans in the whole trace; `spans` is the page from `spans_offset`.")
    spans_offset: int = 0
    next_offset: int | None = Field(None, description="Offset of the next page of the skeleton, if any.")


class TracePage(BaseModel):
    """A page of traces and the cursor of the next one (None on the last page)."""

    traces: list[SerializeAsAny[TraceSummary]]
    next_cursor: str | None


class SpanPage(BaseModel):
    """Full spans of one trace, in tree order."""

    trace_id: str
    total: int = Field(description="Spans in the trace.")
    offset: int | None
    next_offset: int | None
    spans: list[SpanFull]


@dataclass(frozen=True)
class Payload:
    """A span's or trace's input or output in full."""

    data: bytes  # the whole payload, or its first chunk when `rest` streams the others
    media_type: str
    sha256: str | None  # set when it came from the artifact store
    rest: Iterator[bytes] | None = None  # the artifact's next chunks, read as they are sent

    def chunks(self) -> Iterator[bytes]:
        """The payload chunk by chunk (an artifact is never held whole in memory)."""
        yield self.data
        if self.rest is not None:
            yield from self.rest


def artifact_ref(text: str | None) -> ArtifactRef | None:
    """The artifact a stored payload points to, if it is a marker."""
    if not text or not text.startswith(_MARKER_PREFIX):
        return None
    try:
        marker = orjson.loads(text)
        return ArtifactRef(sha256=marker[ARTIFACT_KEY], bytes=marker["bytes"], preview=marker.get("preview", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError):
        return None


def preview_column(column: Any) -> Any:
    """The stored text cut short, except an artifact marker, which is kept whole to read its preview."""
    return case((column.like(_MARKER_PREFIX + "%"), column), else_=func.substr(column, 1, PREVIEW_CHARS))


def preview(text: str | None) -> str | None:
    """The first characters of a stored payload (of an artifact's stored preview)."""
    if text is None:
        return None
    ref = artifact_ref(text)
    return (ref.preview if ref is not None else text)[:PREVIEW_CHARS]


def clip(text: str | None, size: int = ERROR_CHARS) -> str | None:
    """Text cut to `size` characters, marked when cut."""
    return text if text is None or len(text) <= size else text[:size] + "…"


# the trace columns a summary carries as they are
SUMMARY_COLUMNS = (
    Trace.id,
    Trace.project_id,
    Trace.name,
    Trace.source,
    Trace.status,
    Trace.start_time,
    Trace.end_time,
    Trace.latency_ms,
    Trace.ttft_ms,
    Trace.model,
    Trace.route,
    Trace.deployment,
    Trace.key_id,
    Trace.user_id,
    Trace.session_id,
    Trace.tags,
    Trace.cache_status,
    Trace.http_status,
    Trace.attempts,
    Trace.span_count,
    Trace.prompt_tokens,
    Trace.completion_tokens,
    Trace.cost_micros,
)


def summary_fields(row: Any) -> dict[str, Any]:
    """A `TraceSummary`'s fields from a row of `SUMMARY_COLUMNS`."""
    data = {c.key: getattr(row, c.key) for c in SUMMARY_COLUMNS}
    data["tags"] = data["tags"] or []
    data["cost_usd"] = usd(row.cost_micros)
    return data
