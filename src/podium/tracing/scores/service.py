"""Scores on traces: user feedback, evaluators' verdicts and any number posted to `/api/scores`; and the
queries experiments read per prompt version (the traces behind a version, the scores of those traces).

A score names a trace that must exist. Traces reach the database through the batched writer a fraction of a
second after their spans are accepted, so a score posted right after its trace may find no row yet: the
service waits up to `TRACE_WAIT_SECONDS` for a missing trace before answering 404 (with a hint to retry).
A score takes the project of its trace; keys that are not an admin's see and score their own project's
traces only, as for trace queries.

Values are floats; booleans are stored as 1 and 0. Several scores of one name on one trace are all kept;
experiment statistics count the latest of them per trace.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from podium.core.db import Database, utcnow
from podium.core.errors import InvalidInput, NotFound, validated
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.tracing.scores.store import SCORE_SOURCES, Score, ScoreSource
from podium.tracing.service import started_before, started_from
from podium.tracing.store import Span, Trace

MAX_BATCH = 1_000
MAX_LIST = 1_000
DEFAULT_LIST = 100
TRACE_WAIT_SECONDS = 2.0  # how long a score waits for its trace to be written (the writer flushes every 0.25 s)
_POLL_SECONDS = 0.1
_CHUNK = 500  # ids per IN (...) query
MAX_VERSION_TRACES = 20_000  # traces of one prompt version an experiment's statistics read (the newest)
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,40}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,119}$")


class ScoreIn(BaseModel):
    """One score as posted: `value` is a number, or a boolean stored as 1/0."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    span_id: str | None = None
    name: str = Field(description="What is scored: `thumbs`, `helpfulness`, `exact_match`…")
    value: float
    source: ScoreSource = "api"
    comment: str | None = Field(None, max_length=2000)

    @field_validator("trace_id", "span_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not _ID.match(value):
            raise ValueError("ids are 1-40 characters of letters, digits, '_', '.', ':' or '-'")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("1-120 letters, digits, spaces or '._:/-', starting with a letter or digit")
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> float:
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if not isinstance(value, int | float):
            raise ValueError("must be a number or a boolean")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number


class ScoreInfo(BaseModel):
    """A stored score."""

    id: str
    trace_id: str
    span_id: str | None
    name: str
    value: float
    source: str
    comment: str | None
    project_id: str | None
    created_by: str
    created_at: datetime


class ScoreList(BaseModel):
    """Scores created by a batch, or listed by `GET /api/scores` (newest first)."""

    scores: list[ScoreInfo]


def parse_scores(data: Any) -> tuple[list[ScoreIn], bool]:
    """One score object, or `{"scores": [...]}`; returns the scores and whether it was a batch. `InvalidInput`
    names the bad field (`value`, `scores[3].trace_id`)."""
    if isinstance(data, dict) and "scores" in data:
        raw = data["scores"]
        if not isinstance(raw, list) or not raw:
            raise InvalidInput('"scores" must be a non-empty array of scores', details={"field": "scores"})
        if len(raw) > MAX_BATCH:
            raise InvalidInput(
                f"{len(raw)} scores in one request; send at most {MAX_BATCH}", details={"field": "scores"}
            )
        return [_parse_one(item, f"scores[{i}].") for i, item in enumerate(raw)], True
    return [_parse_one(data, "")], False


def _parse_one(item: Any, prefix: str) -> ScoreIn:
    if not isinstance(item, dict):
        where = prefix.rstrip(".") or "body"
        raise InvalidInput(f"{where}: a score is a JSON object with trace_id, name and value", details={"field": where})
    return validated(ScoreIn, item, "score", prefix=prefix, default=prefix + "body")


def _is_admin(actor: Actor) -> bool:
    return actor.is_admin


def _info(row: Score) -> ScoreInfo:
    return ScoreInfo(
        id=row.id,
        trace_id=row.trace_id,
        span_id=row.span_id,
        name=row.name,
        value=row.value,
        source=row.source,
        comment=row.comment,
        project_id=row.project_id,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _chunks(items: Sequence[str]) -> list[list[str]]:
    return [list(items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)]


def _lookup(db: Database, actor: Actor, scores: list[ScoreIn]) -> tuple[dict[str, str | None], set[tuple[str, str]]]:
    """The visible traces (id → project) and the (trace, span) pairs that exist among those the scores name."""
    trace_ids = sorted({s.trace_id for s in scores})
    span_ids = sorted({s.span_id for s in scores if s.span_id is not None})
    traces: dict[str, str | None] = {}
    spans: set[tuple[str, str]] = set()
    with db.read_session() as s:
        for chunk in _chunks(trace_ids):
            for tid, project_id in s.execute(select(Trace.id, Trace.project_id).where(Trace.id.in_(chunk))):
                if _is_admin(actor) or project_id == (actor.project_id or ""):
                    traces[tid] = project_id
        for chunk in _chunks(span_ids):
            spans.update((t, i) for t, i in s.execute(select(Span.trace_id, Span.id).where(Span.id.in_(chunk))))
    return traces, spans


def _missing(scores: list[ScoreIn], traces: dict[str, str | None], spans: set[tuple[str, str]]) -> int | None:
    """Index of the first score whose trace (or span) is not there."""
    for i, sc in enumerate(scores):
        if sc.trace_id not in traces or (sc.span_id is not None and (sc.trace_id, sc.span_id) not in spans):
            return i
    return None


async def add_scores_async(db: Database, actor: Actor, scores: list[ScoreIn], *, batch: bool = True) -> list[ScoreInfo]:
    """`add_scores` for the server: a trace not written yet is waited for on the event loop (each try is a
    short read off it), so scores for unknown traces hold no worker thread while they wait."""
    deadline = time.monotonic() + TRACE_WAIT_SECONDS
    while True:
        try:
            return await asyncio.to_thread(add_scores, db, actor, scores, wait=0, batch=batch)
        except NotFound:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(_POLL_SECONDS)


def add_scores(
    db: Database, actor: Actor, scores: list[ScoreIn], *, wait: float | None = None, batch: bool = True
) -> list[ScoreInfo]:
    """Store scores on existing traces, all or none. A trace (or span) not found is waited for up to `wait`
    seconds (default `TRACE_WAIT_SECONDS`; it may still be in a writer's queue), then `NotFound` names it;
    `batch` says the scores came as `{"scores": [...]}`, so the error names `scores[i].trace_id`."""
    actor.require("member", "post scores")
    deadline = time.monotonic() + (TRACE_WAIT_SECONDS if wait is None else wait)
    while True:
        traces, spans = _lookup(db, actor, scores)
        bad = _missing(scores, traces, spans)
        if bad is None:
            break
        if time.monotonic() >= deadline:
            sc = scores[bad]
            prefix = f"scores[{bad}]." if batch else ""
            if sc.trace_id not in traces:
                what, field = f"trace {sc.trace_id!r}", prefix + "trace_id"
            else:
                what, field = f"span {sc.span_id!r} of trace {sc.trace_id!r}", prefix + "span_id"
            raise NotFound(
                f"{what} not found (traces are written within a second of being sent; if it was just sent, retry)",
                details={"field": field, "trace_id": sc.trace_id},
            )
        time.sleep(_POLL_SECONDS)
    now = utcnow()
    rows = [
        Score(
            id=new_id("scr"),
            trace_id=sc.trace_id,
            span_id=sc.span_id,
            name=sc.name,
            value=sc.value,
            source=sc.source,
            comment=sc.comment,
            project_id=traces[sc.trace_id],
            created_by=actor.label,
            created_at=now,
        )
        for sc in scores
    ]
    with db.session() as s:
        s.add_all(rows)
    return [_info(r) for r in rows]


def list_scores(
    db: Database,
    actor: Actor,
    *,
    trace_id: str | None = None,
    name: str | None = None,
    source: str | None = None,
    limit: int = DEFAULT_LIST,
) -> list[ScoreInfo]:
    """Scores, newest first, of one trace and/or one name and/or one source, within the actor's project."""
    actor.require("viewer", "read scores")
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}", details={"field": "limit"})
    q = select(Score)
    if trace_id:
        q = q.where(Score.trace_id == trace_id)
    if name:
        q = q.where(Score.name == name)
    if source:
        if source not in SCORE_SOURCES:
            raise InvalidInput(
                f"source {source!r} is not one of: {', '.join(SCORE_SOURCES)}", details={"field": "source"}
            )
        q = q.where(Score.source == source)
    if not _is_admin(actor):
        q = q.where(Score.project_id == (actor.project_id or ""))
    with db.read_session() as s:
        rows = s.scalars(q.order_by(Score.created_at.desc(), Score.id.desc()).limit(limit)).all()
        return [_info(r) for r in rows]


# --- what experiments read -------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceOutcome:
    """What a trace says about the prompt version behind it."""

    trace_id: str
    error: bool
    latency_ms: float | None
    cost_micros: int
    tokens: int


def version_traces(
    db: Database,
    version_id: str,
    start: datetime,
    end: datetime | None = None,
    *,
    limit: int = MAX_VERSION_TRACES,
    experiment_id: str | None = None,
) -> tuple[list[TraceOutcome], bool]:
    """The traces having a span of this prompt version that started in `[start, end)`, newest first, at most
    `limit` of them (found through the partial index on `spans.prompt_version_id`); and whether there were more.
    With `experiment_id`, only the traces that experiment assigned (the gateway records it in the trace's
    metadata), not those that pinned the version, the playground's, or ingested ones claiming the experiment."""
    with db.read_session() as s:
        backend = s.get_bind().dialect.name
        spans_of = select(Span.trace_id).where(Span.prompt_version_id == version_id)
        q = select(
            Trace.id, Trace.status, Trace.latency_ms, Trace.cost_micros, Trace.prompt_tokens, Trace.completion_tokens
        ).where(Trace.id.in_(spans_of), started_from(backend, start))
        if experiment_id is not None:  # the gateway's own traces: clients cannot send a trace as the gateway
            q = q.where(Trace.source == "gateway", Trace.meta["experiment"].as_string() == experiment_id)
        if end is not None:
            q = q.where(started_before(backend, end))
        rows = s.execute(q.order_by(Trace.start_time.desc(), Trace.id.desc()).limit(limit + 1)).all()
    outcomes = [
        TraceOutcome(
            trace_id=r.id,
            error=r.status == "error",
            latency_ms=r.latency_ms,
            cost_micros=r.cost_micros or 0,
            tokens=(r.prompt_tokens or 0) + (r.completion_tokens or 0),
        )
        for r in rows[:limit]
    ]
    return outcomes, len(rows) > limit


def latest_scores(
    db: Database, trace_ids: Sequence[str], names: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """Per score name, each trace's latest value of it (`{name: {trace_id: value}}`), for the given traces."""
    out: dict[str, dict[str, float]] = {}
    with db.read_session() as s:
        for chunk in _chunks(list(trace_ids)):
            q = select(Score.trace_id, Score.name, Score.value).where(Score.trace_id.in_(chunk))
            if names is not None:
                q = q.where(Score.name.in_(list(names)))
            for tid, name, value in s.execute(q.order_by(Score.created_at, Score.id)):
                out.setdefault(name, {})[tid] = value
    return out


def trace_scores(db: Database, actor: Actor, trace_ids: Sequence[str]) -> dict[str, list[ScoreInfo]]:
    """Every score of each of `trace_ids` (oldest first) that the actor may read, by trace: what a dataset
    made from traces carries beside each row (human feedback is a score whose source is `user`, with its
    comment)."""
    actor.require("viewer", "read scores")
    out: dict[str, list[ScoreInfo]] = {}
    with db.read_session() as s:
        for chunk in _chunks(list(trace_ids)):
            q = select(Score).where(Score.trace_id.in_(chunk))
            if not _is_admin(actor):
                q = q.where(Score.project_id == (actor.project_id or ""))
            for row in s.scalars(q.order_by(Score.created_at, Score.id)):
                out.setdefault(row.trace_id, []).append(_info(row))
    return out
