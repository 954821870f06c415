"""Trace reads: lists filtered on the trace columns and paged with an opaque keyset cursor on (sort key, id),
never OFFSET, so page 1,000 costs what page 1 costs and rows written meanwhile neither repeat nor vanish;
one trace as its row plus a span *skeleton* (ids, tree shape, timings, tokens; no inputs, outputs or
attributes), so a 10,000-span trace opens fast; full spans a page at a time; payloads whole, from the
artifact store when the row keeps a marker."""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.money import usd
from podium.core.platform import Platform
from podium.tracing import genai
from podium.tracing.events import events_of
from podium.tracing.filters import TraceFilters, conditions, is_admin, start_key
from podium.tracing.store import Span, Trace
from podium.tracing.views import (
    ERROR_CHARS,
    SUMMARY_COLUMNS,
    Payload,
    SpanFull,
    SpanNode,
    SpanPage,
    TraceDetail,
    TracePage,
    TraceRecord,
    TraceSummary,
    artifact_ref,
    clip,
    payload_value,
    preview,
    preview_column,
    summary_fields,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_SPAN_PAGE = 500
MAX_SKELETON = 10_000  # skeleton nodes in one answer of `GET /api/traces/{id}`

SortKey = Literal["start_time", "latency_ms", "cost", "tokens"]
SORTS: tuple[SortKey, ...] = ("start_time", "latency_ms", "cost", "tokens")


def _sort_column(sort: SortKey, backend: str) -> Any:
    if sort == "latency_ms":
        return func.coalesce(Trace.latency_ms, -1.0)  # traces without a latency sort below every other
    if sort == "cost":
        return Trace.cost_micros
    if sort == "tokens":
        return Trace.prompt_tokens + Trace.completion_tokens
    return start_key(backend)


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
    if trace is None or (not is_admin(actor) and trace.project_id != (actor.project_id or "")):
        raise NotFound(f"trace {trace_id!r} not found")
    return trace


def _check_visible(s: Session, actor: Actor, trace_id: str) -> None:
    row = s.execute(select(Trace.project_id).where(Trace.id == trace_id)).first()
    if row is None or (not is_admin(actor) and row.project_id != (actor.project_id or "")):
        raise NotFound(f"trace {trace_id!r} not found")


# --- lists -----------------------------------------------------------------------------------------


MAX_BODIES_BYTES = 16 * 1024 * 1024  # characters of stored bodies in one page of `list_traces(bodies=True)`


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

    With `bodies`, each trace carries its stored input, output and metadata (`TraceRecord`), for exports; such
    a page ends early once it holds `MAX_BODIES_BYTES` of them (follow `next_cursor`)."""
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
    columns: list[Any] = [*SUMMARY_COLUMNS]
    if bodies:
        columns += [Trace.error, Trace.input, Trace.output, Trace.meta]
    else:
        columns += [
            func.substr(Trace.error, 1, ERROR_CHARS + 1).label("error"),
            preview_column(Trace.input).label("input"),
            preview_column(Trace.output).label("output"),
        ]
    with platform.db.read_session() as s:
        conds = conditions(s, actor, filters)
        if cursor:
            value, after = _decode_cursor(cursor, key_sort, order, backend)
            if order == "desc":
                conds.append(or_(key < value, and_(key == value, Trace.id < after)))
            else:
                conds.append(or_(key > value, and_(key == value, Trace.id > after)))
        ordering = (key.desc(), Trace.id.desc()) if order == "desc" else (key.asc(), Trace.id.asc())
        q: Select[Any] = select(*columns, key.label("sort_key")).where(*conds).order_by(*ordering).limit(limit + 1)
        if not bodies:
            rows = s.execute(q).all()
            cut = False
        else:  # stored bodies are up to 256 KB each: a page stops at MAX_BODIES_BYTES, the cursor goes on
            rows, size, cut = [], 0, False
            for row in s.execute(q.execution_options(yield_per=50)):
                if rows and size >= MAX_BODIES_BYTES and len(rows) < limit + 1:
                    cut = True
                    break
                rows.append(row)
                size += len(row.input or "") + len(row.output or "") + len(orjson.dumps(row.meta or {}))
    more = cut or len(rows) > limit
    rows = rows[:limit]
    traces: list[TraceSummary] = []
    for row in rows:
        base = summary_fields(row)
        if bodies:
            traces.append(
                TraceRecord(
                    **base,
                    error=row.error,
                    input_preview=preview(row.input),
                    output_preview=preview(row.output),
                    input=row.input,
                    output=row.output,
                    metadata=row.meta or {},
                )
            )
        else:
            traces.append(
                TraceSummary(
                    **base,
                    error=clip(row.error),
                    input_preview=preview(row.input),
                    output_preview=preview(row.output),
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
        **summary_fields(t),
        error=t.error,
        input_preview=preview(t.input),
        output_preview=preview(t.output),
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
        project_id = _visible_trace(s, actor, trace_id).project_id
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
        logged = events_of(s, project_id, trace_id, [n.id for n in page])
    spans = []
    for node in page:
        r = rows[node.id]
        events = logged.get(node.id, [])
        # content an instrumentation sent as log records (GenAI events) stands in for a payload never stored
        from_events = genai.from_events(events) if events else (None, None)
        spans.append(
            SpanFull(
                **_node_fields(r, node),
                error=r.error,
                input=payload_value(r.input) if r.input is not None else from_events[0],
                output=payload_value(r.output) if r.output is not None else from_events[1],
                input_artifact=artifact_ref(r.input),
                output_artifact=artifact_ref(r.output),
                attributes=r.attributes or {},
                prompt_version_id=r.prompt_version_id,
                model_version_id=r.model_version_id,
                dataset_version_id=r.dataset_version_id,
                events=events,
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
    rest: Iterator[bytes] | None = None
    if ref is None:
        data = text.encode()
    else:  # streamed: the first chunk now (a missing blob is a 404 before any byte is sent), the rest as sent
        rest = platform.blobs.iter_chunks(ref.sha256)
        data = next(rest, b"")
    head = data[:64].lstrip()
    media = "application/json" if head[:1] in (b"{", b"[") else "text/plain; charset=utf-8"
    return Payload(data=data, media_type=media, sha256=ref.sha256 if ref is not None else None, rest=rest)


def check_trace_ids(platform: Platform, project_id: str, trace_ids: list[str]) -> None:
    """Refuse spans for traces another project holds: a trace id is the client's choice, so without this a
    part sent with another project's id would merge into that project's trace."""
    ordered = sorted(set(trace_ids))
    with platform.db.read_session() as s:
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            taken = s.scalar(
                select(Trace.id).where(Trace.id.in_(chunk), func.coalesce(Trace.project_id, "") != project_id).limit(1)
            )
            if taken is not None:
                raise Conflict(
                    f"trace id {taken!r} is taken by another project; give each trace a fresh id (the SDK does)",
                    details={"field": "trace_id"},
                )
