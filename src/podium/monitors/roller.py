"""Rolling traces and scores into the monitor rollup (`podium.monitors.store`), incrementally.

Traces: the trace writer already keeps an exact per-minute rollup of every project's traces (count,
tokens, cost, status), in step with late traces, parts merged into a trace and deletions
(`podium.tracing.rollup`). The roller compares those per-(minute, project) figures over the last
`HORIZON` with the figures it rolled each minute from (`monitor_minutes`), and rolls again just the
minutes that differ: it reads their traces through the start-time index, computes their rows afresh
(prompt version, cache, guardrail block, refusal: `podium.monitors.signals`) and applies the difference
from the rows it had written to the minute, hour and day rows. A minute is replaced, never added to, so a
late trace, a trace merged from parts or a deleted one is counted once, as it now stands. What it does not
see: a change older than `HORIZON`, and a part that changes only a trace's output or metadata without
moving its totals after its minute was rolled.

Scores: they are written once and not changed, with ids that sort by creation time (ULIDs), so the roller
reads those after its watermark by the primary key, up to `SETTLE` seconds ago (a transaction that made
a score commits well within it), and adds them to the minute, hour and day of their creation. A score
deleted after it was rolled stays counted.

Each roll runs in short transactions; on PostgreSQL an advisory lock lets one process roll at a time (the
others skip), on SQLite the write lock does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from podium.core.db import Database, utcnow
from podium.monitors import signals
from podium.monitors.store import SUMS, MonitorLatency, MonitorMinute, MonitorRollup, MonitorState
from podium.tracing import aggregates, latency
from podium.tracing.rollup import WIDTHS, seconds

HORIZON = 2 * 86_400  # how far back a roll looks for minutes that changed
SETTLE = 10  # seconds: scores younger than this wait for the next roll
MINUTES_PER_TRANSACTION = 30
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


def roll(db: Database, *, now: datetime | None = None) -> Rolled:
    """Bring the monitor rollup up to date with the traces and scores (what the background loop runs, and
    what tests call to roll at once)."""
    now = now or utcnow()
    done = Rolled()
    hi = seconds(now) // 60 * 60 + 60
    with db.read_session() as s:
        theirs = aggregates.minute_totals(s, hi - HORIZON, hi)
        mine = _signatures(s, hi - HORIZON, hi)
    dirty = sorted(k for k in theirs.keys() | mine.keys() if theirs.get(k) != mine.get(k))
    slots: dict[int, list[str]] = defaultdict(list)
    for slot, project in dirty:
        slots[slot].append(project)
    ordered = sorted(slots.items())
    for i in range(0, len(ordered), MINUTES_PER_TRANSACTION):
        with db.session() as s:
            if not _lock(s, db.backend):
                return done
            for slot, projects in ordered[i : i + MINUTES_PER_TRANSACTION]:
                done.traces += _roll_minute(s, db.backend, slot, projects)
                done.minutes += 1
    while True:
        with db.session() as s:
            if not _lock(s, db.backend):
                return done
            n = _roll_scores(s, db.backend, now)
        done.scores += n
        if n < SCORES_PER_TRANSACTION:
            return done


async def roll_loop(db: Database, interval: float = INTERVAL) -> None:
    """Roll every `interval` seconds, off the event loop; a failed roll is logged and tried again."""
    while True:
        try:
            await asyncio.to_thread(roll, db)
        except Exception:
            log.exception("rolling the monitors failed; trying again in %.0f s", interval)
        await asyncio.sleep(interval)


def _signatures(s: Session, lo: int, hi: int) -> dict[tuple[int, str], tuple[int, int, int, int, int]]:
    m = MonitorMinute
    q = select(m.slot, m.project_id, m.traces, m.prompt_tokens, m.completion_tokens, m.cost_micros, m.errors)
    return {(r[0], r[1]): tuple(int(v) for v in r[2:]) for r in s.execute(q.where(m.slot >= lo, m.slot < hi))}  # type: ignore[misc]


# --- traces ------------------------------------------------------------------------------------------


def _roll_minute(s: Session, backend: str, slot: int, projects: Sequence[str]) -> int:
    """Roll one minute of these projects again: the new rows minus the rows written before, applied to every
    width; the minute's signature replaced. Returns the traces read."""
    start = datetime.fromtimestamp(slot, UTC)
    traces = aggregates.monitor_traces(s, start, start + timedelta(minutes=1), projects)
    wanted = set(projects)
    totals: dict[Key, list[int]] = defaultdict(lambda: [0] * len(SUMS))
    bins: dict[tuple[Key, int], int] = defaultdict(int)
    sigs: dict[str, list[int]] = {p: [0, 0, 0, 0, 0] for p in wanted}
    for t in traces:
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
    # what was there: subtracted, so the minute holds the new rows only
    r = MonitorRollup
    old_totals = s.execute(
        select(r.project_id, r.route, r.model, r.prompt, *(getattr(r, c) for c in SUMS)).where(
            r.width == 60, r.slot == slot, r.project_id.in_(sorted(wanted))
        )
    )
    for row_ in old_totals:
        new = totals[(row_[0], row_[1], row_[2], row_[3])]
        for i in range(len(SUMS)):
            new[i] -= int(row_[4 + i])
    lt = MonitorLatency
    old_bins = s.execute(
        select(lt.project_id, lt.route, lt.model, lt.prompt, lt.bin, lt.traces).where(
            lt.width == 60, lt.slot == slot, lt.project_id.in_(sorted(wanted))
        )
    )
    for row_ in old_bins:
        bins[((row_[0], row_[1], row_[2], row_[3]), int(row_[4]))] -= int(row_[5])
    _apply(s, backend, slot, totals, bins)
    m = MonitorMinute
    s.execute(delete(m).where(m.slot == slot, m.project_id.in_(sorted(wanted))))
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
        for p, v in sorted(sigs.items())
        if v[0]
    )
    s.flush()
    return len(traces)


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


def _upsert(
    s: Session,
    backend: str,
    table: str,
    key: tuple[str, ...],
    sums: tuple[str, ...],
    rows: Sequence[tuple[tuple[Any, ...], Sequence[int | float]]],
) -> None:
    """Add `rows` (key, sums) to `table`, inserting the rows that are not there (in key order)."""
    mark = "?" if backend == "sqlite" else "%s"
    names = ", ".join(f'"{c}"' for c in (*key, *sums))
    sets = ", ".join(f'"{c}" = {table}."{c}" + excluded."{c}"' for c in sums)
    conflict = ", ".join(f'"{c}"' for c in key)
    marks = ", ".join(mark for _ in (*key, *sums))
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({conflict}) DO UPDATE SET {sets}"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
    s.connection().exec_driver_sql(sql, [(*k, *v) for k, v in sorted(rows, key=lambda kv: kv[0])])


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
