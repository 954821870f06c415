"""Trace queries, aggregates, retention and erasure: the logic behind `/api/traces`, `podium traces` and the
dashboard's trace pages (no HTTP here).

- Lists filter on the trace columns and page with an opaque keyset cursor on (sort key, id), never OFFSET,
  so page 1,000 costs what page 1 costs and rows written meanwhile neither repeat nor vanish.
- A trace opens as its row plus a span *skeleton* (ids, tree shape, timings, tokens; no inputs, outputs or
  attributes), so a 10,000-span trace opens fast; full spans are fetched a page at a time.
- Aggregates group by time bucket and model, route, key or user; percentiles are computed here from the
  latencies of the filtered range, which keeps them identical on SQLite and PostgreSQL.
- Deletions (retention, purge, user erasure) go in chunks of traces, each chunk one short transaction, so
  a large purge never holds the database (SQLite's single writer lock above all) for long.

Scope: a key that is not an admin's sees its own project's traces only; admins see every project.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Text,
    and_,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from podium.auth.service import key_ref, project_ref, record_audit
from podium.core.blobs import BlobStore
from podium.core.db import Database, utcnow
from podium.core.errors import Forbidden, InvalidInput, NotFound, PodiumError, validated
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing import payloads
from podium.tracing.ingest import ARTIFACT_KEY
from podium.tracing.scores.store import Score
from podium.tracing.store import STATUSES, Span, Trace, TraceRetention

log = logging.getLogger("podium.tracing.service")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_SPAN_PAGE = 500
MAX_SKELETON = 10_000  # skeleton nodes in one answer of `GET /api/traces/{id}`
PREVIEW_CHARS = 200
ERROR_CHARS = 300
DELETE_CHUNK = 500  # traces per deletion transaction (their spans go in the same one)
MAX_BUCKETS = 10_000
MAX_RETENTION_DAYS = 36_500
MICROS = Decimal(1_000_000)
_MARKER_PREFIX = payloads.MARKER_PREFIX

SortKey = Literal["start_time", "latency_ms", "cost", "tokens"]
SORTS: tuple[SortKey, ...] = ("start_time", "latency_ms", "cost", "tokens")
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
GROUPS = ("none", "model", "route", "key", "user")


# --- filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceFilters:
    """What a trace list, aggregate or export is restricted to; None means no restriction.

    `start`/`end` bound the trace's start time (`start <= t < end`); `q` is a case-insensitive substring
    of the trace's input or output (for an artifact-stored payload, of its stored preview); `tag` is one
    exact tag; `key` is a key id or `pk-…` prefix; `project` (name or id) narrows an admin's view."""

    start: datetime | None = None
    end: datetime | None = None
    project: str | None = None
    model: str | None = None
    user: str | None = None
    session: str | None = None
    tag: str | None = None
    status: str | None = None
    name: str | None = None
    source: str | None = None
    route: str | None = None
    key: str | None = None
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    min_cost_usd: Decimal | None = None
    max_cost_usd: Decimal | None = None
    q: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvalidInput(
                f"status {self.status!r} is not one of: {', '.join(STATUSES)}", details={"field": "status"}
            )
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"{_PARAM[name]} must be timezone-aware", details={"field": _PARAM[name]})
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InvalidInput("'from' must be before 'to'", details={"field": "from"})
        for low, high in (("min_latency_ms", "max_latency_ms"), ("min_cost_usd", "max_cost_usd")):
            lo, hi = getattr(self, low), getattr(self, high)
            for name, value in ((low, lo), (high, hi)):
                if value is not None and (value < 0 or (isinstance(value, float) and not math.isfinite(value))):
                    raise InvalidInput(f"{name} must be a number of at least 0", details={"field": name})
            if lo is not None and hi is not None and lo > hi:
                raise InvalidInput(f"{low} is above {high}", details={"field": low})
        if self.q is not None and len(self.q) > 1000:
            raise InvalidInput("q is longer than 1000 characters", details={"field": "q"})


# query parameter of each filter field (the two times are `from` and `to` over HTTP and in the CLI)
_PARAM = {f.name: f.name for f in fields(TraceFilters)} | {"start": "from", "end": "to"}
FILTER_PARAMS: tuple[str, ...] = tuple(_PARAM.values())
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, field: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC when it has no zone) or a duration ago (`15m`, `24h`, `7d`), as aware UTC."""
    text = value.strip()
    unit = _DURATION_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        return (now or utcnow()) - timedelta(seconds=int(text[:-1]) * unit)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{field} {value!r} is not an ISO-8601 time (2026-01-31T12:00:00Z) or a duration ago (24h, 7d)",
            details={"field": field},
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _number(value: str, field: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(f"{field} {value!r} is not a number", details={"field": field}) from None
    if not math.isfinite(number):
        raise InvalidInput(f"{field} {value!r} is not a finite number", details={"field": field})
    return number


def _usd(value: str, field: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidInput(f"{field} {value!r} is not an amount in USD", details={"field": field}) from None
    if not amount.is_finite():
        raise InvalidInput(f"{field} {value!r} is not an amount in USD", details={"field": field})
    return amount


def parse_filters(params: Mapping[str, str | None]) -> TraceFilters:
    """Filters from query parameters (`from`, `to`, `model`, `min_cost_usd`, …; unknown keys are ignored);
    `InvalidInput` names the first bad one in `details.field`."""
    values: dict[str, Any] = {}
    for attr, param in _PARAM.items():
        raw = params.get(param)
        if raw is None or not raw.strip():
            continue
        if attr in ("start", "end"):
            values[attr] = parse_time(raw, param)
        elif attr in ("min_latency_ms", "max_latency_ms"):
            values[attr] = _number(raw, param)
        elif attr in ("min_cost_usd", "max_cost_usd"):
            values[attr] = _usd(raw, param)
        elif attr == "q":
            values[attr] = raw
        else:
            values[attr] = raw.strip()
    return TraceFilters(**values)


def int_param(name: str, value: str | int | None, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; `InvalidInput` naming it otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not an integer", details={"field": name}) from None
    if not low <= number <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", details={"field": name})
    return number


# --- views -----------------------------------------------------------------------------------------


def usd(micros: int) -> Decimal:
    """Micro-dollars as a USD decimal."""
    return Decimal(micros) / MICROS


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
    """A span with its payloads (artifact markers left as markers, see `*_artifact`) and attributes."""

    error: str | None
    input: str | None
    output: str | None
    input_artifact: ArtifactRef | None
    output_artifact: ArtifactRef | None
    attributes: dict[str, Any]
    prompt_version_id: str | None
    model_version_id: str | None
    dataset_version_id: str | None


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

    data: bytes
    media_type: str
    sha256: str | None  # set when it came from the artifact store


class AggregateRow(BaseModel):
    """Totals of one (time bucket, group)."""

    bucket: datetime
    group: str | None
    count: int
    errors: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    cost_usd: Decimal
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class Aggregate(BaseModel):
    """Per-bucket, per-group totals and latency percentiles of the filtered traces."""

    bucket: str
    by: str
    rows: list[AggregateRow]


class RetentionInfo(BaseModel):
    """How long one project's traces are kept (`days` None: forever)."""

    project_id: str
    project: str
    days: int | None
    updated_by: str | None
    updated_at: datetime | None


class Deleted(BaseModel):
    """What a purge, erasure or retention run deleted."""

    traces: int
    spans: int
    artifacts: int = Field(0, description="Payload blobs freed (content nothing else refers to).")


# --- helpers ---------------------------------------------------------------------------------------


def _is_admin(actor: Actor) -> bool:
    return actor.principal is None or actor.principal.has_role("admin")


def _scope(s: Session, actor: Actor, project: str | None) -> list[ColumnElement[bool]]:
    """The project restriction of this actor (and of an admin's `project` filter)."""
    wanted = None
    if project:
        try:
            wanted = project_ref(s, project).id
        except NotFound as exc:
            raise InvalidInput(exc.message, details={"field": "project"}) from None
    if _is_admin(actor):
        return [] if wanted is None else [Trace.project_id == wanted]
    if wanted is not None and wanted != actor.project_id:
        raise Forbidden("a key sees only its own project's traces; an admin key sees every project")
    return [Trace.project_id == (actor.project_id or "")]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(s: Session, column: Any, needle: str) -> ColumnElement[bool]:
    """Case-sensitive substring test, no pattern characters (SQLite `instr`, PostgreSQL `strpos`)."""
    fn = func.instr if s.get_bind().dialect.name == "sqlite" else func.strpos
    result: ColumnElement[bool] = fn(column, needle) > 0
    return result


def _conditions(s: Session, actor: Actor, f: TraceFilters) -> list[ColumnElement[bool]]:
    conds = _scope(s, actor, f.project)
    backend = s.get_bind().dialect.name
    if f.start is not None:
        conds.append(started_from(backend, f.start))
    if f.end is not None:
        conds.append(started_before(backend, f.end))
    for column, value in (
        (Trace.model, f.model),
        (Trace.user_id, f.user),
        (Trace.session_id, f.session),
        (Trace.status, f.status),
        (Trace.name, f.name),
        (Trace.source, f.source),
        (Trace.route, f.route),
    ):
        if value is not None:
            conds.append(column == value)
    if f.key is not None:
        try:
            conds.append(Trace.key_id == key_ref(s, f.key).id)
        except NotFound:
            conds.append(Trace.key_id == f.key)  # a deleted key's traces stay findable by its id
    if f.tag is not None:
        # tags is a JSON array; its text holds each tag as a JSON string (escaped or not, by who wrote it)
        text = cast(Trace.tags, Text)
        needles = {orjson.dumps(f.tag).decode(), json.dumps(f.tag)}
        conds.append(or_(*(_contains(s, text, n) for n in needles)))
    if f.min_latency_ms is not None:
        conds.append(Trace.latency_ms >= f.min_latency_ms)
    if f.max_latency_ms is not None:
        conds.append(Trace.latency_ms <= f.max_latency_ms)
    if f.min_cost_usd is not None:
        conds.append(Trace.cost_micros >= math.ceil(f.min_cost_usd * MICROS))
    if f.max_cost_usd is not None:
        conds.append(Trace.cost_micros <= math.floor(f.max_cost_usd * MICROS))
    if f.q:
        pattern = f"%{_like_escape(f.q)}%"
        conds.append(or_(Trace.input.ilike(pattern, escape="\\"), Trace.output.ilike(pattern, escape="\\")))
    return conds


def artifact_ref(text: str | None) -> ArtifactRef | None:
    """The artifact a stored payload points to, if it is a marker."""
    if not text or not text.startswith(_MARKER_PREFIX):
        return None
    try:
        marker = orjson.loads(text)
        return ArtifactRef(sha256=marker[ARTIFACT_KEY], bytes=marker["bytes"], preview=marker.get("preview", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError):
        return None


def _preview_column(column: Any) -> Any:
    """The stored text cut short, except an artifact marker, which is kept whole to read its preview."""
    return case((column.like(_MARKER_PREFIX + "%"), column), else_=func.substr(column, 1, PREVIEW_CHARS))


def _preview(text: str | None) -> str | None:
    if text is None:
        return None
    ref = artifact_ref(text)
    return (ref.preview if ref is not None else text)[:PREVIEW_CHARS]


def _clip(text: str | None, size: int = ERROR_CHARS) -> str | None:
    return text if text is None or len(text) <= size else text[:size] + "…"


_SUMMARY_COLUMNS = (
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


def _summary_fields(row: Any) -> dict[str, Any]:
    data = {c.key: getattr(row, c.key) for c in _SUMMARY_COLUMNS}
    data["tags"] = data["tags"] or []
    data["cost_usd"] = usd(row.cost_micros)
    return data


def _time_text(when: datetime) -> str:
    """A time as the trace writer and SQLAlchemy store it on SQLite (`2026-01-31 12:00:00.000000`), so text
    comparisons against the indexed column order right."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def _start_key(backend: str) -> Any:
    """The start time as the database orders it: on SQLite its stored text (index-friendly, see `_time_text`)."""
    return type_coerce(Trace.start_time, String) if backend == "sqlite" else Trace.start_time


def started_from(backend: str, when: datetime) -> ColumnElement[bool]:
    """Traces that started at or after `when`."""
    result: ColumnElement[bool] = _start_key(backend) >= (_time_text(when) if backend == "sqlite" else when)
    return result


def started_before(backend: str, when: datetime) -> ColumnElement[bool]:
    """Traces that started before `when`."""
    result: ColumnElement[bool] = _start_key(backend) < (_time_text(when) if backend == "sqlite" else when)
    return result


def _sort_column(sort: SortKey, backend: str) -> Any:
    if sort == "latency_ms":
        return func.coalesce(Trace.latency_ms, -1.0)  # traces without a latency sort below every other
    if sort == "cost":
        return Trace.cost_micros
    if sort == "tokens":
        return Trace.prompt_tokens + Trace.completion_tokens
    return _start_key(backend)


def _sort_value(value: Any) -> Any:
    """A sort key as the cursor keeps it (on SQLite a start time stays the stored text, compared as such)."""
    return value.isoformat() if isinstance(value, datetime) else value


def encode_cursor(sort: SortKey, order: str, value: Any, trace_id: str) -> str:
    """The opaque cursor after a row (its sort value and id)."""
    return base64.urlsafe_b64encode(orjson.dumps([sort, order, value, trace_id])).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: SortKey, order: str, backend: str) -> tuple[Any, str]:
    bad = InvalidInput("cursor is not one this endpoint returned", details={"field": "cursor"})
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not (isinstance(data, list) and len(data) == 4 and isinstance(data[3], str)):
        raise bad
    c_sort, c_order, value, trace_id = data
    if (c_sort, c_order) != (sort, order):
        raise InvalidInput(
            f"cursor belongs to a listing sorted by {c_sort} {c_order}, not {sort} {order}", details={"field": "cursor"}
        )
    try:
        if sort == "start_time" and backend == "sqlite":
            if not isinstance(value, str):
                raise ValueError
            datetime.fromisoformat(value)
        elif sort == "start_time":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError
        elif sort == "latency_ms":
            value = float(value)
        elif not isinstance(value, int):
            raise ValueError
    except (TypeError, ValueError):
        raise bad from None
    return value, trace_id


def _visible_trace(s: Session, actor: Actor, trace_id: str) -> Trace:
    trace = s.get(Trace, trace_id)
    if trace is None or (not _is_admin(actor) and trace.project_id != (actor.project_id or "")):
        raise NotFound(f"trace {trace_id!r} not found")
    return trace


def _check_visible(s: Session, actor: Actor, trace_id: str) -> None:
    row = s.execute(select(Trace.project_id).where(Trace.id == trace_id)).first()
    if row is None or (not _is_admin(actor) and row.project_id != (actor.project_id or "")):
        raise NotFound(f"trace {trace_id!r} not found")


# --- lists -----------------------------------------------------------------------------------------


def list_traces(
    platform: Platform,
    actor: Actor,
    filters: TraceFilters | None = None,
    *,
    sort: str = "start_time",
    order: str = "desc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    bodies: bool = False,
) -> TracePage:
    """A page of traces, newest (or slowest, or costliest) first, and the cursor of the next page.

    With `bodies`, each trace carries its stored input, output and metadata (`TraceRecord`), for exports."""
    actor.require("viewer", "read traces")
    filters = filters or TraceFilters()
    if sort not in SORTS:
        raise InvalidInput(f"sort {sort!r} is not one of: {', '.join(SORTS)}", details={"field": "sort"})
    if order not in ("asc", "desc"):
        raise InvalidInput(f"order {order!r} is not asc or desc", details={"field": "order"})
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", details={"field": "limit"})
    key_sort: SortKey = sort
    backend = platform.db.backend
    key = _sort_column(key_sort, backend)
    columns: list[Any] = [*_SUMMARY_COLUMNS]
    if bodies:
        columns += [Trace.error, Trace.input, Trace.output, Trace.meta]
    else:
        columns += [
            func.substr(Trace.error, 1, ERROR_CHARS + 1).label("error"),
            _preview_column(Trace.input).label("input"),
            _preview_column(Trace.output).label("output"),
        ]
    with platform.db.read_session() as s:
        conds = _conditions(s, actor, filters)
        if cursor:
            value, after = _decode_cursor(cursor, key_sort, order, backend)
            if order == "desc":
                conds.append(or_(key < value, and_(key == value, Trace.id < after)))
            else:
                conds.append(or_(key > value, and_(key == value, Trace.id > after)))
        ordering = (key.desc(), Trace.id.desc()) if order == "desc" else (key.asc(), Trace.id.asc())
        q: Select[Any] = select(*columns, key.label("sort_key")).where(*conds).order_by(*ordering).limit(limit + 1)
        rows = s.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    traces: list[TraceSummary] = []
    for row in rows:
        base = _summary_fields(row)
        if bodies:
            traces.append(
                TraceRecord(
                    **base,
                    error=row.error,
                    input_preview=_preview(row.input),
                    output_preview=_preview(row.output),
                    input=row.input,
                    output=row.output,
                    metadata=row.meta or {},
                )
            )
        else:
            traces.append(
                TraceSummary(
                    **base,
                    error=_clip(row.error),
                    input_preview=_preview(row.input),
                    output_preview=_preview(row.output),
                )
            )
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(key_sort, order, _sort_value(last.sort_key), last.id)
    return TracePage(traces=traces, next_cursor=next_cursor)


# --- one trace -------------------------------------------------------------------------------------


@dataclass
class _Node:
    id: str
    parent_id: str | None
    depth: int = 0
    orphan: bool = False


def _tree(s: Session, trace_id: str) -> list[_Node]:
    """The trace's spans in tree order: depth-first from the roots (spans without a parent, then orphans,
    by start time), children by start time. Reads only ids, parents and start times (plain tuples), so a
    trace of 10,000 spans orders in tens of milliseconds; callers fetch the columns of the page they show."""
    rows: list[tuple[str, str | None]] = [
        (r[0], r[1])
        for r in s.execute(
            select(Span.id, Span.parent_id).where(Span.trace_id == trace_id).order_by(Span.start_time, Span.id)
        )
    ]
    ids = {sid for sid, _ in rows}
    children: dict[str, list[str]] = defaultdict(list)
    roots: list[tuple[str, str | None, bool]] = []
    parents: dict[str, str | None] = {}
    for sid, parent in rows:
        parents[sid] = parent
        if parent is None or parent not in ids or parent == sid:
            roots.append((sid, parent, parent is not None))
        else:
            children[parent].append(sid)
    order: list[_Node] = []
    seen: set[str] = set()

    def walk(root: str, orphan: bool) -> None:
        stack = [(root, 0, orphan)]
        while stack:
            sid, depth, is_orphan = stack.pop()
            if sid in seen:
                continue
            seen.add(sid)
            order.append(_Node(sid, parents[sid], depth, is_orphan))
            kids = children.get(sid)
            if kids:
                stack.extend([(kid, depth + 1, False) for kid in reversed(kids)])

    for sid, _, orphan in roots:
        walk(sid, orphan)
    for sid, _ in rows:  # spans whose parent chain loops reach no root: shown as orphans
        if sid not in seen:
            walk(sid, True)
    return order


def _rows_of(s: Session, columns: tuple[Any, ...], page: list[_Node]) -> dict[str, Any]:
    """The given columns of the spans of a page, by id (in chunks, for databases' parameter limits)."""
    out: dict[str, Any] = {}
    ids = [n.id for n in page]
    for i in range(0, len(ids), 2000):
        for r in s.execute(select(Span.id, Span.parent_id, *columns).where(Span.id.in_(ids[i : i + 2000]))):
            out[r.id] = r
    return out


_SKELETON_COLUMNS = (
    Span.kind,
    Span.name,
    Span.status,
    Span.start_time,
    Span.end_time,
    Span.ttft_ms,
    Span.model,
    Span.prompt_tokens,
    Span.completion_tokens,
    Span.cost_micros,
)


def _node_fields(row: Any, node: _Node) -> dict[str, Any]:
    duration = (row.end_time - row.start_time).total_seconds() * 1000 if row.end_time is not None else None
    return {
        "id": row.id,
        "parent_id": row.parent_id,
        "depth": node.depth,
        "orphan": node.orphan,
        "kind": row.kind,
        "name": row.name,
        "status": row.status,
        "start_time": row.start_time,
        "end_time": row.end_time,
        "duration_ms": duration,
        "ttft_ms": row.ttft_ms,
        "model": row.model,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_micros": row.cost_micros,
        "cost_usd": usd(row.cost_micros),
    }


def get_trace(
    platform: Platform, actor: Actor, trace_id: str, *, offset: int = 0, limit: int | None = None
) -> TraceDetail:
    """One trace in full (artifact-stored bodies as markers) and its span skeleton in tree order, the
    nodes `[offset, offset + limit)` of it (all by default; `spans_total` and `next_offset` tell the rest);
    404 if unknown or in another project (for a key that is not an admin's)."""
    actor.require("viewer", "read traces")
    if limit is not None and not 1 <= limit <= MAX_SKELETON:
        raise InvalidInput(f"limit must be between 1 and {MAX_SKELETON}", details={"field": "limit"})
    if offset < 0:
        raise InvalidInput("offset must be at least 0", details={"field": "offset"})
    with platform.db.read_session() as s:
        t = _visible_trace(s, actor, trace_id)
        order = _tree(s, trace_id)
        page = order[offset : offset + limit] if limit is not None else order[offset:]
        by_id = _rows_of(s, _SKELETON_COLUMNS, page)
    # a span deleted between the two reads (a concurrent purge) is left out rather than failing the read
    spans = [SpanNode(**_node_fields(by_id[n.id], n)) for n in page if n.id in by_id]
    end = offset + len(page)
    return TraceDetail(
        **_summary_fields(t),
        error=t.error,
        input_preview=_preview(t.input),
        output_preview=_preview(t.output),
        input=t.input,
        output=t.output,
        metadata=t.meta or {},
        input_artifact=artifact_ref(t.input),
        output_artifact=artifact_ref(t.output),
        spans=spans,
        spans_total=len(order),
        spans_offset=offset,
        next_offset=end if end < len(order) else None,
    )


def get_spans(
    platform: Platform,
    actor: Actor,
    trace_id: str,
    *,
    ids: list[str] | None = None,
    offset: int = 0,
    limit: int = 100,
) -> SpanPage:
    """Full spans of a trace, in tree order: those named by `ids` (at most 500), or the page
    `[offset, offset + limit)` of the tree order."""
    actor.require("viewer", "read traces")
    if ids is not None and not 1 <= len(ids) <= MAX_SPAN_PAGE:
        raise InvalidInput(f"ids must name between 1 and {MAX_SPAN_PAGE} spans", details={"field": "ids"})
    if not 1 <= limit <= MAX_SPAN_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_SPAN_PAGE}", details={"field": "limit"})
    if offset < 0:
        raise InvalidInput("offset must be at least 0", details={"field": "offset"})
    with platform.db.read_session() as s:
        _check_visible(s, actor, trace_id)
        order = _tree(s, trace_id)
        if ids is not None:
            wanted = set(ids)
            page = [n for n in order if n.id in wanted]
            missing = wanted - {n.id for n in page}
            if missing:
                shown = ", ".join(sorted(missing)[:5])
                raise NotFound(f"no span {shown} in trace {trace_id!r}", details={"field": "ids"})
        else:
            page = order[offset : offset + limit]
        rows = {r.id: r for r in s.scalars(select(Span).where(Span.id.in_([n.id for n in page])))} if page else {}
    spans = []
    for node in page:
        r = rows[node.id]
        spans.append(
            SpanFull(
                **_node_fields(r, node),
                error=r.error,
                input=r.input,
                output=r.output,
                input_artifact=artifact_ref(r.input),
                output_artifact=artifact_ref(r.output),
                attributes=r.attributes or {},
                prompt_version_id=r.prompt_version_id,
                model_version_id=r.model_version_id,
                dataset_version_id=r.dataset_version_id,
            )
        )
    if ids is not None:
        return SpanPage(trace_id=trace_id, total=len(order), offset=None, next_offset=None, spans=spans)
    end = offset + len(page)
    return SpanPage(
        trace_id=trace_id,
        total=len(order),
        offset=offset,
        next_offset=end if end < len(order) else None,
        spans=spans,
    )


def get_payload(
    platform: Platform, actor: Actor, trace_id: str, *, span_id: str | None = None, field: str = "input"
) -> Payload:
    """A trace's (or one of its spans') input or output in full, read from the artifact store when the row
    holds a marker."""
    actor.require("viewer", "read traces")
    if field not in ("input", "output"):
        raise InvalidInput(f"field {field!r} is not input or output", details={"field": "field"})
    with platform.db.read_session() as s:
        _check_visible(s, actor, trace_id)
        if span_id is None:
            text = s.scalar(select(getattr(Trace, field)).where(Trace.id == trace_id))
            what = f"trace {trace_id!r}"
        else:
            row = s.execute(select(getattr(Span, field)).where(Span.id == span_id, Span.trace_id == trace_id)).first()
            if row is None:
                raise NotFound(f"no span {span_id!r} in trace {trace_id!r}")
            text = row[0]
            what = f"span {span_id!r}"
    if text is None:
        raise NotFound(f"{what} has no {field}")
    ref = artifact_ref(text)
    data = platform.blobs.get(ref.sha256) if ref is not None else text.encode()
    head = data[:64].lstrip()
    media = "application/json" if head[:1] in (b"{", b"[") else "text/plain; charset=utf-8"
    return Payload(data=data, media_type=media, sha256=ref.sha256 if ref is not None else None)


# --- aggregates ------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0-100) of sorted values, interpolating linearly between ranks."""
    if not values:
        return None
    rank = (len(values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass
class _Totals:
    count: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0
    latencies: list[float] | None = None


def aggregate(
    platform: Platform,
    actor: Actor,
    filters: TraceFilters | None = None,
    *,
    bucket: str = "hour",
    by: str = "none",
) -> Aggregate:
    """Count, errors, tokens, cost and latency p50/p95/p99 per time bucket (`minute`, `hour`, `day`, UTC)
    and group (`model`, `route`, `key`, `user` or `none`) of the filtered traces."""
    actor.require("viewer", "read traces")
    filters = filters or TraceFilters()
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket {bucket!r} is not one of: {', '.join(BUCKETS)}", details={"field": "bucket"})
    if by not in GROUPS:
        raise InvalidInput(f"by {by!r} is not one of: {', '.join(GROUPS)}", details={"field": "by"})
    size = BUCKETS[bucket]
    if filters.start is not None:
        buckets = ((filters.end or utcnow()) - filters.start).total_seconds() / size
        if buckets > MAX_BUCKETS:
            raise InvalidInput(
                f"{buckets:.0f} {bucket} buckets between 'from' and 'to'; use a larger bucket or a shorter range"
                f" (at most {MAX_BUCKETS})",
                details={"field": "bucket"},
            )
    group_column: Any = {
        "none": literal(None),
        "model": Trace.model,
        "route": Trace.route,
        "key": Trace.key_id,
        "user": Trace.user_id,
    }[by]
    totals: dict[tuple[int, str | None], _Totals] = defaultdict(_Totals)
    with platform.db.read_session() as s:
        q = select(
            Trace.start_time,
            group_column.label("grp"),
            Trace.status,
            Trace.prompt_tokens,
            Trace.completion_tokens,
            Trace.cost_micros,
            Trace.latency_ms,
        ).where(*_conditions(s, actor, filters))
        for start, grp, status, p_tok, c_tok, cost, latency in s.execute(q.execution_options(yield_per=10_000)):
            slot = int(start.timestamp()) // size * size
            t = totals[(slot, grp)]
            t.count += 1
            t.errors += status == "error"
            t.prompt_tokens += p_tok
            t.completion_tokens += c_tok
            t.cost_micros += cost
            if latency is not None:
                if t.latencies is None:
                    t.latencies = []
                t.latencies.append(latency)
    rows = []
    for (slot, grp), t in sorted(totals.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        lat = sorted(t.latencies or [])
        rows.append(
            AggregateRow(
                bucket=datetime.fromtimestamp(slot, UTC),
                group=grp,
                count=t.count,
                errors=t.errors,
                error_rate=t.errors / t.count,
                prompt_tokens=t.prompt_tokens,
                completion_tokens=t.completion_tokens,
                cost_micros=t.cost_micros,
                cost_usd=usd(t.cost_micros),
                latency_p50_ms=percentile(lat, 50),
                latency_p95_ms=percentile(lat, 95),
                latency_p99_ms=percentile(lat, 99),
            )
        )
    return Aggregate(bucket=bucket, by=by, rows=rows)


# --- deletion --------------------------------------------------------------------------------------


def delete_traces(
    db: Database,
    conds: list[ColumnElement[bool]],
    *,
    chunk: int = DELETE_CHUNK,
    on_last: Callable[[Session, Deleted], None] | None = None,
    blobs: BlobStore | None = None,
) -> Deleted:
    """Delete the traces matching `conds` and their spans, `chunk` traces per transaction; `on_last` runs in
    the last transaction with the totals (to write an audit row beside the final deletion). With `blobs`,
    the large payloads they kept in the artifact store are deleted too, unless something else still refers
    to the same content (see `podium.tracing.payloads`)."""
    total = Deleted(traces=0, spans=0)
    candidates: set[str] = set()
    while True:
        with db.session() as s:
            ids = list(s.scalars(select(Trace.id).where(*conds).limit(chunk)))
            if ids:
                if blobs is not None:
                    candidates |= payloads.digests_of(s, ids)
                opts = {"synchronize_session": False}
                s.execute(delete(Score).where(Score.trace_id.in_(ids)).execution_options(**opts))  # feedback too
                spans = s.execute(delete(Span).where(Span.trace_id.in_(ids)).execution_options(**opts))
                traces = s.execute(delete(Trace).where(Trace.id.in_(ids)).execution_options(**opts))
                total.spans += spans.rowcount  # type: ignore[attr-defined]
                total.traces += traces.rowcount  # type: ignore[attr-defined]
            last = len(ids) < chunk
            if last and on_last is not None:
                on_last(s, total)
        if last:
            break
    if blobs is not None and candidates:
        total.artifacts = payloads.free(db, blobs, candidates)
    return total


def parse_purge(data: Any) -> tuple[datetime, str | None]:
    """`(before, project)` from a purge body `{"before": ISO time or duration ago, "project": optional}`."""
    if not isinstance(data, dict) or not isinstance(data.get("before"), str) or not data["before"].strip():
        raise InvalidInput('give "before": an ISO-8601 time', details={"field": "before"})
    extra = sorted(set(data) - {"before", "project"})
    if extra:
        raise InvalidInput(f"unknown field {extra[0]!r}", details={"field": extra[0]})
    project = data.get("project")
    if project is not None and not isinstance(project, str):
        raise InvalidInput("project must be a project name or id", details={"field": "project"})
    return parse_time(data["before"], "before"), project or None


def purge(platform: Platform, actor: Actor, before: datetime, project: str | None = None) -> Deleted:
    """Delete every trace (of one project, by name or id, or of all) that started before a time, with its
    spans (admin); audited."""
    actor.require("admin", "purge traces")
    if before.tzinfo is None:
        raise InvalidInput("before must be timezone-aware", details={"field": "before"})
    conds: list[ColumnElement[bool]] = [started_before(platform.db.backend, before)]
    project_id = None
    if project:
        with platform.db.read_session() as s:
            project_id = project_ref(s, project).id
        conds.append(Trace.project_id == project_id)

    def audit(s: Session, done: Deleted) -> None:
        details = {"before": before.isoformat(), "project": project, **done.model_dump(exclude={"artifacts"})}
        record_audit(s, actor, "traces.purge", "traces", project_id, project_id=project_id, details=details)

    return delete_traces(platform.db, conds, on_last=audit, blobs=platform.blobs)


def erase_user(platform: Platform, actor: Actor, user_id: str) -> Deleted:
    """Delete every trace of an end user (`user_id` as the application sent it), in every project, with
    its spans (admin; the right to erasure); the audit row records the count.

    Spans of that user's traces still in flight (sent after this call) would recreate a trace: erase once
    the user's traffic has stopped."""
    actor.require("admin", "erase a user's traces")
    if not user_id or len(user_id) > 200:
        raise InvalidInput("user_id must be 1-200 characters", details={"field": "user_id"})

    def audit(s: Session, done: Deleted) -> None:
        record_audit(
            s,
            actor,
            "traces.erase_user",
            "trace_user",
            user_id,
            project_id=None,
            details=done.model_dump(exclude={"artifacts"}),
        )

    return delete_traces(platform.db, [Trace.user_id == user_id], on_last=audit, blobs=platform.blobs)


# --- retention -------------------------------------------------------------------------------------


class _RetentionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(ge=1, le=MAX_RETENTION_DAYS)


def _retention_info(project_id: str, name: str, row: TraceRetention | None) -> RetentionInfo:
    return RetentionInfo(
        project_id=project_id,
        project=name,
        days=row.days if row else None,
        updated_by=row.updated_by if row else None,
        updated_at=row.updated_at if row else None,
    )


def set_retention(platform: Platform, actor: Actor, project: str, data: Any) -> RetentionInfo:
    """Keep a project's traces `{"days": N}` days (admin); audited. The retention job deletes older ones."""
    actor.require("admin", "set trace retention")
    spec = validated(_RetentionSpec, data, "retention", default="days")
    with platform.db.session() as s:
        p = project_ref(s, project)
        row = s.get(TraceRetention, p.id)
        if row is None:
            row = TraceRetention(project_id=p.id)
            s.add(row)
        row.days = spec.days
        row.updated_by = actor.label
        row.updated_at = utcnow()
        s.flush()
        record_audit(
            s, actor, "traces.retention.set", "trace_retention", p.id, project_id=p.id, details={"days": spec.days}
        )
        return _retention_info(p.id, p.name, row)


def get_retention(platform: Platform, actor: Actor, project: str) -> RetentionInfo:
    """A project's retention (`days` None: kept forever); a key that is not an admin's reads its own only."""
    actor.require("viewer", "read trace retention")
    with platform.db.read_session() as s:
        p = project_ref(s, project)
        if not _is_admin(actor) and p.id != actor.project_id:
            raise Forbidden("a key reads only its own project's retention")
        return _retention_info(p.id, p.name, s.get(TraceRetention, p.id))


def clear_retention(platform: Platform, actor: Actor, project: str) -> RetentionInfo:
    """Keep a project's traces forever again (admin); audited."""
    actor.require("admin", "set trace retention")
    with platform.db.session() as s:
        p = project_ref(s, project)
        row = s.get(TraceRetention, p.id)
        if row is not None:
            s.delete(row)
            record_audit(s, actor, "traces.retention.clear", "trace_retention", p.id, project_id=p.id)
        return _retention_info(p.id, p.name, None)


def apply_retention(db: Database, *, now: datetime | None = None, blobs: BlobStore | None = None) -> dict[str, Deleted]:
    """Delete, per project with a retention, the traces that started more than its days ago (and their
    spans, and with `blobs` their payloads); what each project lost is audited as the system's action.
    Returns the deletions by project id."""
    now = now or utcnow()
    with db.read_session() as s:
        policies = [(r.project_id, r.days) for r in s.scalars(select(TraceRetention))]
    results: dict[str, Deleted] = {}
    for project_id, days in policies:
        cutoff = now - timedelta(days=days)

        def audit(
            s: Session, done: Deleted, project_id: str = project_id, days: int = days, cutoff: datetime = cutoff
        ) -> None:
            if done.traces:
                details = {"days": days, "before": cutoff.isoformat(), **done.model_dump(exclude={"artifacts"})}
                record_audit(
                    s,
                    Actor.system(),
                    "traces.retention.apply",
                    "traces",
                    project_id,
                    project_id=project_id,
                    details=details,
                )

        conds = [Trace.project_id == project_id, started_before(db.backend, cutoff)]
        results[project_id] = delete_traces(db, conds, on_last=audit, blobs=blobs)
    return results


async def retention_loop(
    db: Database, blobs: BlobStore | None = None, every: float = 3600.0, first: float = 60.0
) -> None:
    """Apply trace retention `first` seconds after start, then every `every` seconds (a server task)."""
    await asyncio.sleep(first)
    while True:
        try:
            results = await asyncio.to_thread(functools.partial(apply_retention, db, blobs=blobs))
            deleted = sum(d.traces for d in results.values())
            if deleted:
                log.info("trace retention deleted %d traces", deleted)
        except PodiumError as exc:
            log.warning("trace retention failed: %s", exc.message)
        except Exception:
            log.exception("trace retention failed")
        await asyncio.sleep(every)
