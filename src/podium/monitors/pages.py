"""Dashboard pages of the monitors: the Overview (what a person opens first: the last window's headline figures
against the window before, and charts of traffic, cost, errors, latency, blocks, refusals and quality scores)
and Monitors (one chart per monitor, filtered by project, route, model and prompt version, grouped by one of
them). Every figure comes from `monitors.service`, called as the signed-in user; charts are drawn with
`podium.web.charts` and the trace pages' chart macro."""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from podium.core.db import utcnow
from podium.core.errors import InvalidInput, PodiumError
from podium.core.http import get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.monitors import service
from podium.monitors.service import GROUPS, METRICS, MetricInfo, MonitorSeries
from podium.web.charts import Chart, Series, layout_chart
from podium.web.shell import PageSession, page_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}  # fmt: skip
MAX_POINTS = 120  # buckets a chart shows when the bucket is chosen automatically
PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d")
MAX_GROUPS = len(PALETTE)
MAX_SCORE_CHARTS = 8
STACKED = frozenset({"requests", "errors", "cost_usd", "prompt_tokens", "completion_tokens", "total_tokens"})
FILTERS = ("project", "route", "model", "prompt")


# --- formatting --------------------------------------------------------------------------------------


def fmt_value(unit: str, value: float | None) -> str:
    """A monitor's value for people, by its unit."""
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 10 else f"{value:.2f} ms"
    if unit == "USD":
        return f"${value:,.2f}" if value >= 1 else f"${value:.4f}".rstrip("0").rstrip(".")
    if unit == "score":
        return f"{value:.3g}"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def fmt_change(value: float | None) -> str:
    """A relative change: `+12.5%`, `-3.0%`; `—` without one."""
    return "—" if value is None else f"{value * 100:+.1f}%"


_CHART_UNIT = {"ms": "ms", "USD": "usd", "ratio": "rate"}


# --- charts ------------------------------------------------------------------------------------------


def _slots(start: datetime, end: datetime, size: int) -> list[datetime]:
    first = int(start.timestamp()) // size * size
    last = int(end.timestamp() - 1e-6) // size * size
    return [datetime.fromtimestamp(t, UTC) for t in range(first, max(last, first) + 1, size)]


def _chart(key: str, title: str, found: MonitorSeries, slots: list[datetime], label_format: str) -> Chart:
    """A monitor's series as a chart: a line (or stacked bars, for figures that add up) per group, the busiest
    `MAX_GROUPS` groups."""
    index = {slot: i for i, slot in enumerate(slots)}
    weight: defaultdict[str, int] = defaultdict(int)
    values: dict[str, list[float | None]] = {}
    stacked = found.metric.name in STACKED and found.by is not None
    for p in found.points:
        name = p.group if p.group is not None else ("(none)" if found.by else found.metric.name)
        weight[name] += p.count
        i = index.get(p.bucket)
        if i is not None:
            values.setdefault(name, [0.0 if stacked else None] * len(slots))[i] = p.value
    shown = sorted(values, key=lambda g: (-weight[g], g))[:MAX_GROUPS]
    unit = found.metric.unit
    chart = Chart(key, title, _CHART_UNIT.get(unit, "count"), [Series(g, values[g]) for g in shown], stacked=stacked)
    return layout_chart(chart, slots, label_format, functools.partial(fmt_value, unit), PALETTE)


class _Window:
    """A page's time range, bucket and filters, checked."""

    def __init__(self, request: Request, default_range: str = "24h"):
        q = request.query_params
        self.range = q.get("range") or default_range
        if self.range not in RANGES:
            raise InvalidInput(f"range {self.range!r} is not one of: {', '.join(RANGES)}", details={"field": "range"})
        self.end = utcnow()
        self.start = self.end - RANGES[self.range]
        wanted = q.get("bucket") or "auto"
        span = (self.end - self.start).total_seconds()
        if wanted == "auto":
            self.bucket = next((b for b, s in service.BUCKETS.items() if span / s <= MAX_POINTS), "day")
        elif wanted in service.BUCKETS:
            self.bucket = wanted
        else:
            raise InvalidInput(
                f"bucket {wanted!r} is not one of: auto, {', '.join(service.BUCKETS)}", details={"field": "bucket"}
            )
        self.wanted_bucket = wanted
        self.by = q.get("by") or None
        if self.by is not None and self.by not in GROUPS:
            raise InvalidInput(f"by {self.by!r} is not one of: {', '.join(GROUPS)}", details={"field": "by"})
        self.filters: dict[str, str] = {f: q[f].strip() for f in FILTERS if q.get(f, "").strip()}
        size = service.BUCKETS[self.bucket]
        self.slots = _slots(self.start, self.end, size)
        self.label_format = "%m-%d" if self.bucket == "day" else ("%H:%M" if span <= 86400 else "%m-%d %H:%M")

    def series(self, platform: Platform, actor: Actor, metric: str, by: str | None) -> MonitorSeries:
        return service.series(
            platform, actor, metric, **self.filters, start=self.start, end=self.end, bucket=self.bucket, by=by
        )

    def params(self) -> dict[str, str]:
        return {
            "range": self.range,
            "bucket": self.wanted_bucket,
            **({"by": self.by} if self.by else {}),
            **self.filters,
        }


def _error(request: Request, session: PageSession, template: str, exc: PodiumError, **ctx: Any) -> Response:
    shown = {k: v for k, v in request.query_params.items() if k in (*FILTERS, "range", "bucket", "by")}
    return render(
        request,
        template,
        session,
        status_code=exc.status,
        error=exc,
        bad_field=str(exc.details.get("field", "")),
        params=shown,
        charts=[],
        ranges=list(RANGES),
        buckets=["auto", *service.BUCKETS],
        groups=GROUPS,
        **ctx,
    )


# --- pages -------------------------------------------------------------------------------------------


@router.get("/overview")
def overview(request: Request, session: SessionDep) -> Response:
    """The headline figures of the last window against the one before, and charts of the window."""
    platform, actor = get_platform(request), session.actor
    try:
        window = _Window(request)
        project = window.filters.get("project")
        summary = service.summary(platform, actor, project=project, window=RANGES[window.range], end=window.end)
        w = window

        def chart(key: str, title: str, metric: str, by: str | None = None) -> Chart:
            return _chart(key, title, w.series(platform, actor, metric, by), w.slots, w.label_format)

        charts = [
            chart("requests", "Requests by route", "requests", "route"),
            chart("cost_usd", "Cost by route", "cost_usd", "route"),
            chart("error_rate", "Error rate", "error_rate"),
            _latency_chart(platform, actor, w),
            chart("block_rate", "Guardrail block rate", "block_rate"),
            chart("refusal_rate", "Refusal rate", "refusal_rate"),
            chart("cache_hit_rate", "Cache hit rate", "cache_hit_rate"),
            chart("feedback_mean", "User feedback (mean)", "feedback_mean"),
        ]
        charts += [
            chart(f"score-{f.metric.name[6:]}", f"{f.metric.name[6:]} (mean score)", f.metric.name)
            for f in summary.scores[:MAX_SCORE_CHARTS]
        ]
    except PodiumError as exc:
        return _error(request, session, "monitors/overview.html", exc, summary=None)
    return render(
        request,
        "monitors/overview.html",
        session,
        error=None,
        bad_field="",
        params=window.params(),
        summary=summary,
        charts=charts,
        ranges=list(RANGES),
        buckets=["auto", *service.BUCKETS],
        groups=GROUPS,
        bucket_used=window.bucket,
        start=window.start,
        end=window.end,
        fmt_value=fmt_value,
        fmt_change=fmt_change,
    )


def _latency_chart(platform: Platform, actor: Actor, window: _Window) -> Chart:
    """p50, p95 and p99 on one chart."""
    index = {slot: i for i, slot in enumerate(window.slots)}
    lines = []
    for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        values: list[float | None] = [None] * len(window.slots)
        for p in window.series(platform, actor, name, None).points:
            i = index.get(p.bucket)
            if i is not None:
                values[i] = p.value
        lines.append(Series(name.split("_")[1], values))
    chart = Chart("latency", "Latency percentiles", "ms", lines)
    return layout_chart(chart, window.slots, window.label_format, functools.partial(fmt_value, "ms"), PALETTE)


@router.get("/monitors")
def monitors_page(request: Request, session: SessionDep) -> Response:
    """One chart per monitor (and per score name given in the window), filtered and grouped."""
    platform, actor = get_platform(request), session.actor
    try:
        window = _Window(request)
        metrics: list[MetricInfo] = list(METRICS.values())
        names = service.score_names(
            platform, actor, project=window.filters.get("project"), start=window.start, end=window.end
        )
        metrics += [service.metric_info(service.SCORE_PREFIX + n) for n in names[:MAX_SCORE_CHARTS]]
        charts = [
            _chart(
                m.name,
                m.description,
                window.series(platform, actor, m.name, window.by),
                window.slots,
                window.label_format,
            )
            for m in metrics
        ]
    except PodiumError as exc:
        return _error(request, session, "monitors/monitors.html", exc)
    return render(
        request,
        "monitors/monitors.html",
        session,
        max_groups=MAX_GROUPS,
        error=None,
        bad_field="",
        params=window.params(),
        charts=charts,
        ranges=list(RANGES),
        buckets=["auto", *service.BUCKETS],
        groups=GROUPS,
        bucket_used=window.bucket,
        start=window.start,
        end=window.end,
    )
