"""Span events sent apart from their spans, as OTLP log records (`POST /v1/logs`): GenAI instrumentations
send a call's messages this way (`gen_ai.user.message`, `gen_ai.choice`,
`gen_ai.client.inference.operation.details`). An event is kept with the sender's project and found by its
trace and span ids among that project's events only, so a log record never shows in another project's
trace; it may arrive before or after its span. A span without a stored input or output takes them from its
GenAI events (`genai.from_events`).

Bounds at the edge: at most `MAX_EVENTS_PER_REQUEST` records a request; names cut to 200 characters,
strings in bodies to `MAX_BODY_CHARS` and in attributes to `ingest.MAX_ATTRIBUTE_CHARS`, nesting to
`ingest.MAX_DEPTH` (deeper is refused with the record), NUL characters replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing.ingest import MAX_ATTRIBUTE_CHARS, clean_value
from podium.tracing.store import SpanEvent

MAX_EVENTS_PER_REQUEST = 10_000
MAX_BODY_CHARS = 100_000  # characters of one string in an event's body (a message's content)
MAX_EVENTS_PER_SPAN = 1_000  # events read back per span


@dataclass(frozen=True)
class EventIn:
    """One event of a span, as a log record maps to it."""

    trace_id: str
    span_id: str
    time: datetime
    name: str
    body: Any
    attributes: dict[str, Any]


def _cut(value: Any, size: int) -> Any:
    if isinstance(value, str) and len(value) > size:
        return value[:size] + f"…[truncated {len(value) - size} characters]"
    if isinstance(value, dict):
        return {k: _cut(v, size) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, size) for v in value[:1000]]
    return value


def bounded(event: EventIn) -> EventIn:
    """The event within the bounds (`ValueError` for one nested too deep)."""
    return EventIn(
        trace_id=event.trace_id,
        span_id=event.span_id,
        time=event.time,
        name=clean_value(event.name)[:200],
        body=_cut(clean_value(event.body), MAX_BODY_CHARS),
        attributes=_cut(clean_value(event.attributes), MAX_ATTRIBUTE_CHARS),
    )


def _event_id(project_id: str, e: EventIn) -> str:
    data = orjson.dumps(
        [project_id, e.trace_id, e.span_id, e.time.isoformat(), e.name, e.body, e.attributes],
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS,
    )
    return "evt_" + hashlib.blake2b(data, digest_size=16).hexdigest()


def store_events(platform: Platform, actor: Actor, events: Sequence[EventIn]) -> int:
    """Keep events for the actor's project (a re-sent one once); how many were given."""
    actor.require("member", "send logs")
    if not events:
        return 0
    project_id = actor.project_id or ""
    rows = {}
    for e in events:
        rows[_event_id(project_id, e)] = {
            "project_id": project_id,
            "trace_id": e.trace_id,
            "span_id": e.span_id,
            "time": e.time,
            "name": e.name,
            "body": e.body,
            "attributes": e.attributes,
        }
    values = [{"id": k, **v} for k, v in sorted(rows.items())]
    db = platform.db
    insert = sqlite_insert if db.backend == "sqlite" else pg_insert
    with db.session() as s:
        for i in range(0, len(values), 500):
            s.execute(insert(SpanEvent).values(values[i : i + 500]).on_conflict_do_nothing(index_elements=["id"]))
    return len(events)


def events_of(
    s: Session, project_id: str | None, trace_id: str, span_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The events of these spans of a trace sent by the trace's project, oldest first, per span id."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not span_ids:
        return found
    q = (
        select(SpanEvent)
        .where(
            SpanEvent.trace_id == trace_id,
            SpanEvent.span_id.in_(list(span_ids)),
            SpanEvent.project_id == (project_id or ""),
        )
        .order_by(SpanEvent.time, SpanEvent.id)
    )
    for e in s.scalars(q):
        mine = found.setdefault(e.span_id, [])
        if len(mine) < MAX_EVENTS_PER_SPAN:
            mine.append({"name": e.name, "time": e.time.isoformat(), "body": e.body, "attributes": e.attributes or {}})
    return found
