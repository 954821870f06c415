"""The eval cache's reads and writes: many keys per query, many entries per statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from podium.core.db import Database, utcnow
from podium.evals.store import EvalCache

_CHUNK = 500  # keys per IN (...) query and rows per INSERT


def read(db: Database, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The cached values of those of `keys` that are cached."""
    found: dict[str, dict[str, Any]] = {}
    with db.read_session() as s:
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            for key, value in s.execute(select(EvalCache.key, EvalCache.value).where(EvalCache.key.in_(chunk))):
                found[key] = value
    return found


def write_now(db: Database, entries: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Store new entries; a key another run stored meanwhile is kept as it is (same inputs, same answer)."""
    if not entries:
        return
    insert = pg_insert if db.backend == "postgresql" else sqlite_insert
    now = utcnow()
    rows = [{"key": k, "kind": kind, "value": v, "created_at": now} for k, (kind, v) in entries.items()]
    with db.session() as s:
        for i in range(0, len(rows), _CHUNK):
            s.execute(insert(EvalCache).on_conflict_do_nothing(index_elements=["key"]), rows[i : i + _CHUNK])
