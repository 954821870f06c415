"""The trace metrics page: volume, latency percentiles, cost, tokens and errors over a time range, in total
and per model, as SVG charts (geometry from `podium.web.charts`) and a per-model table. Every figure comes
from `tracing.service.aggregate`; this module only shapes it."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from podium.core.db import utcnow
from podium.core.errors import InvalidInput, PodiumError
from podium.core.http import get_platform
from podium.core.money import format_usd, usd
from podium.tracing import aggregates as aggregates_module
from podium.tracing import latency, service
from podium.tracing.formats import FORMATS, filter_params, fmt_count, fmt_ms, fmt_pct, query_string
from podium.web.charts import Chart, Series, layout_chart
from podium.web.shell import PageSession, page_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

METRICS_PATH = "/trace-metrics"  # /metrics is Prometheus'
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_POINTS = 200  # buckets a chart shows when the bucket is chosen automatically
PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d")
MAX_SERIES = len(PALETTE)
FIXED_COLORS = {"all": "#343a40", "other": "#adb5bd", "p50": "#1098ad", "p95": "#f08c00", "p99": "#c92a2a"}
NO_MODEL = "(no model)"


def _fmt_unit(unit: str, value: float) -> str:
    """An axis value of a chart in `unit` (ms, usd, rate or count)."""
    if unit == "ms":
        return fmt_ms(value)
    if unit == "usd":
        return format_usd(round(value, 6))
    if unit == "rate":
        return fmt_pct(value)
    return fmt_count(value)


@dataclass
class ModelTotals:
    """One model's totals over the range (sums of the aggregate's buckets)."""

    model: str
    count: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def cost_usd(self) -> Decimal:
        return usd(self.cost_micros)


def _metrics_window(request: Request) -> tuple[str, dict[str, str]]:
    """The range preset (or "custom") and the filter parameters with `from`/`to` filled in."""
    params = filter_params(request)
    preset = request.query_params.get("range") or ("custom" if params.get("from") else "24h")
    if preset == "custom" and not params.get("from"):
        raise InvalidInput("a custom range needs 'from'", details={"field": "from"})
    if preset != "custom":
        if preset not in RANGES:
            raise InvalidInput(f"range {preset!r} is not one of: {', '.join(RANGES)}", details={"field": "range"})
        now = utcnow()
        params["from"] = (now - timedelta(seconds=RANGES[preset])).isoformat()
        params["to"] = now.isoformat()
    return preset, params


def _pick_bucket(wanted: str | None, start: datetime, end: datetime) -> str:
    if wanted and wanted != "auto":
        return wanted
    span = (end - start).total_seconds()
    return next((b for b, size in service.BUCKETS.items() if span / size <= MAX_POINTS), "day")


def _metrics_charts(
    totals: service.Aggregate, per_model: service.Aggregate, slots: list[datetime], models_shown: list[str]
) -> list[Chart]:
    """The metrics page's charts; models beyond those shown add up as "other" in the stacked ones."""
    index = {slot: i for i, slot in enumerate(slots)}
    n = len(slots)

    def line(rows: list[service.AggregateRow], pick: Any, fill: float | None) -> list[float | None]:
        out: list[float | None] = [fill] * n
        for r in rows:
            i = index.get(r.bucket)
            if i is not None:
                out[i] = pick(r)
        return out

    by_model: dict[str, list[service.AggregateRow]] = defaultdict(list)
    for r in per_model.rows:
        by_model[r.group or NO_MODEL].append(r)
    shown = set(models_shown)
    others = [r for r in per_model.rows if (r.group or NO_MODEL) not in shown]

    def per(pick: Any, fill: float | None) -> list[Series]:
        return [Series(m, line(by_model[m], pick, fill)) for m in models_shown]

    def stack(pick: Any) -> list[Series]:
        series = per(pick, 0)
        if others:
            rest: list[float | None] = [0.0] * n
            for r in others:
                i = index.get(r.bucket)
                if i is not None:
                    rest[i] = (rest[i] or 0.0) + pick(r)
            series.append(Series("other", rest))
        return series

    all_rows = totals.rows
    charts = [
        Chart("volume", "Requests", "count", stack(lambda r: r.count), stacked=True),
        Chart(
            "latency",
            "Latency percentiles (all models)",
            "ms",
            [
                Series("p50", line(all_rows, lambda r: r.latency_p50_ms, None)),
                Series("p95", line(all_rows, lambda r: r.latency_p95_ms, None)),
                Series("p99", line(all_rows, lambda r: r.latency_p99_ms, None)),
            ],
        ),
        Chart("latency_model", "Latency p95 by model", "ms", per(lambda r: r.latency_p95_ms, None)),
        Chart("cost", "Cost", "usd", stack(lambda r: float(r.cost_usd)), stacked=True),
        Chart(
            "tokens",
            "Tokens (prompt + completion)",
            "count",
            stack(lambda r: r.prompt_tokens + r.completion_tokens),
            stacked=True,
        ),
        Chart("errors", "Errors", "count", stack(lambda r: r.errors), stacked=True),
        Chart(
            "error_rate",
            "Error rate",
            "rate",
            [Series("all", line(all_rows, lambda r: r.error_rate, None)), *per(lambda r: r.error_rate, None)],
        ),
    ]
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models_shown)} | FIXED_COLORS
    for chart in charts:
        for s in chart.series:
            s.color = colors.get(s.name, "")
    return charts


def _percentiles_note(*aggregates: service.Aggregate) -> tuple[str, str] | None:
    """What to say about the latency percentiles when they are not exact: (how, sentence)."""
    how = {a.percentiles for a in aggregates}
    if "unavailable" in how:
        return "unavailable", (
            "Latency percentiles are not shown: with these filters they would read more than"
            f" {aggregates_module.MAX_SCAN:,} traces; narrow the range, or filter by model only."
        )
    if "estimated" in how:
        return "estimated", (
            f"Latency percentiles are estimated from latency histograms, within {latency.ERROR:.1%} of the exact"
            " values."
        )
    return None


@router.get(METRICS_PATH)
def metrics_page(request: Request, session: SessionDep) -> Response:
    """Charts of volume, latency percentiles, cost, tokens and errors over a time range, and per model."""
    platform = get_platform(request)
    preset = request.query_params.get("range") or ""
    params: dict[str, str] = filter_params(request)
    wanted_bucket = request.query_params.get("bucket") or "auto"
    ctx: dict[str, Any] = {"ranges": list(RANGES), "buckets": ["auto", *service.BUCKETS], **FORMATS}
    try:
        preset, params = _metrics_window(request)
        filters = service.parse_filters(params)
        start = filters.start
        assert start is not None  # set by _metrics_window
        end = filters.end or utcnow()
        bucket = _pick_bucket(wanted_bucket, start, end)
        per_model, totals = service.aggregate_with_total(platform, session.actor, filters, bucket=bucket, by="model")
    except PodiumError as exc:
        shown = {**params, "range": preset}
        return render(
            request,
            "traces/metrics.html",
            session,
            status_code=exc.status,
            error=exc,
            bad_field=str(exc.details.get("field", "")),
            params=shown,
            bucket=wanted_bucket,
            charts=[],
            models=[],
            total=None,
            **ctx,
        )
    size = service.BUCKETS[bucket]
    first = int(start.timestamp()) // size * size
    last = int(end.timestamp() - 1e-6) // size * size
    slots = [datetime.fromtimestamp(t, UTC) for t in range(first, max(last, first) + 1, size)]

    table: dict[str, ModelTotals] = {}
    for r in per_model.rows:
        name = r.group or NO_MODEL
        t = table.setdefault(name, ModelTotals(name))
        t.count += r.count
        t.errors += r.errors
        t.prompt_tokens += r.prompt_tokens
        t.completion_tokens += r.completion_tokens
        t.cost_micros += r.cost_micros
    ranked = sorted(table.values(), key=lambda t: (-t.count, t.model))
    grand = ModelTotals("all")
    for t in ranked:
        for attr in ("count", "errors", "prompt_tokens", "completion_tokens", "cost_micros"):
            setattr(grand, attr, getattr(grand, attr) + getattr(t, attr))
    label_format = "%m-%d" if bucket == "day" else ("%H:%M" if len(slots) * size <= 86400 else "%m-%d %H:%M")
    charts = [
        layout_chart(c, slots, label_format, functools.partial(_fmt_unit, c.unit), PALETTE)
        for c in _metrics_charts(totals, per_model, slots, [t.model for t in ranked[:MAX_SERIES]])
    ]
    return render(
        request,
        "traces/metrics.html",
        session,
        error=None,
        bad_field="",
        params={**params, "range": preset},
        bucket=wanted_bucket,
        bucket_used=bucket,
        start=start,
        end=end,
        charts=charts,
        draw_points=len(slots) <= MAX_POINTS,
        percentiles_note=_percentiles_note(totals, per_model),
        models=ranked,
        total=grand,
        more_models=max(0, len(ranked) - MAX_SERIES),
        traces_query={
            t.model: query_string({**params, "model": t.model if t.model != NO_MODEL else None}) for t in ranked
        },
        **ctx,
    )
