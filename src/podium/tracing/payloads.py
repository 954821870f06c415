"""Payloads of deleted traces in the artifact store: found before the rows go, freed after if nothing else
refers to them.

Large inputs and outputs live in the content-addressed blob store, and a row keeps a marker naming the
blob's sha256. Blobs are shared by content, so a purge, a retention run or a user's erasure frees a blob
only when no domain refers to it any more (each domain answers for its own tables, through its `Domain`
declaration). The check sees committed rows only: a record with the same payload still in a writer's
queue, in flight to its child process or in a spill file waiting for the next start refers to a blob that
may be freed, and its marker then points at nothing (its payload reads 404). That needs identical content
ingested while the old copy is deleted; erasure must not keep a person's data to close the window, so it
is accepted and stated here.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from podium.core import domains
from podium.core.blobs import BlobStore
from podium.core.db import Database
from podium.tracing.markers import ARTIFACT_KEY, MARKER_PREFIX
from podium.tracing.store import Span, Trace


def marker_digest(text: str | None) -> str | None:
    """The sha256 a stored payload's marker names, if it is a marker."""
    if not text or not text.startswith(MARKER_PREFIX):
        return None
    try:
        value = orjson.loads(text).get(ARTIFACT_KEY)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _marked(columns: Iterable[tuple[str | None, str | None]]) -> set[str]:
    return {d for pair in columns for d in map(marker_digest, pair) if d}


def digests_of(s: Session, trace_ids: list[str]) -> set[str]:
    """The blobs these traces and their spans refer to."""
    if not trace_ids:
        return set()
    trace_rows = s.execute(
        select(Trace.input, Trace.output).where(
            Trace.id.in_(trace_ids), or_(Trace.input.startswith(MARKER_PREFIX), Trace.output.startswith(MARKER_PREFIX))
        )
    )
    span_rows = s.execute(
        select(Span.input, Span.output).where(
            Span.trace_id.in_(trace_ids),
            or_(Span.input.startswith(MARKER_PREFIX), Span.output.startswith(MARKER_PREFIX)),
        )
    )
    return _marked(tuple(r) for r in trace_rows) | _marked(tuple(r) for r in span_rows)


def referenced(s: Session, digests: set[str]) -> set[str]:
    """Which of `digests` a remaining trace or span refers to (one pass over each table): tracing's answer
    to the artifact store's question "is this blob still needed?"."""
    found: set[str] = set()
    for model in (Trace, Span):
        rows = s.execute(
            select(model.input, model.output).where(
                or_(model.input.startswith(MARKER_PREFIX), model.output.startswith(MARKER_PREFIX))
            )
        )
        found |= _marked(tuple(r) for r in rows) & digests
    return found


def still_referenced(db: Database, digests: set[str]) -> set[str]:
    """Which of `digests` any domain still refers to: remaining traces and spans, model version files, and
    whatever later domains store by content."""
    if not digests:
        return set()
    with db.read_session() as s:
        return domains.still_referenced(s, digests)


def free(db: Database, blobs: BlobStore, candidates: set[str]) -> int:
    """Delete the candidate blobs nothing refers to any more; returns how many were deleted."""
    unused = candidates - still_referenced(db, candidates)
    for digest in unused:
        blobs.delete(digest)
    return len(unused)
