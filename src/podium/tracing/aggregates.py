"""Aggregates of traces per time bucket (minute, hour, day, UTC) and group (model, route, key, user or none):
count, errors, tokens, cost and latency p50/p95/p99, computed in the database.

Where the figures come from:
- Totals (count, errors, tokens, cost) from the trace rollup (`podium.tracing.rollup`) when every filter
  is one of its dimensions (time, project, model, route, key, source, status), the grouping is not by
  user, and a key is not asked for together with a model or route (the rollup keeps totals per model and
  route, and per key): its whole minutes, hours and days inside the range, plus the partial minutes at
  either end read from the traces, so totals are exact.
- Percentiles, in that case: exact, read from the traces (`percentile_cont` on PostgreSQL; on SQLite the
  latencies sorted in the database, interpolated as they are read), when the range holds at most
  `EXACT_LIMIT` traces of the projects in view; beyond that, estimated from the rollup's latency
  histograms (per project and model) within `latency.ERROR` (5.8%) of the exact value for latencies
  between 16 µs and 70 min, when nothing but the model narrows them and they are grouped by model or not
  at all; otherwise exact from the traces again if at most `MAX_SCAN` traces match, and left out
  (`percentiles: "unavailable"`) if more do.
- Everything from the traces otherwise (a user, session, tag, name, latency or cost range, text, grouping
  by user, or a key with a model or route): one SQL aggregate, exact, bounded to `MAX_SCAN` traces. The
  bound is checked first from the rollup (the traces matching the filters it knows), or from the user's
  or session's index; a larger range is refused with the filter that needs the scan named, rather than
  left to run for minutes.

`Aggregate.source` and `Aggregate.percentiles` say which way an answer was computed. On PostgreSQL the reads
run in one REPEATABLE READ transaction, on SQLite in one read transaction: the rollup and the traces are
read at the same instant.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    case,
    cast,
    extract,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session

from podium.core.db import utcnow
from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.money import usd
from podium.core.platform import Platform
from podium.tracing import latency, rollup
from podium.tracing.filters import Scope, TraceFilters, conditions, resolve, started_before, started_from
from podium.tracing.scores.store import Score
from podium.tracing.store import VIEW_KEY, VIEW_MODEL_ROUTE, Trace, TraceRollup

BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
GROUPS = ("none", "model", "route", "key", "user")
MAX_BUCKETS = 10_000
EXACT_LIMIT = 10_000  # traces in view in the range up to which percentiles are read from the traces
MAX_SCAN = 1_000_000  # traces an aggregate that must read the traces themselves may cover

_DIMENSION = {"none": None, "model": "model", "route": "route", "key": "key_id"}  # rollup column per group
_GROUP_COLUMN: dict[str, Any] = {
    "none": None,
    "model": Trace.model,
    "route": Trace.route,
    "key": Trace.key_id,
    "user": Trace.user_id,
}
# filters the rollup does not keep: any of them makes an aggregate read the traces
_TRACE_ONLY = (
    "user",
    "session",
    "tag",
    "name",
    "min_latency_ms",
    "max_latency_ms",
    "min_cost_usd",
    "max_cost_usd",
    "q",
)

Key = tuple[int, str | None]


class AggregateRow(BaseModel):
    """Totals of one (time bucket, group)."""

    bucket: datetime
    group: str | None
    count: int
    errors: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    cost_usd: Decimal
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class Aggregate(BaseModel):
    """Per-bucket, per-group totals and latency percentiles of the filtered traces."""

    bucket: str
    by: str
    rows: list[AggregateRow]
    source: Literal["rollup", "traces"] = Field(
        "rollup", description="Where the totals were read: the trace rollup, or the traces themselves."
    )
    percentiles: Literal["exact", "estimated", "unavailable"] = Field(
        "exact",
        description=f"Exact; estimated from latency histograms, within {latency.ERROR:.1%} of the exact value;"
        " or unavailable (null): these filters over this range would read too many traces.",
    )


def trace_only_filter(filters: TraceFilters, by: str) -> str | None:
    """The first parameter that makes an aggregate read the traces rather than the rollup (None: none does)."""
    if by == "user":
        return "by"
    found = next((name for name in _TRACE_ONLY if getattr(filters, name) is not None), None)
    if found is not None:
        return found
    keyed = filters.key is not None or by == "key"
    if keyed and (filters.model is not None or filters.route is not None or by in ("model", "route")):
        return "key" if filters.key is not None else "by"
    return None


def aggregate(
    platform: Platform,
    actor: Actor,
    filters: TraceFilters | None = None,
    *,
    bucket: str = "hour",
    by: str = "none",
) -> Aggregate:
    """Count, errors, tokens, cost and latency p50/p95/p99 per time bucket (`minute`, `hour`, `day`, UTC)
    and group (`model`, `route`, `key`, `user` or `none`) of the filtered traces."""
    return _aggregate(platform, actor, filters, bucket, by, total=False)[0]


def aggregate_with_total(
    platform: Platform, actor: Actor, filters: TraceFilters | None = None, *, bucket: str = "hour", by: str = "model"
) -> tuple[Aggregate, Aggregate]:
    """`aggregate` by a group and in total (`by="none"`), from one read: what the metrics page shows. The
    totals and histograms of the groups add up to the total's; exact percentiles are read for both."""
    grouped, total = _aggregate(platform, actor, filters, bucket, by, total=True)
    assert total is not None
    return grouped, total


def _aggregate(
    platform: Platform, actor: Actor, filters: TraceFilters | None, bucket: str, by: str, *, total: bool
) -> tuple[Aggregate, Aggregate | None]:
    actor.require("viewer", "read traces")
    filters = filters or TraceFilters()
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket {bucket!r} is not one of: {', '.join(BUCKETS)}", details={"field": "bucket"})
    if by not in GROUPS:
        raise InvalidInput(f"by {by!r} is not one of: {', '.join(GROUPS)}", details={"field": "by"})
    size = BUCKETS[bucket]
    if filters.start is None:  # no range: the last MAX_BUCKETS buckets, never the whole table
        filters = dataclasses.replace(
            filters, start=(filters.end or utcnow()) - timedelta(seconds=size * (MAX_BUCKETS - 1))
        )
    if filters.start is not None:
        buckets = ((filters.end or utcnow()) - filters.start).total_seconds() / size
        if buckets > MAX_BUCKETS:
            raise InvalidInput(
                f"{buckets:.0f} {bucket} buckets between 'from' and 'to'; use a larger bucket or a shorter range"
                f" (at most {MAX_BUCKETS})",
                details={"field": "bucket"},
            )
    summed: rollup.Cells = {}
    summed_percentiles: Percentiles = {}
    with platform.db.read_session() as s:
        if platform.db.backend == "postgresql":  # one snapshot for every query below
            s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        scope = resolve(s, actor, filters)
        reason = trace_only_filter(filters, by)
        if reason is None:
            cells, percentiles, how = _from_rollup(s, actor, filters, scope, size, by)
        else:
            cells, percentiles = _from_traces(s, actor, filters, scope, size, by, reason)
            how = "exact"
        if total:
            summed = _sum_groups(cells, how == "estimated")
            if how == "exact":
                summed_percentiles = _exact(s, conditions(s, actor, filters, scope=scope), size, None)
    source: Literal["rollup", "traces"] = "rollup" if reason is None else "traces"
    grouped = Aggregate(bucket=bucket, by=by, rows=_rows(cells, percentiles, how), source=source, percentiles=how)
    if not total:
        return grouped, None
    rows = _rows(summed, summed_percentiles, how)
    return grouped, Aggregate(bucket=bucket, by="none", rows=rows, source=source, percentiles=how)


def _sum_groups(cells: rollup.Cells, histograms: bool) -> rollup.Cells:
    """The cells of every group of a bucket added up (their latency histograms too, if asked)."""
    out: rollup.Cells = {}
    for (slot, _), c in cells.items():
        t = out.get((slot, None))
        if t is None:
            t = out[(slot, None)] = rollup.Cell()
        t.traces += c.traces
        t.errors += c.errors
        t.prompt_tokens += c.prompt_tokens
        t.completion_tokens += c.completion_tokens
        t.cost_micros += c.cost_micros
        if histograms:
            t.histogram = [a + b for a, b in zip(t.histogram, c.histogram, strict=True)]
    return out


def _rows(cells: rollup.Cells, percentiles: Percentiles, how: str) -> list[AggregateRow]:
    rows = []
    for key in sorted(cells, key=lambda k: (k[0], k[1] or "")):
        c = cells[key]
        if c.traces <= 0:
            continue
        if how == "estimated":
            p50, p95, p99 = latency.estimates(c.histogram)
        else:
            p50, p95, p99 = percentiles.get(key, (None, None, None))
        rows.append(
            AggregateRow(
                bucket=datetime.fromtimestamp(key[0], UTC),
                group=key[1],
                count=c.traces,
                errors=c.errors,
                error_rate=c.errors / c.traces,
                prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens,
                cost_micros=c.cost_micros,
                cost_usd=usd(c.cost_micros),
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                latency_p99_ms=p99,
            )
        )
    return rows


# --- the time range ----------------------------------------------------------------------------------


def _floor_minute(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(second=0, microsecond=0)


def _ceil_minute(when: datetime) -> datetime:
    floor = _floor_minute(when)
    return floor if floor == when else floor + timedelta(minutes=1)


class _Range:
    """A filter's time range split into whole minutes (`lo`, `hi`: seconds, read from the rollup) and the
    partial minutes at its ends (`edges`, read from the traces); `outer_lo`/`outer_hi` are the whole
    minutes that cover it all."""

    def __init__(self, start: datetime | None, end: datetime | None):
        self.edges: list[tuple[datetime, datetime]] = []
        self.lo = rollup.seconds(_ceil_minute(start)) if start is not None else 0
        self.hi = rollup.seconds(_floor_minute(end)) if end is not None else rollup.END_OF_TIME
        self.outer_lo = rollup.seconds(_floor_minute(start)) if start is not None else 0
        self.outer_hi = rollup.seconds(_ceil_minute(end)) if end is not None else rollup.END_OF_TIME
        if start is not None and end is not None and self.lo > self.hi:  # within one minute
            self.edges.append((start, end))
            return
        if start is not None and _ceil_minute(start) > start:
            self.edges.append((start, _ceil_minute(start)))
        if end is not None and _floor_minute(end) < end:
            self.edges.append((_floor_minute(end), end))


# --- from the rollup ---------------------------------------------------------------------------------


def _equal(filters: TraceFilters, scope: Scope) -> dict[str, str | None]:
    """The filters on rollup dimensions."""
    return {
        "model": filters.model,
        "route": filters.route,
        "key_id": scope.key_id,
        "source": filters.source,
        "status": filters.status,
    }


Percentiles = dict[Key, tuple[float | None, ...]]


def _from_rollup(
    s: Session, actor: Actor, filters: TraceFilters, scope: Scope, size: int, by: str
) -> tuple[rollup.Cells, Percentiles, str]:
    """Totals from the rollup's whole minutes and the traces' partial ones; percentiles exact, estimated
    (`cells` then carry histograms) or unavailable, as the module docstring says."""
    window = _Range(filters.start, filters.end)
    equal = _equal(filters, scope)
    view = VIEW_KEY if scope.key_id is not None or by == "key" else VIEW_MODEL_ROUTE
    cells: rollup.Cells = {}
    if window.lo < window.hi:
        conds = rollup.conditions(view, scope.project_id, equal)
        rollup.read_totals(s, conds, window.lo, window.hi, size, _DIMENSION[by], cells)
    in_view = rollup.count(s, scope.project_id, {}, window.outer_lo, window.outer_hi)
    narrowed = any(equal[d] is not None for d in ("route", "key_id", "source", "status"))
    if in_view > EXACT_LIMIT and not narrowed and by in ("none", "model"):
        for edge in window.edges:
            _scan(s, conditions(s, actor, filters, scope=scope, window=edge), size, _GROUP_COLUMN[by], cells, True)
        if window.lo < window.hi:
            rollup.read_latency(s, scope.project_id, filters.model, window.lo, window.hi, size, by == "model", cells)
        return cells, {}, "estimated"
    for edge in window.edges:
        _scan(s, conditions(s, actor, filters, scope=scope, window=edge), size, _GROUP_COLUMN[by], cells, False)
    if in_view > EXACT_LIMIT and rollup.count(s, scope.project_id, equal, window.outer_lo, window.outer_hi) > MAX_SCAN:
        return cells, {}, "unavailable"
    return cells, _exact(s, conditions(s, actor, filters, scope=scope), size, _GROUP_COLUMN[by]), "exact"


# --- from the traces ---------------------------------------------------------------------------------


def _from_traces(
    s: Session, actor: Actor, filters: TraceFilters, scope: Scope, size: int, by: str, reason: str
) -> tuple[rollup.Cells, Percentiles]:
    """Cells and exact percentiles read from the traces, once the bound on how many that reads holds."""
    window = _Range(filters.start, filters.end)
    bound = rollup.count(s, scope.project_id, _equal(filters, scope), window.outer_lo, window.outer_hi)
    if bound > MAX_SCAN and (filters.user is not None or filters.session is not None):
        bound = min(bound, _indexed_count(s, filters, scope))
    if bound > MAX_SCAN:
        what = "grouping by user" if reason == "by" else f"the filter {reason!r}"
        raise InvalidInput(
            f"{what} is not kept in the trace rollup, so this aggregate reads the traces themselves, and"
            f" {bound:,} traces match the other filters, more than the {MAX_SCAN:,} it reads at most; narrow"
            " the time range ('from', 'to'), or filter by model, route or key",
            details={"field": reason},
        )
    conds = conditions(s, actor, filters, scope=scope)
    cells: rollup.Cells = {}
    _scan(s, conds, size, _GROUP_COLUMN[by], cells, False)
    return cells, _exact(s, conds, size, _GROUP_COLUMN[by])


def _indexed_count(s: Session, filters: TraceFilters, scope: Scope) -> int:
    """How many traces of this user (or session) the scan reads, counted through its index up to
    `MAX_SCAN` + 1."""
    backend = s.get_bind().dialect.name
    conds: list[ColumnElement[bool]] = []
    if scope.project_id is not None:
        conds.append(Trace.project_id == scope.project_id)
    if filters.user is not None:  # (user_id, start_time) index
        conds.append(Trace.user_id == filters.user)
        if filters.start is not None:
            conds.append(started_from(backend, filters.start))
        if filters.end is not None:
            conds.append(started_before(backend, filters.end))
    else:  # session_id index
        conds.append(Trace.session_id == filters.session)
    capped = select(literal(1)).select_from(Trace).where(*conds).limit(MAX_SCAN + 1).subquery()
    return int(s.scalar(select(func.count()).select_from(capped)) or 0)


def _bucket(backend: str, size: int) -> Any:
    """A trace's time bucket in SQL: the start of its bucket in seconds since the epoch."""
    if backend == "sqlite":
        secs: Any = cast(func.strftime("%s", Trace.start_time), Integer)
    else:
        secs = cast(func.floor(extract("epoch", Trace.start_time)), BigInteger)
    width = literal_column(str(int(size)), Integer)  # inline: PostgreSQL matches GROUP BY expressions by text
    return (secs // width) * width


def bin_expression(column: Any, lo: int = 0, hi: int = latency.BINS - 1) -> Any:
    """`latency.bin_of` in SQL: a binary search over the bin edges as nested CASEs (about eight comparisons
    a row), comparing floats exactly as Python does."""
    if lo == hi:
        return literal(lo)
    mid = (lo + hi) // 2
    return case(
        (column < literal(latency.EDGES[mid], Float), bin_expression(column, lo, mid)),
        else_=bin_expression(column, mid + 1, hi),
    )


@functools.cache
def _latency_bin() -> Any:
    """A trace's latency bin in SQL (NULL without a latency), built once: it has some 340 nodes."""
    return case((Trace.latency_ms.is_(None), None), else_=bin_expression(Trace.latency_ms))


def _scan(
    s: Session,
    conds: list[ColumnElement[bool]],
    size: int,
    group: Any,
    cells: rollup.Cells,
    histogram: bool,
) -> None:
    """Add the matching traces' totals to `cells` in one SQL aggregate; with `histogram`, their latency
    histograms too."""
    backend = s.get_bind().dialect.name
    keys: list[Any] = [_bucket(backend, size).label("k_bucket")]
    if group is not None:
        keys.append(group.label("k_group"))
    if histogram:
        keys.append(_latency_bin().label("k_bin"))
    figures = (
        func.count(),
        func.sum(case((Trace.status == "error", 1), else_=0)),
        func.sum(Trace.prompt_tokens),
        func.sum(Trace.completion_tokens),
        func.sum(Trace.cost_micros),
    )
    # grouped by output names: the bins' edges are parameters, which PostgreSQL would not match by text
    q = select(*keys, *figures).where(*conds).group_by(*(literal_column(k.name) for k in keys))
    n = len(keys)
    for row in s.execute(q):
        key = (int(row[0]), (row[1] or None) if group is not None else None)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = rollup.Cell()
        count, errors, tokens_in, tokens_out, cost = (int(v or 0) for v in row[n:])
        cell.traces += count
        cell.errors += errors
        cell.prompt_tokens += tokens_in
        cell.completion_tokens += tokens_out
        cell.cost_micros += cost
        if histogram and row[n - 1] is not None:
            cell.histogram[int(row[n - 1])] += count


def _exact(s: Session, conds: list[ColumnElement[bool]], size: int, group: Any) -> Percentiles:
    """Exact latency percentiles per (bucket, group) of the matching traces: `percentile_cont` on PostgreSQL;
    on SQLite the latencies come sorted per group and each group's percentiles are interpolated as it ends
    (faster than picking the ranks with window functions, measured: SQLite sorts once per window)."""
    backend = s.get_bind().dialect.name
    keys: list[Any] = [_bucket(backend, size).label("k_bucket")]
    if group is not None:  # "" and NULL are one group, as in the rollup
        keys.append(func.coalesce(group, "").label("k_group"))
    has_latency = Trace.latency_ms.is_not(None)
    out: Percentiles = {}
    if backend == "postgresql":
        fractions = [p / 100 for p in latency.PERCENTILES]
        pct = func.percentile_cont(array(fractions)).within_group(Trace.latency_ms)
        for row in s.execute(select(*keys, pct).where(*conds, has_latency).group_by(*keys)):
            out[(int(row[0]), (row[1] or None) if group is not None else None)] = tuple(float(v) for v in row[-1])
        return out
    q = select(*keys, Trace.latency_ms).where(*conds, has_latency).order_by(*keys, Trace.latency_ms)
    width = len(keys)
    for head, run in itertools.groupby(s.execute(q), key=operator.itemgetter(*range(width))):
        values = [r[width] for r in run]
        key = (int(head[0]), head[1] or None) if group is not None else (int(head), None)
        out[key] = tuple(latency.exact_percentile(values, p) for p in latency.PERCENTILES)
    return out


# --- what the monitors domain rolls up (it may not read these tables itself) ---------------------------

MONITOR_OUTPUT_CHARS = 800  # how much of a trace's output the monitors read (a refusal shows in its opening)


def slot_totals(s: Session, lo: int, hi: int, width: int = 60) -> dict[tuple[int, str], tuple[int, int, int, int, int]]:
    """Per (slot, project) in `[lo, hi)` seconds, from the trace rollup's rows of `width` seconds (60, 3600 or
    86400): the traces, prompt and completion tokens, cost and errors. The monitors compare it with what they
    rolled."""
    errors = func.sum(case((TraceRollup.status == "error", TraceRollup.traces), else_=0))
    q = (
        select(
            TraceRollup.slot,
            TraceRollup.project_id,
            func.sum(TraceRollup.traces),
            func.sum(TraceRollup.prompt_tokens),
            func.sum(TraceRollup.completion_tokens),
            func.sum(TraceRollup.cost_micros),
            errors,
        )
        .where(
            TraceRollup.view == VIEW_MODEL_ROUTE,
            TraceRollup.width == width,
            TraceRollup.slot >= lo,
            TraceRollup.slot < hi,
        )
        .group_by(TraceRollup.slot, TraceRollup.project_id)
    )
    return {
        (int(r[0]), r[1]): (int(r[2] or 0), int(r[3] or 0), int(r[4] or 0), int(r[5] or 0), int(r[6] or 0))
        for r in s.execute(q)
    }


def monitor_traces(s: Session, start: datetime, end: datetime, projects: Sequence[str]) -> list[dict[str, Any]]:
    """The traces of these projects ("" for none) that started in `[start, end)`, read through the start-time
    index: the columns the monitors roll up, and the opening of the output."""
    backend = s.get_bind().dialect.name
    columns = (
        Trace.start_time,
        Trace.project_id,
        Trace.route,
        Trace.model,
        Trace.status,
        Trace.latency_ms,
        Trace.prompt_tokens,
        Trace.completion_tokens,
        Trace.cost_micros,
        Trace.cache_status,
        Trace.error,
        Trace.meta,
        func.substr(Trace.output, 1, MONITOR_OUTPUT_CHARS).label("output"),
    )
    wanted = sorted(set(projects))
    named = [p for p in wanted if p]
    project: ColumnElement[bool] | None = Trace.project_id.in_(named) if named else None
    if "" in wanted:
        project = or_(Trace.project_id.is_(None), Trace.project_id == "", *([project] if project is not None else []))
    q = select(*columns).where(started_from(backend, start), started_before(backend, end))
    if project is not None:
        q = q.where(project)
    out = []
    for row in s.execute(q):
        item = dict(row._mapping)
        when = item["start_time"]
        if isinstance(when, str):
            item["start_time"] = datetime.fromisoformat(when).replace(tzinfo=UTC)
        elif when is not None and when.tzinfo is None:
            item["start_time"] = when.replace(tzinfo=UTC)
        out.append(item)
    return out


def monitor_scores(s: Session, after: str, before: str, limit: int) -> list[dict[str, Any]]:
    """Scores with ids in `(after, before)` (ids sort by creation time), oldest first, at most `limit`, with the
    route, model and metadata of their traces."""
    q = (
        select(
            Score.id,
            Score.name,
            Score.value,
            Score.source,
            Score.created_at,
            Score.project_id,
            Trace.route,
            Trace.model,
            Trace.meta,
        )
        .join(Trace, Trace.id == Score.trace_id, isouter=True)
        .where(Score.id > after, Score.id < before)
        .order_by(Score.id)
        .limit(limit)
    )
    out = []
    for row in s.execute(q):
        item = dict(row._mapping)
        when = item["created_at"]
        if isinstance(when, datetime) and when.tzinfo is None:
            item["created_at"] = when.replace(tzinfo=UTC)
        out.append(item)
    return out
