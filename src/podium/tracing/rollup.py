"""The trace rollup: per minute, hour and day, the count of traces that started then, their tokens and cost
(`trace_rollup`), and a histogram of their latencies (`trace_latency`, bins of `podium.tracing.latency`).
Aggregates over long ranges read it instead of the traces.

What it keys on:
- totals, per project, source and status, in two views: per model and route, and per key (`view`). Each
  trace is in both, once per row width. A view per grouping, not one row per combination of every
  dimension: keys, models and routes multiply (25 keys x 8 models x 4 routes are 800 rows a day per
  project and status where each view has at most 40 and 25), and the page reads totals per model;
- latencies, per project and model only (the metrics page's percentiles: in total and per model);
- not the end user: user ids are unbounded (an application's users), so a per-user row would hold about
  one trace and save nothing. Aggregates by user, and every filter that is not a rollup dimension, read
  the traces (`podium.tracing.aggregates`). An absent model, route, key or project is stored as "" (key
  columns hold no NULL) and reads back as None.

Kept in step with the traces, in the same transactions:
- the trace writer adds each new trace to its rows (`add_rows`); a trace that arrives in parts (SDK,
  OTLP) is read before and after its part is merged and the difference is applied, so a part that moves it
  (an earlier start, an error, a model, its latency) takes it out of its old rows and into its new ones.
  Spilled batches replay through the same code, and the writer's child process runs it too: the rollup
  never holds a batch that was not committed.
- purges, retention and a user's erasure subtract what they delete (`subtract`); rows left with no traces
  are deleted, so the rollup keeps nothing of a trace that is gone.

On PostgreSQL the traces a transaction reads to compute a difference are locked (`FOR UPDATE`, and for parts
of a trace that may not exist yet an advisory lock on its id), and rollup rows are updated in key order, so
concurrent writers and deletions neither lose an update nor deadlock; SQLite serialises writes itself.
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
from podium.tracing.store import (
    ROLLUP_DIMENSIONS,
    ROLLUP_SUMS,
    VIEW_KEY,
    VIEW_MODEL_ROUTE,
    Trace,
    TraceLatency,
    TraceRollup,
)

WIDTHS = (86_400, 3_600, 60)  # the row sizes, largest first
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME = 86_400 * 12_000_000  # a slot beyond any trace, a multiple of every width
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


def seconds(when: datetime) -> int:
    """Whole seconds since the epoch (floor), of an aware time (a naive one is taken as the writer stores it)."""
    return (when.astimezone(UTC) - EPOCH) // timedelta(seconds=1)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class Changes:
    """Row changes to apply to the rollup: sums per totals row, traces per latency row."""

    __slots__ = ("latency", "totals")

    def __init__(self) -> None:
        self.totals: defaultdict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.latency: defaultdict[tuple[Any, ...], int] = defaultdict(int)


def contribute(changes: Changes, trace: Mapping[str, Any], sign: int = 1) -> None:
    """Add (`sign` 1) or take away (-1) one trace's share of its rows. `trace` maps the column names of
    `CONTRIBUTING` to the trace's values; missing ones take the table's defaults."""
    start = trace.get("start_time")
    if start is None:
        return
    at = seconds(start)
    project, model, route, key, source, status = (
        _text(trace[d] if d in trace else _DEFAULTS[d]) for d in ROLLUP_DIMENSIONS
    )
    latency = trace.get("latency_ms")
    bin_index = bin_of(latency) if latency is not None else None
    tokens_in = sign * int(trace.get("prompt_tokens") or 0)
    tokens_out = sign * int(trace.get("completion_tokens") or 0)
    cost = sign * int(trace.get("cost_micros") or 0)
    totals, latencies = changes.totals, changes.latency
    for width in WIDTHS:
        slot = at - at % width
        for key_ in (
            (VIEW_MODEL_ROUTE, width, slot, project, model, route, "", source, status),
            (VIEW_KEY, width, slot, project, "", "", key, source, status),
        ):
            values = totals[key_]
            values[0] += sign
            values[1] += tokens_in
            values[2] += tokens_out
            values[3] += cost
        if bin_index is not None:
            latencies[(width, slot, project, model, bin_index)] += sign


def add_rows(changes: Changes, rows: Iterable[Mapping[str, Any]]) -> None:
    """Add new traces (rows as the writer inserts them)."""
    for row in rows:
        contribute(changes, row)


_TOTALS_KEY = ("view", "width", "slot", *ROLLUP_DIMENSIONS)
_LATENCY_KEY = ("width", "slot", "project_id", "model", "bin")


def _upsert(table: str, key: tuple[str, ...], values: tuple[str, ...], mark: str) -> str:
    names = ", ".join(f'"{c}"' for c in (*key, *values))
    sets = ", ".join(f'"{c}" = {table}."{c}" + excluded."{c}"' for c in values)
    conflict = ", ".join(f'"{c}"' for c in key)
    marks = ", ".join(mark for _ in (*key, *values))
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({conflict}) DO UPDATE SET {sets}"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters


def _delete(table: str, key: tuple[str, ...], mark: str) -> str:
    where = " AND ".join(f'"{c}" = {mark}' for c in key)
    return f"DELETE FROM {table} WHERE {where} AND traces <= 0"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters


_SQLITE = {
    "totals": _upsert("trace_rollup", _TOTALS_KEY, ROLLUP_SUMS, "?"),
    "totals-empty": _delete("trace_rollup", _TOTALS_KEY, "?"),
    "latency": _upsert("trace_latency", _LATENCY_KEY, ("traces",), "?"),
    "latency-empty": _delete("trace_latency", _LATENCY_KEY, "?"),
}

# PostgreSQL: one statement per table whatever the number of rows, the rows as one array per column
# (psycopg's executemany sends a statement per row: measured, the rollup then cost the writer a quarter)
_PG_TYPES = {"view": "smallint", "width": "integer", "slot": "bigint", "bin": "smallint"}


def _arrays(columns: tuple[str, ...]) -> str:
    kinds = {c: _PG_TYPES.get(c, "bigint" if c in (*ROLLUP_SUMS,) else "text") for c in columns}
    return ", ".join(f"%s::{kinds[c]}[]" for c in columns)


def _pg_upsert(table: str, key: tuple[str, ...], values: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in (*key, *values))
    sets = ", ".join(f'"{c}" = {table}."{c}" + excluded."{c}"' for c in values)
    conflict = ", ".join(f'"{c}"' for c in key)
    return (
        f"INSERT INTO {table} ({names}) SELECT * FROM unnest({_arrays((*key, *values))})"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
        f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
    )


def _pg_delete(table: str, key: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in key)
    match = " AND ".join(f't."{c}" = k."{c}"' for c in key)
    return f"DELETE FROM {table} AS t USING unnest({_arrays(key)}) AS k({names}) WHERE {match} AND t.traces <= 0"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters


_POSTGRES = {
    "totals": _pg_upsert("trace_rollup", _TOTALS_KEY, ROLLUP_SUMS),
    "totals-empty": _pg_delete("trace_rollup", _TOTALS_KEY),
    "latency": _pg_upsert("trace_latency", _LATENCY_KEY, ("traces",)),
    "latency-empty": _pg_delete("trace_latency", _LATENCY_KEY),
}


def _run(conn: Any, backend: str, kind: str, rows: list[tuple[Any, ...]]) -> None:
    """One rollup statement over rows (in the order given: key order, so concurrent writers lock alike)."""
    if backend == "sqlite":
        conn.exec_driver_sql(_SQLITE[kind], rows)
    else:
        conn.exec_driver_sql(_POSTGRES[kind], tuple(list(column) for column in zip(*rows, strict=True)))


def apply(s: Session, backend: str, changes: Changes) -> None:
    """Apply row changes in the session's transaction, rows in key order; rows left with no traces go."""
    conn = s.connection()
    totals = sorted((k, v) for k, v in changes.totals.items() if any(v))
    if totals:
        _run(conn, backend, "totals", [(*k, *v) for k, v in totals])
        emptied = [k for k, v in totals if v[0] < 0]
        if emptied:
            _run(conn, backend, "totals-empty", emptied)
    latency = sorted((k, n) for k, n in changes.latency.items() if n)
    if latency:
        _run(conn, backend, "latency", [(*k, n) for k, n in latency])
        emptied = [k for k, n in latency if n < 0]
        if emptied:
            _run(conn, backend, "latency-empty", emptied)


_READ_COLUMNS = ("id", *(c.key for c in CONTRIBUTING))


def read_contributions(s: Session, trace_ids: Sequence[str], backend: str) -> list[dict[str, Any]]:
    """The rollup columns of these traces as stored; on PostgreSQL the rows are locked until the transaction
    ends, so what is subtracted or replaced is what gets changed. A plain DBAPI query: the writer runs it
    twice a batch of merged parts, and SQLAlchemy's statement building and row processing cost more than
    the query (measured)."""
    found: list[dict[str, Any]] = []
    ordered = sorted(set(trace_ids))
    conn = s.connection()
    columns = ", ".join(f'"{c}"' for c in _READ_COLUMNS)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        if backend == "sqlite":
            sql = f"SELECT {columns} FROM traces WHERE id IN ({', '.join('?' for _ in chunk)})"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
        else:
            sql = f"SELECT {columns} FROM traces WHERE id = ANY(%s) ORDER BY id FOR UPDATE"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
        rows = conn.exec_driver_sql(sql, tuple(chunk) if backend == "sqlite" else (chunk,))
        for values in rows:
            row = dict(zip(_READ_COLUMNS, values, strict=True))
            start = row["start_time"]
            if isinstance(start, str):  # SQLite keeps UTC times as text
                row["start_time"] = datetime.fromisoformat(start).replace(tzinfo=UTC)
            found.append(row)
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
    # one statement; unnest yields the keys (and the locks are taken) in the array's order
    s.connection().exec_driver_sql("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", (keys,))


def subtract(s: Session, backend: str, trace_ids: Sequence[str]) -> None:
    """Take traces about to be deleted (in this transaction) out of the rollup."""
    changes = Changes()
    for row in read_contributions(s, trace_ids, backend):
        contribute(changes, row, -1)
    apply(s, backend, changes)


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


def _ranges(table: Any, ranges: list[tuple[int, int, int]]) -> ColumnElement[bool]:
    return or_(*(and_(table.width == w, table.slot >= a, table.slot < b) for w, a, b in ranges))


def _bucket(table: Any, size: int) -> Any:
    width = literal_column(str(int(size)), BigInteger)  # inline: PostgreSQL matches GROUP BY expressions by text
    return (table.slot // width) * width


def conditions(view: int, project_id: str | None, equal: Mapping[str, str | None]) -> list[ColumnElement[bool]]:
    """Totals conditions: a view, one project (None: every project) and exact values of its dimensions."""
    conds: list[ColumnElement[bool]] = [TraceRollup.view == view]
    if project_id is not None:
        conds.append(TraceRollup.project_id == project_id)
    for name, value in equal.items():
        if value is not None:
            conds.append(getattr(TraceRollup, name) == value)
    return conds


def count(s: Session, project_id: str | None, equal: Mapping[str, str | None], lo: int, hi: int) -> int:
    """Traces in `[lo, hi)` (minute-aligned seconds) of a project (None: all) with these dimension values (at
    most: with a key and a model or route, the key's)."""
    ranges = plan(lo, hi)
    if not ranges:
        return 0
    view = VIEW_KEY if equal.get("key_id") is not None else VIEW_MODEL_ROUTE
    kept = ("key_id", "source", "status") if view == VIEW_KEY else ("model", "route", "source", "status")
    conds = conditions(view, project_id, {d: v for d, v in equal.items() if d in kept})
    total = s.scalar(select(func.sum(TraceRollup.traces)).where(_ranges(TraceRollup, ranges), *conds))
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


Cells = dict[tuple[int, str | None], Cell]


def _cell(cells: Cells, key: tuple[int, str | None]) -> Cell:
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = Cell()
    return cell


def read_totals(
    s: Session, conds: list[ColumnElement[bool]], lo: int, hi: int, size: int, group: str | None, cells: Cells
) -> None:
    """Add the totals of `[lo, hi)` (minute-aligned seconds) to `cells`, per bucket of `size` seconds and per
    value of the `group` dimension (None: one group)."""
    ranges = plan(lo, hi, [w for w in WIDTHS if w <= size])
    if not ranges:
        return
    t = TraceRollup
    bucket = _bucket(t, size)
    keys: list[Any] = [bucket] if group is None else [bucket, getattr(t, group)]
    figures = (
        func.sum(t.traces),
        func.sum(case((t.status == "error", t.traces), else_=0)),
        func.sum(t.prompt_tokens),
        func.sum(t.completion_tokens),
        func.sum(t.cost_micros),
    )
    q = select(*keys, *figures).where(_ranges(t, ranges), *conds).group_by(*keys)
    n = len(keys)
    for row in s.execute(q):
        cell = _cell(cells, (int(row[0]), (row[1] or None) if group else None))
        cell.traces += int(row[n])
        cell.errors += int(row[n + 1])
        cell.prompt_tokens += int(row[n + 2])
        cell.completion_tokens += int(row[n + 3])
        cell.cost_micros += int(row[n + 4])


def read_latency(
    s: Session, project_id: str | None, model: str | None, lo: int, hi: int, size: int, by_model: bool, cells: Cells
) -> None:
    """Add the latency histograms of `[lo, hi)` to `cells` (per bucket, and per model with `by_model`)."""
    ranges = plan(lo, hi, [w for w in WIDTHS if w <= size])
    if not ranges:
        return
    t = TraceLatency
    bucket = _bucket(t, size)
    keys: list[Any] = [bucket, t.model, t.bin] if by_model else [bucket, t.bin]
    conds: list[ColumnElement[bool]] = [_ranges(t, ranges)]
    if project_id is not None:
        conds.append(t.project_id == project_id)
    if model is not None:
        conds.append(t.model == model)
    for row in s.execute(select(*keys, func.sum(t.traces)).where(*conds).group_by(*keys)):
        cell = _cell(cells, (int(row[0]), (row[1] or None) if by_model else None))
        cell.histogram[int(row[-2])] += int(row[-1])
