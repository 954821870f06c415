"""The eval cache's reads and writes: many keys per query, many entries per transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from podium.core.db import Database
from podium.evals.store import EvalCache

_CHUNK = 500  # keys per IN (...) query


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
    with db.session() as s:
        present = set()
        keys = list(entries)
        for i in range(0, len(keys), _CHUNK):
            present |= set(s.scalars(select(EvalCache.key).where(EvalCache.key.in_(keys[i : i + _CHUNK]))))
        s.add_all(EvalCache(key=k, kind=kind, value=v) for k, (kind, v) in entries.items() if k not in present)
