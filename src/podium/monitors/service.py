"""The monitors' interface: named figures over the traces and their scores (`METRICS`), as one value over a
window (`value`) or a series per time bucket and group (`series`), and the overview's headline figures
(`summary`). Other domains (alerts, the overview page), the routes, the CLI and the metrics endpoint call
these.

Where a figure comes from:
- volume, errors, tokens, cost and latency percentiles, unless a prompt version is asked for or the series
  is grouped by project or prompt: the tracing service's aggregates (the trace rollup kept by the trace
  writer, exact and up to the moment; see `podium.tracing.aggregates`);
- everything else (cache hit rate, block rate, refusal rate, scores, feedback, and the figures above per
  prompt version or project): the monitor rollup (`podium.monitors.roller`), up to its last roll (the server
  rolls every `INTERVAL` seconds the minutes that have ended: these figures trail by a minute or so), in
  whole minutes, latency percentiles estimated from histograms within `latency.ERROR` (5.8%).

Rates are the part of their own base: errors and blocks of all traces, cache hits of the traces whose cache
was looked up (hit or miss), refusals of the successful traces with an answer. Scores are bucketed by the
time they were given; `feedback_mean` is the mean of the scores people gave (source `user`) and of the
scores named like feedback (`feedback`, `thumbs`, `thumbs_up`, `rating`, `user_feedback`, `helpful`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, func, literal_column, or_, select
from sqlalchemy.orm import Session

from podium.auth.service import names_of
from podium.core.db import utcnow
from podium.core.durations import parse_duration, parse_time
from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.monitors.roller import INTERVAL, Rolled, roll
from podium.monitors.store import MonitorLatency, MonitorRollup, MonitorScore
from podium.tracing import latency
from podium.tracing.filters import project_scope
from podium.tracing.rollup import WIDTHS, plan, seconds
from podium.tracing.service import BUCKETS, MAX_BUCKETS, TraceFilters, aggregate

__all__ = [
    "BUCKETS",
    "FEEDBACK_NAMES",
    "GROUPS",
    "INTERVAL",
    "METRICS",
    "MetricInfo",
    "MonitorPoint",
    "MonitorSeries",
    "MonitorValue",
    "Rolled",
    "Summary",
    "SummaryFigure",
    "list_metrics",
    "metric_info",
    "roll_now",
    "series",
    "series_of",
    "summary",
    "summary_of",
    "value",
    "value_of",
    "window",
]

GROUPS = ("project", "route", "model", "prompt")
FEEDBACK_NAMES = frozenset({"feedback", "thumbs", "thumbs_up", "rating", "user_feedback", "helpful"})
SCORE_PREFIX = "score:"
MAX_SCORE_NAME = 120


class MetricInfo(BaseModel):
    """A monitor: what it measures, its unit and which way is bad."""

    name: str
    description: str
    unit: str
    higher_is_worse: bool
    source: Literal["traces", "scores"] = "traces"


def _m(
    name: str, description: str, unit: str, worse: bool, source: Literal["traces", "scores"] = "traces"
) -> MetricInfo:
    return MetricInfo(name=name, description=description, unit=unit, higher_is_worse=worse, source=source)


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        _m("requests", "Traces (requests) that started in the window", "requests", False),
        _m("errors", "Traces that ended in an error", "requests", True),
        _m("error_rate", "Errors as a part of all traces", "ratio", True),
        _m("latency_p50_ms", "Median latency", "ms", True),
        _m("latency_p95_ms", "95th percentile latency", "ms", True),
        _m("latency_p99_ms", "99th percentile latency", "ms", True),
        _m("cost_usd", "Cost of the calls", "USD", True),
        _m("prompt_tokens", "Prompt (input) tokens", "tokens", False),
        _m("completion_tokens", "Completion (output) tokens", "tokens", False),
        _m("total_tokens", "Prompt and completion tokens", "tokens", False),
        _m("cache_hit_rate", "Cache hits (exact or semantic) as a part of the cache lookups", "ratio", False),
        _m("block_rate", "Calls a guardrail blocked, as a part of all traces", "ratio", True),
        _m("refusal_rate", "Answers that open as a refusal, as a part of the successful answers", "ratio", True),
        _m(
            "feedback_mean", "Mean of the feedback people gave (user scores, thumbs, ratings)", "score", False, "scores"
        ),
    )
}
# what each trace metric is made of: the sums (numerator, denominator) in the rollup, or a percentile
_TRACE_FIGURES: dict[str, tuple[str, str | None]] = {
    "requests": ("traces", None),
    "errors": ("errors", None),
    "error_rate": ("errors", "traces"),
    "cost_usd": ("cost_micros", None),
    "prompt_tokens": ("prompt_tokens", None),
    "completion_tokens": ("completion_tokens", None),
    "total_tokens": ("total_tokens", None),
    "cache_hit_rate": ("cache_hits", "cache_lookups"),
    "block_rate": ("blocks", "traces"),
    "refusal_rate": ("refusals", "answers"),
}
_PERCENTILE = {"latency_p50_ms": 0, "latency_p95_ms": 1, "latency_p99_ms": 2}
# the metrics the tracing service answers (when neither a prompt nor a project grouping is asked for)
_FROM_TRACING = frozenset(
    {"requests", "errors", "error_rate", "cost_usd", "prompt_tokens", "completion_tokens", "total_tokens", *_PERCENTILE}
)


class MonitorPoint(BaseModel):
    """A metric's value in one time bucket and group (`value` None: no data)."""

    bucket: datetime
    group: str | None
    value: float | None
    count: int  # traces (or scores) behind the value


class MonitorSeries(BaseModel):
    """A metric per time bucket and group over a window."""

    metric: MetricInfo
    bucket: str
    by: str | None
    start: datetime
    end: datetime
    source: Literal["tracing", "monitors"]
    points: list[MonitorPoint]

    def groups(self) -> list[str | None]:
        """The groups in the series, in order of first appearance."""
        return list(dict.fromkeys(p.group for p in self.points))


@dataclass(frozen=True)
class _Query:
    """A read's checked inputs."""

    metric: MetricInfo
    score: str | None  # the score name of a `score:<name>` metric
    project_id: str | None  # None: every project the caller sees (an admin)
    route: str | None
    model: str | None
    prompt: str | None
    project: str | None  # as given (name or id), for the tracing service
    lo: int = 0
    hi: int = 0


def list_metrics(actor: Actor) -> list[MetricInfo]:
    """Every monitor (`score:<name>` stands for the mean of any score name)."""
    actor.require("viewer", "read monitors")
    return [
        *METRICS.values(),
        _m(
            "score:<name>",
            "Mean of the scores of one name (online evaluations, users, the API)",
            "score",
            False,
            "scores",
        ),
    ]


def metric_info(metric: str) -> MetricInfo:
    """A metric's description; `InvalidInput` naming `metric` for an unknown one."""
    found = METRICS.get(metric)
    if found is not None:
        return found
    if metric.startswith(SCORE_PREFIX):
        name = metric[len(SCORE_PREFIX) :]
        if 0 < len(name) <= MAX_SCORE_NAME and name.isprintable():
            return _m(metric, f"Mean of the scores named {name!r}", "score", False, "scores")
    known = ", ".join([*METRICS, "score:<name>"])
    raise InvalidInput(f"unknown metric {metric!r}; the metrics are: {known}", details={"field": "metric"})


def _check_text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > 200 or "\x00" in value:
        raise InvalidInput(f"{name} must be 1-200 characters", details={"field": name})
    return value


def _check_window(start: datetime, end: datetime) -> None:
    for name, when in (("from", start), ("to", end)):
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidInput(f"'{name}' must be a timezone-aware time", details={"field": name})
    if start >= end:
        raise InvalidInput("'from' must be before 'to'", details={"field": "from"})


def _query(
    s: Session,
    actor: Actor,
    metric: str,
    project: str | None,
    route: str | None,
    model: str | None,
    prompt: str | None,
    start: datetime,
    end: datetime,
) -> _Query:
    actor.require("viewer", "read monitors")
    info = metric_info(metric)
    for name, value in (("project", project), ("route", route), ("model", model), ("prompt", prompt)):
        _check_text(name, value)
    _check_window(start, end)
    lo, hi = _minutes(start, end)
    score = info.name[len(SCORE_PREFIX) :] if info.name.startswith(SCORE_PREFIX) else None
    return _Query(info, score, project_scope(s, actor, project), route, model, prompt, project, lo, hi)


def _minutes(start: datetime, end: datetime) -> tuple[int, int]:
    """The whole minutes covering `[start, end)`, as seconds: the monitor rollup's smallest rows."""
    lo = seconds(start) // 60 * 60
    aligned = end.second == 0 and end.microsecond == 0
    hi = seconds(end) // 60 * 60 + (0 if aligned else 60)
    return lo, max(hi, lo + 60)


def _tracing_answers(q: _Query, by: str | None) -> bool:
    return q.metric.name in _FROM_TRACING and q.prompt is None and by in (None, "route", "model")


# --- reading the monitor rollup ----------------------------------------------------------------------


class _Cell:
    __slots__ = ("histogram", "sums")

    def __init__(self) -> None:
        self.sums: defaultdict[str, float] = defaultdict(float)
        self.histogram: list[int] | None = None


def _ranges(table: Any, ranges: list[tuple[int, int, int]]) -> ColumnElement[bool]:
    return or_(*(and_(table.width == w, table.slot >= a, table.slot < b) for w, a, b in ranges))


def _conds(table: Any, q: _Query) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if q.project_id is not None:
        conds.append(table.project_id == q.project_id)
    for column, wanted in (("route", q.route), ("model", q.model), ("prompt", q.prompt)):
        if wanted is not None:
            conds.append(getattr(table, column) == wanted)
    return conds


def _keys(table: Any, size: int | None, by: str | None) -> list[Any]:
    bucket: Any = (
        literal_column("0")
        if size is None
        else (table.slot // literal_column(str(int(size)))) * literal_column(str(int(size)))
    )
    keys = [bucket.label("k_bucket")]
    if by is not None:
        keys.append(getattr(table, "project_id" if by == "project" else by).label("k_group"))
    return keys


def _read_cells(s: Session, q: _Query, size: int | None, by: str | None) -> dict[tuple[int, str | None], _Cell]:
    """Sums per (bucket, group) of the monitor rollup over the query's window (one bucket if `size` is None)."""
    ranges = plan(q.lo, q.hi, [w for w in WIDTHS if size is None or w <= size])
    cells: dict[tuple[int, str | None], _Cell] = {}
    if not ranges:
        return cells

    def cell(row: Any) -> _Cell:
        key = (int(row[0]), (row[1] or None) if by is not None else None)
        found = cells.get(key)
        if found is None:
            found = cells[key] = _Cell()
        return found

    n = 1 if by is None else 2
    if q.metric.source == "scores":
        t = MonitorScore
        conds = [_ranges(t, ranges), *_conds(t, q)]
        if q.score is not None:
            conds.append(t.name == q.score)
        else:
            conds.append(or_(t.source == "user", t.name.in_(sorted(FEEDBACK_NAMES))))
        keys = _keys(t, size, by)
        for row in s.execute(
            select(*keys, func.sum(t.count), func.sum(t.total))
            .where(*conds)
            .group_by(*(literal_column(k.name) for k in keys))
        ):
            c = cell(row)
            c.sums["count"] += int(row[n] or 0)
            c.sums["total"] += float(row[n + 1] or 0.0)
        return cells
    r = MonitorRollup
    keys = _keys(r, size, by)
    sums = (
        "traces",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_micros",
        "cache_lookups",
        "cache_hits",
        "blocks",
        "answers",
        "refusals",
    )
    q_ = select(*keys, *(func.sum(getattr(r, c)) for c in sums)).where(_ranges(r, ranges), *_conds(r, q))
    for row in s.execute(q_.group_by(*(literal_column(k.name) for k in keys))):
        c = cell(row)
        for i, name in enumerate(sums):
            c.sums[name] += int(row[n + i] or 0)
        c.sums["total_tokens"] = c.sums["prompt_tokens"] + c.sums["completion_tokens"]
    if q.metric.name in _PERCENTILE:
        t2 = MonitorLatency
        keys = _keys(t2, size, by)
        stmt = select(*keys, t2.bin, func.sum(t2.traces)).where(_ranges(t2, ranges), *_conds(t2, q))
        for row in s.execute(stmt.group_by(*(literal_column(k.name) for k in keys), t2.bin)):
            c = cell(row)
            if c.histogram is None:
                c.histogram = [0] * latency.BINS
            c.histogram[int(row[-2])] += int(row[-1] or 0)
    return cells


def _cell_value(q: _Query, c: _Cell) -> tuple[float | None, int]:
    name = q.metric.name
    if q.metric.source == "scores":
        count = int(c.sums["count"])
        return (c.sums["total"] / count if count else None), count
    traces = int(c.sums["traces"])
    if name in _PERCENTILE:
        if c.histogram is None or not any(c.histogram):
            return None, traces
        return latency.estimates(c.histogram)[_PERCENTILE[name]], traces
    numerator, denominator = _TRACE_FIGURES[name]
    if denominator is None:
        if traces <= 0:
            return None, 0
        figure = c.sums[numerator]
        return (figure / 1_000_000 if numerator == "cost_micros" else figure), traces
    base = int(c.sums[denominator])
    return (c.sums[numerator] / base if base else None), base


# --- reading the tracing service ---------------------------------------------------------------------


def _tracing_value(row: Any, metric: str) -> tuple[float | None, int]:
    count = int(row.count)
    figures: dict[str, Callable[[], float | None]] = {
        "requests": lambda: float(row.count),
        "errors": lambda: float(row.errors),
        "error_rate": lambda: row.error_rate,
        "cost_usd": lambda: float(row.cost_usd),
        "prompt_tokens": lambda: float(row.prompt_tokens),
        "completion_tokens": lambda: float(row.completion_tokens),
        "total_tokens": lambda: float(row.prompt_tokens + row.completion_tokens),
        "latency_p50_ms": lambda: row.latency_p50_ms,
        "latency_p95_ms": lambda: row.latency_p95_ms,
        "latency_p99_ms": lambda: row.latency_p99_ms,
    }
    return figures[metric](), count


def _filters(q: _Query, start: datetime, end: datetime) -> TraceFilters:
    return TraceFilters(start=start, end=end, project=q.project, route=q.route, model=q.model)


# --- the interface -----------------------------------------------------------------------------------


def _check_group(by: str | None) -> str | None:
    if by in (None, "", "none"):
        return None
    if by not in GROUPS:
        raise InvalidInput(f"by {by!r} is not one of: none, {', '.join(GROUPS)}", details={"field": "by"})
    return by


def _check_bucket(bucket: str, start: datetime, end: datetime) -> int:
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket {bucket!r} is not one of: {', '.join(BUCKETS)}", details={"field": "bucket"})
    size = BUCKETS[bucket]
    if isinstance(start, datetime) and isinstance(end, datetime) and (end - start).total_seconds() / size > MAX_BUCKETS:
        raise InvalidInput(
            f"more than {MAX_BUCKETS} {bucket} buckets between 'from' and 'to'; use a larger bucket or a shorter range",
            details={"field": "bucket"},
        )
    return size


def value(
    platform: Platform,
    actor: Actor,
    metric: str,
    *,
    project: str | None = None,
    route: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    start: datetime,
    end: datetime,
) -> float | None:
    """A metric over `[start, end)` of the traces (or scores) matching the filters; None: no data."""
    with platform.db.read_session() as s:
        q = _query(s, actor, metric, project, route, model, prompt, start, end)
        if _tracing_answers(q, None):
            rows = aggregate(platform, actor, _filters(q, start, end), bucket="day").rows
            if len(rows) == 1 or (rows and q.metric.name not in _PERCENTILE):
                return _sum_rows(rows, q.metric.name)
            if not rows:
                return None
        cells = _read_cells(s, q, None, None)
    found = cells.get((0, None))
    return _cell_value(q, found)[0] if found is not None else None


def _sum_rows(rows: Sequence[Any], metric: str) -> float | None:
    if metric in _PERCENTILE:
        return _tracing_value(rows[0], metric)[0]
    count = sum(int(r.count) for r in rows)
    if count == 0:
        return None
    if metric == "error_rate":
        return sum(int(r.errors) for r in rows) / count
    return sum(_tracing_value(r, metric)[0] or 0.0 for r in rows)


def series(
    platform: Platform,
    actor: Actor,
    metric: str,
    *,
    project: str | None = None,
    route: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    start: datetime,
    end: datetime,
    bucket: str = "hour",
    by: str | None = None,
) -> MonitorSeries:
    """A metric per time bucket (`minute`, `hour`, `day`, UTC) and group (`project`, `route`, `model`,
    `prompt` or none) over `[start, end)`; buckets without data are left out."""
    group = _check_group(by)
    size = _check_bucket(bucket, start, end)
    with platform.db.read_session() as s:
        q = _query(s, actor, metric, project, route, model, prompt, start, end)
        if _tracing_answers(q, group):
            rows = aggregate(platform, actor, _filters(q, start, end), bucket=bucket, by=group or "none").rows
            points = []
            for row in rows:
                figure, count = _tracing_value(row, q.metric.name)
                points.append(MonitorPoint(bucket=row.bucket, group=row.group, value=figure, count=count))
            return MonitorSeries(
                metric=q.metric, bucket=bucket, by=group, start=start, end=end, source="tracing", points=points
            )
        cells = _read_cells(s, q, size, group)
        labels: dict[str, str] = {}
        if group == "project":
            found = names_of(s, {"project": [g for _, g in cells if g]})
            labels = {pid: name for (_, pid), name in found.items()}
    points = []
    for key in sorted(cells, key=lambda k: (k[0], k[1] or "")):
        figure, count = _cell_value(q, cells[key])
        if count <= 0 and figure is None:
            continue
        group_label = labels.get(key[1], key[1]) if key[1] is not None else None
        points.append(
            MonitorPoint(bucket=datetime.fromtimestamp(key[0], UTC), group=group_label, value=figure, count=count)
        )
    return MonitorSeries(
        metric=q.metric, bucket=bucket, by=group, start=start, end=end, source="monitors", points=points
    )


# --- the overview ------------------------------------------------------------------------------------

SUMMARY_METRICS = (
    "requests",
    "error_rate",
    "latency_p95_ms",
    "cost_usd",
    "total_tokens",
    "cache_hit_rate",
    "block_rate",
    "refusal_rate",
    "feedback_mean",
)


class SummaryFigure(BaseModel):
    """A headline figure in the last window and the one before it."""

    metric: MetricInfo
    current: float | None
    previous: float | None
    change: float | None  # relative change (0.1: 10% up); None without both figures or from zero


class Summary(BaseModel):
    """The overview's headline figures: the last `window` against the window before it, and the score
    names given in the last window."""

    start: datetime
    end: datetime
    window_seconds: int
    project: str | None
    figures: list[SummaryFigure]
    scores: list[SummaryFigure]


MAX_SUMMARY_SCORES = 12


def summary(
    platform: Platform,
    actor: Actor,
    *,
    project: str | None = None,
    window: timedelta = timedelta(hours=24),
    end: datetime | None = None,
) -> Summary:
    """The headline figures of the last `window` (to `end`, default now) against the window before it."""
    actor.require("viewer", "read monitors")
    if not timedelta(minutes=1) <= window <= timedelta(days=90):
        raise InvalidInput("window must be between 1 minute and 90 days", details={"field": "window"})
    end = end or utcnow()
    start, before = end - window, end - 2 * window

    now_figures = _headline(platform, actor, project, start, end)
    before_figures = _headline(platform, actor, project, before, start)

    def figure(metric: str) -> SummaryFigure:
        if metric in now_figures:
            current, previous = now_figures[metric], before_figures[metric]
        else:
            current = value(platform, actor, metric, project=project, start=start, end=end)
            previous = value(platform, actor, metric, project=project, start=before, end=start)
        change = (current - previous) / abs(previous) if current is not None and previous else None
        return SummaryFigure(metric=metric_info(metric), current=current, previous=previous, change=change)

    names = score_names(platform, actor, project=project, start=start, end=end)
    return Summary(
        start=start,
        end=end,
        window_seconds=int(window.total_seconds()),
        project=project,
        figures=[figure(m) for m in SUMMARY_METRICS],
        scores=[figure(SCORE_PREFIX + n) for n in names[:MAX_SUMMARY_SCORES]],
    )


def _headline(
    platform: Platform, actor: Actor, project: str | None, start: datetime, end: datetime
) -> dict[str, float | None]:
    """The summary's figures of one window from three reads (each as `value` reads it): the tracing service's
    aggregate for traffic, errors, tokens, cost and latency; the monitor rollup's cell for the rates; the
    scores for feedback."""
    out: dict[str, float | None] = {}
    with platform.db.read_session() as s:
        q = _query(s, actor, "block_rate", project, None, None, None, start, end)
        cell = _read_cells(s, q, None, None).get((0, None))
        for metric in ("cache_hit_rate", "block_rate", "refusal_rate"):
            out[metric] = _cell_value(dataclasses.replace(q, metric=METRICS[metric]), cell)[0] if cell else None
    rows = aggregate(platform, actor, _filters(q, start, end), bucket="day").rows
    for metric in ("requests", "error_rate", "cost_usd", "total_tokens"):
        out[metric] = _sum_rows(rows, metric) if rows else None
    if len(rows) == 1 or not rows:
        out["latency_p95_ms"] = _sum_rows(rows, "latency_p95_ms") if rows else None
    else:  # a window across midnight: percentiles do not add up, `value` reads the histograms
        out["latency_p95_ms"] = value(platform, actor, "latency_p95_ms", project=project, start=start, end=end)
    out["feedback_mean"] = value(platform, actor, "feedback_mean", project=project, start=start, end=end)
    return out


def score_names(
    platform: Platform, actor: Actor, *, project: str | None = None, start: datetime, end: datetime
) -> list[str]:
    """The score names given in `[start, end)` (most given first), from the monitor rollup."""
    actor.require("viewer", "read monitors")
    _check_window(start, end)
    with platform.db.read_session() as s:
        project_id = project_scope(s, actor, _check_text("project", project))
        t = MonitorScore
        conds = [_ranges(t, plan(*_minutes(start, end)))]
        if project_id is not None:
            conds.append(t.project_id == project_id)
        rows = s.execute(
            select(t.name, func.sum(t.count)).where(*conds).group_by(t.name).order_by(func.sum(t.count).desc(), t.name)
        )
        return [str(r[0]) for r in rows]


def roll_now(platform: Platform, actor: Actor) -> Rolled:
    """Roll the monitors at once (admins; the server rolls every `INTERVAL` seconds by itself)."""
    actor.require_admin("roll the monitors")
    return roll(platform.db)


# --- text inputs (the API's query parameters, the CLI's options) ----------------------------------------

DEFAULT_WINDOW = timedelta(hours=24)


def window(start: str | None, end: str | None, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """`from`/`to` as given (ISO-8601 times or durations ago: `24h`, `7d`); `to` defaults to now, `from` to
    `DEFAULT_WINDOW` before `to`."""
    now = now or utcnow()
    stop = parse_time(end, "to", now) if end else now
    try:
        begin = parse_time(start, "from", now) if start else stop - DEFAULT_WINDOW
    except OverflowError:
        raise InvalidInput("'from' is out of range", details={"field": "from"}) from None
    _check_window(begin, stop)
    return begin, stop


def series_of(
    platform: Platform,
    actor: Actor,
    metric: str,
    *,
    project: str | None = None,
    route: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    start: str | None = None,
    end: str | None = None,
    bucket: str = "hour",
    by: str | None = None,
) -> MonitorSeries:
    """`series` with the window given as text (see `window`)."""
    actor.require("viewer", "read monitors")
    begin, stop = window(start, end)
    return series(
        platform,
        actor,
        metric,
        project=project,
        route=route,
        model=model,
        prompt=prompt,
        start=begin,
        end=stop,
        bucket=bucket,
        by=by,
    )


class MonitorValue(BaseModel):
    """A metric over a whole window (`value` None: no data)."""

    metric: MetricInfo
    start: datetime
    end: datetime
    value: float | None


def value_of(
    platform: Platform,
    actor: Actor,
    metric: str,
    *,
    project: str | None = None,
    route: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> MonitorValue:
    """`value` with the window given as text (see `window`)."""
    actor.require("viewer", "read monitors")
    begin, stop = window(start, end)
    figure = value(
        platform, actor, metric, project=project, route=route, model=model, prompt=prompt, start=begin, end=stop
    )
    return MonitorValue(metric=metric_info(metric), start=begin, end=stop, value=figure)


def summary_of(platform: Platform, actor: Actor, *, project: str | None = None, window_text: str = "24h") -> Summary:
    """`summary` with the window given as a duration (`1h`, `24h`, `7d`)."""
    actor.require("viewer", "read monitors")
    length = parse_duration(window_text)
    if length is None:
        raise InvalidInput(
            f"window {window_text!r} is not a duration such as 1h, 24h or 7d", details={"field": "window"}
        )
    return summary(platform, actor, project=project, window=length)
