"""The monitors as Prometheus gauges, appended to `/metrics`: per project, route and model, the traffic
figures of the last `WINDOW` (requests, errors, error rate, latency p50/p95/p99, cost, tokens, cache hit rate,
block rate, refusal rate) and the mean of each score name over the last `SCORE_WINDOW`, read from the monitor
rollup (so every server process answers the same). Label values are bounded: the `MAX_GROUPS` busiest
(project, route, model) groups and the `MAX_SCORE_NAMES` most given score names; the rest are left out.
The answer is kept `CACHE_SECONDS`, so frequent scrapes cost one read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, and_, func, or_, select

from podium.auth.service import names_of
from podium.core.db import utcnow
from podium.core.exposition import CachedExposition
from podium.core.platform import Platform
from podium.monitors.store import SUMS, MonitorLatency, MonitorRollup, MonitorScore
from podium.tracing import latency
from podium.tracing.rollup import WIDTHS, plan, seconds

WINDOW = timedelta(minutes=5)
SCORE_WINDOW = timedelta(hours=1)
MAX_GROUPS = 100
MAX_SCORE_NAMES = 20
CACHE_SECONDS = 10.0
LABELS = ["project", "route", "model"]
_exposition = CachedExposition(CACHE_SECONDS)

Group = tuple[str, str, str]  # project id, route, model


def _ranges(
    table: type[MonitorRollup] | type[MonitorLatency] | type[MonitorScore], window: timedelta
) -> ColumnElement[bool]:
    end = seconds(utcnow()) // 60 * 60 + 60
    ranges = plan(end - int(window.total_seconds()), end, list(WIDTHS))
    return or_(*(and_(table.width == w, table.slot >= a, table.slot < b) for w, a, b in ranges))


class MonitorCollector(Collector):
    """Reads the monitor rollup once per collection."""

    def __init__(self, platform: Platform):
        self.platform = platform

    def collect(self) -> Iterator[GaugeMetricFamily]:
        r, lt, sc = MonitorRollup, MonitorLatency, MonitorScore
        with self.platform.db.read_session() as s:
            keys = (r.project_id, r.route, r.model)
            rows = s.execute(
                select(*keys, *(func.sum(getattr(r, c)) for c in SUMS))
                .where(_ranges(r, WINDOW))
                .group_by(*keys)
                .order_by(func.sum(r.traces).desc(), *keys)
                .limit(MAX_GROUPS)
            ).all()
            groups: dict[Group, dict[str, int]] = {
                (row[0], row[1], row[2]): {c: int(v or 0) for c, v in zip(SUMS, row[3:], strict=True)} for row in rows
            }
            histograms: dict[Group, list[int]] = defaultdict(lambda: [0] * latency.BINS)
            lkeys = (lt.project_id, lt.route, lt.model, lt.bin)
            for row in s.execute(select(*lkeys, func.sum(lt.traces)).where(_ranges(lt, WINDOW)).group_by(*lkeys)):
                if (row[0], row[1], row[2]) in groups:
                    histograms[(row[0], row[1], row[2])][int(row[3])] += int(row[4] or 0)
            top = select(sc.name).where(_ranges(sc, SCORE_WINDOW)).group_by(sc.name)
            top = top.order_by(func.sum(sc.count).desc(), sc.name).limit(MAX_SCORE_NAMES)
            names = [str(n) for n in s.scalars(top)]
            skeys = (sc.project_id, sc.route, sc.model, sc.name)
            scores = (
                s.execute(
                    select(*skeys, func.sum(sc.count), func.sum(sc.total))
                    .where(_ranges(sc, SCORE_WINDOW), sc.name.in_(names))
                    .group_by(*skeys)
                    .order_by(func.sum(sc.count).desc(), *skeys)
                    .limit(MAX_GROUPS * 4)
                ).all()
                if names
                else []
            )
            projects = {g[0] for g in groups} | {srow[0] for srow in scores}
            found = names_of(s, {"project": [p for p in projects if p]})
        label = {pid: name for (_, pid), name in found.items()}

        def labels(g: Group) -> list[str]:
            return [label.get(g[0], g[0]), g[1], g[2]]

        window = f"the last {int(WINDOW.total_seconds() // 60)} minutes"
        counts = {
            "requests": ("traces", "Traces (requests) that started in " + window),
            "errors": ("errors", "Traces that ended in an error, in " + window),
            "prompt_tokens": ("prompt_tokens", "Prompt tokens in " + window),
            "completion_tokens": ("completion_tokens", "Completion tokens in " + window),
        }
        for name, (column, text) in counts.items():
            family = GaugeMetricFamily(f"podium_monitor_{name}", text, labels=LABELS)
            for g, sums in groups.items():
                family.add_metric(labels(g), float(sums[column]))
            yield family
        cost = GaugeMetricFamily("podium_monitor_cost_usd", "Cost of the calls in " + window, labels=LABELS)
        for g, sums in groups.items():
            cost.add_metric(labels(g), sums["cost_micros"] / 1_000_000)
        yield cost
        rates = {
            "error_rate": ("errors", "traces", "Errors as a part of the traces"),
            "cache_hit_rate": ("cache_hits", "cache_lookups", "Cache hits as a part of the cache lookups"),
            "block_rate": ("blocks", "traces", "Calls a guardrail blocked as a part of the traces"),
            "refusal_rate": ("refusals", "answers", "Answers that open as a refusal, as a part of the answers"),
        }
        for name, (part, base, text) in rates.items():
            family = GaugeMetricFamily(f"podium_monitor_{name}", f"{text}, in {window}", labels=LABELS)
            for g, sums in groups.items():
                if sums[base]:
                    family.add_metric(labels(g), sums[part] / sums[base])
            yield family
        for i, p in enumerate(latency.PERCENTILES):
            family = GaugeMetricFamily(
                f"podium_monitor_latency_p{p}_ms",
                f"Latency p{p} in {window}, from histograms (within {latency.ERROR:.1%})",
                labels=LABELS,
            )
            for g, counts_ in histograms.items():
                figure = latency.estimates(counts_)[i]
                if figure is not None:
                    family.add_metric(labels(g), figure)
            yield family
        means = GaugeMetricFamily(
            "podium_monitor_score",
            f"Mean of each score name given in the last {int(SCORE_WINDOW.total_seconds() // 60)} minutes",
            labels=[*LABELS, "name"],
        )
        per: dict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for srow in scores:
            cell = per[(srow[0], srow[1], srow[2], srow[3])]
            cell[0] += float(srow[4] or 0)
            cell[1] += float(srow[5] or 0)
        for (project, route, model, name), (count, total) in per.items():
            if count:
                means.add_metric([*labels((project, route, model)), name], total / count)
        yield means


def exposition(platform: Platform) -> bytes:
    """The monitors in Prometheus' text format (kept `CACHE_SECONDS`)."""
    return _exposition.render(platform.db.url, lambda: MonitorCollector(platform))
