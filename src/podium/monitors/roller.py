"""Rolling traces and scores into the monitor rollup (`podium.monitors.store`), incrementally.

Why a rollup of its own, beside the trace rollup (`podium.tracing.rollup`): the monitors group by the prompt
version (in the trace's metadata) and count what the trace rollup does not keep (cache hits, guardrail
blocks, refusals read from the answer, scores). Adding those to the trace rollup would put a regular
expression over every answer and a JSON read of every trace's metadata on the trace writer's path (the
hot path's CPU is the number this project watches), and another dimension on its every row; a roller that
reads each minute's traces once, after the minute, keeps that work off the request path and out of the
writer.

Traces: the trace writer keeps an exact per-minute rollup of every project's traces (count, tokens, cost,
status), in step with late traces, parts merged into a trace and deletions. The roller compares its
per-(hour, project) figures, then per (minute, project) within the hours that differ, over the last `HORIZON`
with the figures each minute was rolled from (`monitor_minutes`), and rolls again just the minutes that
differ: it reads their traces through the start-time index, computes their rows afresh (prompt version,
cache, guardrail block, refusal: `podium.monitors.signals`) and applies the difference from the rows it had
written to the minute, hour and day rows. A minute is replaced, never added to, so a late trace, a trace
merged from parts or a deleted one is counted once, as it now stands. The background loop rolls the minutes
that ended `SETTLE` seconds ago, so each minute's traces are read once unless one arrives late; a roll asked
for (`POST /api/monitors/roll`, tests) takes the current minute too, rolled again when it changes. What it
does not see: a change older than `HORIZON`, and a part that changes only a trace's output or metadata
without moving its totals after its minute was rolled.

Scores: they are written once and not changed, with ids that sort by creation time (ULIDs), so the roller
reads those after its watermark by the primary key, up to `SETTLE` seconds ago (a transaction that made
a score commits well within it), and adds them to the minute, hour and day of their creation. A score
deleted after it was rolled stays counted.

Minute rows older than `MINUTE_DAYS` are deleted once an hour (hours and days are kept): a read of older
times in minute buckets, or one whose ends cut hours there, finds nothing in those minutes.

A minute's traces are read and summed in a read transaction; only the replacement of its rows runs in a
write transaction (short: on SQLite it holds the lock the trace writer waits for). On PostgreSQL an advisory
lock lets one process write at a time (the others skip); rolling a minute again is idempotent, and a minute
rolled from traces that changed meanwhile differs from the trace rollup and is rolled again, so two
processes that both find a minute changed agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, literal_column, or_, select
from sqlalchemy.orm import Session

from podium.core.db import Database, utcnow
from podium.monitors import signals
from podium.monitors.store import SUMS, MonitorLatency, MonitorMinute, MonitorRollup, MonitorScore, MonitorState
from podium.tracing import aggregates, latency
from podium.tracing.rollup import WIDTHS, seconds

HORIZON = 2 * 86_400  # how far back a roll looks for minutes that changed
MINUTE_DAYS = 30  # minute rows older than this are deleted (hour and day rows are kept)
SETTLE = 10  # seconds: scores younger than this, and (in the background) minutes ended less long ago, wait
MINUTES_PER_TRANSACTION = 10
SCORES_PER_TRANSACTION = 5_000
INTERVAL = 15.0  # seconds between background rolls
_LOCK_KEY = 0x6D6F6E69746F7273  # "monitors": the PostgreSQL advisory lock of a roll
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
log = logging.getLogger("podium.monitors")

Key = tuple[str, str, str, str]  # project, route, model, prompt


@dataclass
class Rolled:
    """What one roll did."""

    minutes: int = 0
    traces: int = 0
    scores: int = 0


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _lock(s: Session, backend: str) -> bool:
    """Take the roll's lock for this transaction (PostgreSQL); False if another process holds it."""
    if backend != "postgresql":
        return True
    return bool(s.connection().exec_driver_sql("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).scalar())


def roll(db: Database, *, now: datetime | None = None, partial: bool = True) -> Rolled:
    """Bring the monitor rollup up to date with the traces and scores: every minute up to `now` (default: the
    time of the call), the current one too with `partial`; without it, only the minutes that ended `SETTLE`
    seconds ago (the background loop: each minute is then read once, unless a trace arrives late)."""
    now = now or utcnow()
    done = Rolled()
    at = seconds(now)
    hi = at // 60 * 60 + 60 if partial else (at - SETTLE) // 60 * 60
    with db.read_session() as s:
        dirty = _dirty(s, hi - HORIZON, hi)
    slots: dict[int, list[str]] = defaultdict(list)
    for slot, project in dirty:
        slots[slot].append(project)
    ordered = sorted(slots.items())
    for i in range(0, len(ordered), MINUTES_PER_TRANSACTION):
        chunk = ordered[i : i + MINUTES_PER_TRANSACTION]
        with db.read_session() as s:  # the traces are read and summed outside the write transaction
            fresh = [_minute(s, slot, projects) for slot, projects in chunk]
        with db.session() as s:
            if not _lock(s, db.backend):
                return done
            for (slot, projects), minute in zip(chunk, fresh, strict=True):
                _replace(s, db.backend, slot, projects, minute)
                done.traces += minute.traces
                done.minutes += 1
    while True:
        with db.session() as s:
            if not _lock(s, db.backend):
                return done
            n = _roll_scores(s, db.backend, now)
        done.scores += n
        if n < SCORES_PER_TRANSACTION:
            return done


def _dirty(s: Session, lo: int, hi: int) -> list[tuple[int, str]]:
    """The (minute, project) pairs in `[lo, hi)` whose traces' figures in the trace rollup differ from those the
    monitors rolled: the hours are compared first, then the minutes of the hours that differ (and of the
    hours cut by the range's ends), so a roll reads a few hour rows for every quiet hour."""
    first_hour = -(-lo // 3600) * 3600
    last_hour = hi // 3600 * 3600
    suspects: list[tuple[int, int]] = []  # minute ranges to compare
    if first_hour < last_hour:
        theirs = aggregates.slot_totals(s, first_hour, last_hour, 3600)
        mine = _signatures(s, first_hour, last_hour, 3600)
        hours = sorted({k[0] for k in theirs.keys() | mine.keys() if theirs.get(k) != mine.get(k)})
        suspects += [(h, h + 3600) for h in hours]
        suspects += [(lo, first_hour), (last_hour, hi)]
    else:
        suspects.append((lo, hi))
    dirty: list[tuple[int, str]] = []
    for a, b in sorted(suspects):
        if a >= b:
            continue
        theirs = aggregates.slot_totals(s, a, b, 60)
        mine = _signatures(s, a, b, 60)
        dirty += [k for k in theirs.keys() | mine.keys() if theirs.get(k) != mine.get(k)]
    return sorted(set(dirty))


def prune(db: Database, *, now: datetime | None = None) -> int:
    """Delete the minute rows older than `MINUTE_DAYS` (their hours and days stay); the rows deleted."""
    before = seconds(now or utcnow()) - MINUTE_DAYS * 86_400
    deleted = 0
    with db.session() as s:
        for table in (MonitorRollup, MonitorLatency, MonitorScore):
            gone = s.execute(delete(table).where(table.width == 60, table.slot < before))
            deleted += gone.rowcount or 0  # type: ignore[attr-defined]
        gone = s.execute(delete(MonitorMinute).where(MonitorMinute.slot < before))
        deleted += gone.rowcount or 0  # type: ignore[attr-defined]
    return deleted


async def roll_loop(db: Database, interval: float = INTERVAL) -> None:
    """Roll the minutes that ended every `interval` seconds, off the event loop, and prune old minute rows once
    an hour; a failed roll is logged and tried again."""
    pruned_at = 0.0
    while True:
        try:
            if time.monotonic() - pruned_at > 3600:
                await asyncio.to_thread(prune, db)
                pruned_at = time.monotonic()
            await asyncio.to_thread(roll, db, partial=False)
        except Exception:
            log.exception("rolling the monitors failed; trying again in %.0f s", interval)
        await asyncio.sleep(interval)


def _signatures(s: Session, lo: int, hi: int, width: int) -> dict[tuple[int, str], tuple[int, int, int, int, int]]:
    """What the minutes in `[lo, hi)` were rolled from, per (slot of `width` seconds, project)."""
    m = MonitorMinute
    slot = (m.slot // literal_column(str(int(width)))) * literal_column(str(int(width)))
    figures = (m.traces, m.prompt_tokens, m.completion_tokens, m.cost_micros, m.errors)
    q = select(slot.label("k_slot"), m.project_id, *(func.sum(f) for f in figures)).where(m.slot >= lo, m.slot < hi)
    rows = s.execute(q.group_by(literal_column("k_slot"), m.project_id))
    return {(int(r[0]), r[1]): (int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in rows}


# --- traces ------------------------------------------------------------------------------------------


@dataclass
class _Minute:
    """One minute's rows computed from its traces, and what they were computed from."""

    totals: dict[Key, list[int]]
    bins: dict[tuple[Key, int], int]
    signatures: dict[str, list[int]]
    traces: int


def _minute(s: Session, slot: int, projects: Sequence[str]) -> _Minute:
    """The rows of one minute of these projects, from its traces."""
    start = datetime.fromtimestamp(slot, UTC)
    traces = aggregates.monitor_traces(s, start, start + timedelta(minutes=1), projects)
    wanted = set(projects)
    totals: dict[Key, list[int]] = defaultdict(lambda: [0] * len(SUMS))
    bins: dict[tuple[Key, int], int] = defaultdict(int)
    sigs: dict[str, list[int]] = {p: [0, 0, 0, 0, 0] for p in wanted}
    for n, t in enumerate(traces):
        if n % 256 == 255:
            time.sleep(0)  # hand the GIL to the server's event loop now and then (rolls run on a thread)
        project = _text(t["project_id"])
        if project not in wanted:
            continue
        prompt, looked, hit, blocked, answered, refused = signals.facts(t)
        key = (project, _text(t["route"]), _text(t["model"]), prompt)
        error = t["status"] == "error"
        tokens_in, tokens_out, cost = (
            int(t["prompt_tokens"] or 0),
            int(t["completion_tokens"] or 0),
            int(t["cost_micros"] or 0),
        )
        row = totals[key]
        for i, v in enumerate((1, error, tokens_in, tokens_out, cost, looked, hit, blocked, answered, refused)):
            row[i] += int(v)
        if t["latency_ms"] is not None:
            bins[(key, latency.bin_of(float(t["latency_ms"])))] += 1
        sig = sigs[project]
        for i, v in enumerate((1, tokens_in, tokens_out, cost, error)):
            sig[i] += int(v)
    return _Minute(totals, bins, sigs, len(traces))


def _replace(s: Session, backend: str, slot: int, projects: Sequence[str], minute: _Minute) -> None:
    """Make the minute's rows of these projects `minute`'s: the new rows minus the rows there now, applied to
    every width (so a roll that raced another still leaves one minute's worth); its signature replaced."""
    wanted = sorted(set(projects))
    totals = defaultdict(lambda: [0] * len(SUMS), {k: list(v) for k, v in minute.totals.items()})
    bins = defaultdict(int, minute.bins)
    r = MonitorRollup
    old_totals = s.execute(
        select(r.project_id, r.route, r.model, r.prompt, *(getattr(r, c) for c in SUMS)).where(
            r.width == 60, r.slot == slot, r.project_id.in_(wanted)
        )
    )
    for row_ in old_totals:
        new = totals[(row_[0], row_[1], row_[2], row_[3])]
        for i in range(len(SUMS)):
            new[i] -= int(row_[4 + i])
    lt = MonitorLatency
    old_bins = s.execute(
        select(lt.project_id, lt.route, lt.model, lt.prompt, lt.bin, lt.traces).where(
            lt.width == 60, lt.slot == slot, lt.project_id.in_(wanted)
        )
    )
    for row_ in old_bins:
        bins[((row_[0], row_[1], row_[2], row_[3]), int(row_[4]))] -= int(row_[5])
    _apply(s, backend, slot, totals, bins)
    m = MonitorMinute
    s.execute(delete(m).where(m.slot == slot, m.project_id.in_(wanted)))
    s.add_all(
        MonitorMinute(
            slot=slot,
            project_id=p,
            traces=v[0],
            prompt_tokens=v[1],
            completion_tokens=v[2],
            cost_micros=v[3],
            errors=v[4],
        )
        for p, v in sorted(minute.signatures.items())
        if v[0]
    )
    s.flush()


def _apply(s: Session, backend: str, slot: int, totals: dict[Key, list[int]], bins: dict[tuple[Key, int], int]) -> None:
    """Add the differences to the minute, hour and day rows holding `slot`; rows left empty go."""
    rows = [((w, slot - slot % w, *k), v) for k, v in sorted(totals.items()) if any(v) for w in WIDTHS]
    if rows:
        _upsert(s, backend, "monitor_rollup", ("width", "slot", "project_id", "route", "model", "prompt"), SUMS, rows)
        _purge(s, MonitorRollup, [k for k, v in rows if v[0] < 0])
    hist = [((w, slot - slot % w, *k, b), [n]) for (k, b), n in sorted(bins.items()) if n for w in WIDTHS]
    if hist:
        keys = ("width", "slot", "project_id", "route", "model", "prompt", "bin")
        _upsert(s, backend, "monitor_latency", keys, ("traces",), hist)
        _purge(s, MonitorLatency, [k for k, v in hist if v[0] < 0])


# PostgreSQL types of the rollup's columns (text otherwise), for the one-statement upsert over arrays
_PG_TYPES = {"width": "integer", "slot": "bigint", "bin": "smallint", "total": "double precision"}


def _upsert(
    s: Session,
    backend: str,
    table: str,
    key: tuple[str, ...],
    sums: tuple[str, ...],
    rows: Sequence[tuple[tuple[Any, ...], Sequence[int | float]]],
) -> None:
    """Add `rows` (key, sums) to `table`, inserting the rows that are not there (in key order, so concurrent
    writers lock alike). On PostgreSQL one statement over arrays, one per column (psycopg's executemany
    sends a statement per row)."""
    names = ", ".join(f'"{c}"' for c in (*key, *sums))
    sets = ", ".join(f'"{c}" = {table}."{c}" + excluded."{c}"' for c in sums)
    conflict = ", ".join(f'"{c}"' for c in key)
    ordered = [(*k, *v) for k, v in sorted(rows, key=lambda kv: kv[0])]
    if backend == "sqlite":
        marks = ", ".join("?" for _ in (*key, *sums))
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({conflict}) DO UPDATE SET {sets}"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
        s.connection().exec_driver_sql(sql, ordered)
        return
    kinds = [_PG_TYPES.get(c, "bigint" if c in sums else "text") for c in (*key, *sums)]
    arrays = ", ".join(f"%s::{kind}[]" for kind in kinds)
    sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT ({conflict}) DO UPDATE SET {sets}"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
    s.connection().exec_driver_sql(sql, tuple(list(column) for column in zip(*ordered, strict=True)))


def _purge(s: Session, table: type[MonitorRollup] | type[MonitorLatency], keys: Iterable[tuple[Any, ...]]) -> None:
    """Delete the rows of these keys that hold no traces any more."""
    wanted = list(keys)
    if not wanted:
        return
    columns = [table.width, table.slot, table.project_id, table.route, table.model, table.prompt]
    if table is MonitorLatency:
        columns.append(MonitorLatency.bin)
    for i in range(0, len(wanted), 200):
        chunk = wanted[i : i + 200]
        match = or_(*(and_(*(c == v for c, v in zip(columns, k, strict=True))) for k in chunk))
        s.execute(delete(table).where(match, table.traces <= 0))


# --- scores ------------------------------------------------------------------------------------------


def _id_at(when: datetime) -> str:
    """The smallest score id made at `when` (ULID time digits, then zeros)."""
    ms = int(when.timestamp() * 1000)
    digits = ""
    for _ in range(10):
        digits = _ALPHABET[ms % 32] + digits
        ms //= 32
    return f"scr_{digits}{'0' * 16}"


def _roll_scores(s: Session, backend: str, now: datetime) -> int:
    """Add the next scores after the watermark to the rollup and move the watermark past them."""
    state = s.get(MonitorState, "scores")
    after = state.value if state is not None else ""
    rows = aggregates.monitor_scores(s, after, _id_at(now - timedelta(seconds=SETTLE)), SCORES_PER_TRANSACTION)
    if not rows:
        return 0
    sums: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0.0])
    for row in rows:
        at = seconds(row["created_at"])
        key = (
            _text(row["project_id"]),
            _text(row["route"]),
            _text(row["model"]),
            signals.prompt_of(row["meta"]),
            str(row["name"]),
            str(row["source"]),
        )
        for w in WIDTHS:
            cell = sums[(w, at - at % w, *key)]
            cell[0] += 1
            cell[1] += float(row["value"])
    keys = ("width", "slot", "project_id", "route", "model", "prompt", "name", "source")
    _upsert(s, backend, "monitor_scores", keys, ("count", "total"), list(sums.items()))
    last = str(rows[-1]["id"])
    if state is None:
        s.add(MonitorState(name="scores", value=last))
    else:
        state.value = last
    s.flush()
    return len(rows)
