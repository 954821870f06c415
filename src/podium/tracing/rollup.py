"""The trace rollup: per minute, hour and day, per project, model, route, key, source and status, the count
of traces that started then, their tokens and cost, and a histogram of their latencies
(`podium.tracing.latency`). Aggregates over long ranges read it instead of the traces.

Kept in step with the traces, in the same transactions:
- the trace writer adds each new trace to its minute, hour and day rows (`add_rows`); a trace that arrives
  in parts (SDK, OTLP) is read before and after its part is merged, and the difference is applied
  (`merge_contributions`), so a part that moves it (an earlier start, an error, a model, its latency)
  takes it out of its old rows and into its new ones. Spilled batches replay through the same code, and
  the writer's child process runs it too: the rollup never sees a batch that was not committed.
- purges, retention and a user's erasure subtract what they delete (`subtract`); rows that fall to zero
  traces are deleted, so the rollup keeps nothing of a trace that is gone.

On PostgreSQL the rows a transaction reads to compute a difference are locked (`FOR UPDATE`) and rollup
rows are updated in key order, so concurrent writers and deletions neither lose an update nor deadlock;
SQLite's writes are serialised by its write lock.

What the rollup keys on, and why not the end user: user ids are unbounded (an application's users), so a
per-user minute row would hold about one trace and save nothing; aggregates by user, and every filter
that is not a rollup dimension (user, session, tag, name, latency or cost range, text), read the traces
(`podium.tracing.aggregates`). An absent model, route, key or project is stored as "" (key columns hold
no NULL) and reads back as None.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, case, func, literal_column, or_, select
from sqlalchemy.orm import Session

from podium.tracing.latency import BINS, bin_of
from podium.tracing.store import HISTOGRAM, ROLLUP_DIMENSIONS, ROLLUP_SUMS, Trace, rollup_table

WIDTHS = (86_400, 3_600, 60)  # the row sizes, largest first
MINUTE = 60
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME = 86_400 * 12_000_000  # a slot beyond any trace, a multiple of every width
_VALUES = (*ROLLUP_SUMS, *HISTOGRAM)
_SIZE = len(_VALUES)
_DEFAULTS = {"project_id": None, "model": None, "route": None, "key_id": None, "source": "sdk", "status": "ok"}

# what a trace contributes from: the columns read before and after a merge, and before a deletion
CONTRIBUTING = (
    Trace.start_time,
    Trace.project_id,
    Trace.model,
    Trace.route,
    Trace.key_id,
    Trace.source,
    Trace.status,
    Trace.prompt_tokens,
    Trace.completion_tokens,
    Trace.cost_micros,
    Trace.latency_ms,
)

Key = tuple[Any, ...]  # (width, slot, project_id, model, route, key_id, source, status)
Deltas = dict[Key, list[int]]


def seconds(when: datetime) -> int:
    """Whole seconds since the epoch (floor), of an aware time (a naive one is taken as the writer stores it)."""
    return (when.astimezone(UTC) - EPOCH) // timedelta(seconds=1)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def new_deltas() -> Deltas:
    """An empty set of row changes."""
    return defaultdict(lambda: [0] * _SIZE)


def contribute(deltas: Deltas, trace: Mapping[str, Any], sign: int = 1) -> None:
    """Add (`sign` 1) or take away (-1) one trace's share of its minute, hour and day rows. `trace` maps the
    column names of `CONTRIBUTING` to the trace's values; missing ones take the table's defaults."""
    start = trace.get("start_time")
    if start is None:
        return
    at = seconds(start)
    dims = tuple(_text(trace[d] if d in trace else _DEFAULTS[d]) for d in ROLLUP_DIMENSIONS)
    latency = trace.get("latency_ms")
    histogram_index = 4 + bin_of(latency) if latency is not None else None
    tokens_in = int(trace.get("prompt_tokens") or 0)
    tokens_out = int(trace.get("completion_tokens") or 0)
    cost = int(trace.get("cost_micros") or 0)
    for width in WIDTHS:
        values = deltas[(width, at - at % width, *dims)]
        values[0] += sign
        values[1] += sign * tokens_in
        values[2] += sign * tokens_out
        values[3] += sign * cost
        if histogram_index is not None:
            values[histogram_index] += sign


def _names() -> tuple[str, ...]:
    return ("width", "slot", *ROLLUP_DIMENSIONS, *_VALUES)


def _upsert_sql(backend: str) -> str:
    names = _names()
    mark = "?" if backend == "sqlite" else "%s"
    sets = ", ".join(f'"{c}" = trace_rollup."{c}" + excluded."{c}"' for c in _VALUES)
    key = ", ".join(f'"{c}"' for c in ("width", "slot", *ROLLUP_DIMENSIONS))
    return (
        f"INSERT INTO trace_rollup ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in names)})"
        f" VALUES ({', '.join(mark for _ in names)}) ON CONFLICT ({key}) DO UPDATE SET {sets}"
    )


def _delete_sql(backend: str) -> str:
    mark = "?" if backend == "sqlite" else "%s"
    where = " AND ".join(f'"{c}" = {mark}' for c in ("width", "slot", *ROLLUP_DIMENSIONS))
    return f"DELETE FROM trace_rollup WHERE {where} AND traces <= 0"


_SQL: dict[tuple[str, str], str] = {}


def _sql(kind: str, backend: str) -> str:
    sql = _SQL.get((kind, backend))
    if sql is None:
        sql = _SQL[(kind, backend)] = _upsert_sql(backend) if kind == "upsert" else _delete_sql(backend)
    return sql


def apply(s: Session, backend: str, deltas: Deltas) -> None:
    """Add row changes to the rollup in the session's transaction, in key order; rows left with no traces are
    deleted."""
    changed = sorted((key, values) for key, values in deltas.items() if any(values))
    if not changed:
        return
    conn = s.connection()
    conn.exec_driver_sql(_sql("upsert", backend), [(*key, *values) for key, values in changed])
    emptied = [key for key, values in changed if values[0] < 0]
    if emptied:
        conn.exec_driver_sql(_sql("delete", backend), emptied)


def add_rows(deltas: Deltas, rows: Iterable[Mapping[str, Any]]) -> None:
    """Add new traces (rows as the writer inserts them)."""
    for row in rows:
        contribute(deltas, row)


def read_contributions(s: Session, trace_ids: Sequence[str], backend: str) -> list[dict[str, Any]]:
    """The rollup columns of these traces as stored; on PostgreSQL the rows are locked until the transaction
    ends, so what is subtracted or replaced is what gets changed."""
    found: list[dict[str, Any]] = []
    ordered = sorted(set(trace_ids))
    for i in range(0, len(ordered), 500):
        q = select(Trace.id, *CONTRIBUTING).where(Trace.id.in_(ordered[i : i + 500])).order_by(Trace.id)
        if backend == "postgresql":
            q = q.with_for_update()
        found += [dict(row._mapping) for row in s.execute(q)]
    return found


def lock_parts(s: Session, backend: str, trace_ids: Sequence[str]) -> None:
    """Serialise, across processes, the merging of parts into the same traces (PostgreSQL; SQLite's writes are
    serialised already). Without it two writers merging the first parts of a new trace would both read it
    as absent and both add it: row locks do not cover a row that does not exist yet. Transaction-scoped
    advisory locks on a hash of each id, taken in one order so that writers never deadlock."""
    if backend != "postgresql" or not trace_ids:
        return
    keys = sorted(
        {int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big", signed=True) for t in trace_ids}
    )
    s.connection().exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", [(k,) for k in keys])


def subtract(s: Session, backend: str, trace_ids: Sequence[str]) -> None:
    """Take traces about to be deleted (in this transaction) out of the rollup."""
    deltas = new_deltas()
    for row in read_contributions(s, trace_ids, backend):
        contribute(deltas, row, -1)
    apply(s, backend, deltas)


# --- reading ---------------------------------------------------------------------------------------


def plan(lo: int, hi: int, widths: Sequence[int] = WIDTHS) -> list[tuple[int, int, int]]:
    """The rows covering `[lo, hi)` (seconds, multiples of a minute), as `(width, from, to)` ranges using the
    largest rows that fit and smaller ones at the ends."""
    if lo >= hi:
        return []
    width, rest = widths[0], widths[1:]
    a, b = -(-lo // width) * width, hi // width * width
    if a >= b:
        return plan(lo, hi, rest) if rest else []
    if not rest:
        return [(width, a, b)]
    return [*plan(lo, a, rest), (width, a, b), *plan(b, hi, rest)]


def _ranges(ranges: list[tuple[int, int, int]]) -> ColumnElement[bool]:
    t = rollup_table.c
    return or_(*(and_(t.width == w, t.slot >= a, t.slot < b) for w, a, b in ranges))


def conditions(project_id: str | None, equal: Mapping[str, str | None]) -> list[ColumnElement[bool]]:
    """Rollup conditions: one project (None: every project) and exact values of its dimensions."""
    t = rollup_table.c
    conds: list[ColumnElement[bool]] = []
    if project_id is not None:
        conds.append(t.project_id == project_id)
    for name, value in equal.items():
        if value is not None:
            conds.append(t[name] == value)
    return conds


def count(s: Session, conds: list[ColumnElement[bool]], lo: int, hi: int) -> int:
    """Traces in `[lo, hi)` (minute-aligned seconds) matching the rollup conditions."""
    ranges = plan(lo, hi)
    if not ranges:
        return 0
    total = s.scalar(select(func.sum(rollup_table.c.traces)).where(_ranges(ranges), *conds))
    return int(total or 0)


class Cell:
    """The totals of one (time bucket, group), summed from rollup rows and traces."""

    __slots__ = ("completion_tokens", "cost_micros", "errors", "histogram", "prompt_tokens", "traces")

    def __init__(self) -> None:
        self.traces = 0
        self.errors = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_micros = 0
        self.histogram = [0] * BINS


def read(
    s: Session,
    conds: list[ColumnElement[bool]],
    lo: int,
    hi: int,
    size: int,
    group: str | None,
    cells: dict[tuple[int, str | None], Cell],
) -> None:
    """Add the rollup's totals of `[lo, hi)` (minute-aligned seconds) to `cells`, per bucket of `size`
    seconds and per value of the `group` dimension (None: one group)."""
    ranges = plan(lo, hi, [w for w in WIDTHS if w <= size])
    if not ranges:
        return
    t = rollup_table.c
    width = literal_column(str(int(size)), BigInteger)  # inline: PostgreSQL matches GROUP BY expressions by text
    bucket = (t.slot // width) * width
    columns: list[Any] = [
        bucket.label("b"),
        t[group].label("g") if group else None,
        func.sum(t.traces),
        func.sum(case((t.status == "error", t.traces), else_=0)),
        func.sum(t.prompt_tokens),
        func.sum(t.completion_tokens),
        func.sum(t.cost_micros),
        *(func.sum(t[h]) for h in HISTOGRAM),
    ]
    keys: list[Any] = [bucket] if group is None else [bucket, t[group]]
    q = select(*(c for c in columns if c is not None)).where(_ranges(ranges), *conds).group_by(*keys)
    offset = 1 if group is None else 2
    for row in s.execute(q):
        key = (int(row[0]), (row[1] or None) if group else None)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell()
        cell.traces += int(row[offset])
        cell.errors += int(row[offset + 1])
        cell.prompt_tokens += int(row[offset + 2])
        cell.completion_tokens += int(row[offset + 3])
        cell.cost_micros += int(row[offset + 4])
        histogram = cell.histogram
        for i, n in enumerate(row[offset + 5 :]):
            if n:
                histogram[i] += int(n)
