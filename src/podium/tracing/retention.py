"""Deleting traces: purges, each project's retention and an end user's erasure. Deletions go in chunks of
traces, each chunk one short transaction that deletes the traces' spans and scores with them and takes them
out of the trace rollup, so a large purge never holds the database (SQLite's single writer lock above all)
for long, and aggregates never count a trace that is gone."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from podium.auth.service import project_ref, record_audit
from podium.core.blobs import BlobStore
from podium.core.db import Database, utcnow
from podium.core.durations import parse_time
from podium.core.errors import Forbidden, InvalidInput, PodiumError, validated
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing import payloads, rollup
from podium.tracing.filters import is_admin, started_before
from podium.tracing.scores.store import Score
from podium.tracing.store import Span, SpanEvent, Trace, TraceRetention

log = logging.getLogger("podium.tracing.retention")

DELETE_CHUNK = 500  # traces per deletion transaction (their spans go in the same one)
MAX_RETENTION_DAYS = 36_500


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
                rollup.subtract(s, db.backend, ids)
                opts = {"synchronize_session": False}
                s.execute(delete(Score).where(Score.trace_id.in_(ids)).execution_options(**opts))  # feedback too
                s.execute(delete(SpanEvent).where(SpanEvent.trace_id.in_(ids)).execution_options(**opts))
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
    actor.require_admin("purge traces")
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
    actor.require_admin("erase a user's traces")
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
    """Keep a project's traces `{"days": N}` days (its admins); audited. The retention job deletes older ones."""
    spec = validated(_RetentionSpec, data, "retention", default="days")
    with platform.db.session() as s:
        p = project_ref(s, project)
        actor.require_in(p.id, "admin", "set trace retention")
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
        if not is_admin(actor) and p.id != actor.project_id:
            raise Forbidden("a key reads only its own project's retention")
        return _retention_info(p.id, p.name, s.get(TraceRetention, p.id))


def clear_retention(platform: Platform, actor: Actor, project: str) -> RetentionInfo:
    """Keep a project's traces forever again (its admins); audited."""
    with platform.db.session() as s:
        p = project_ref(s, project)
        actor.require_in(p.id, "admin", "set trace retention")
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
