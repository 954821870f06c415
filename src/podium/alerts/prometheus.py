"""The alert rules' states as Prometheus gauges, appended to `/metrics` after the monitors': per project and rule,
`podium_alert_firing` (1 while any of its groups fires, else 0) and `podium_alert_groups` by state. A scraper
can alert on Podium's own rules, or chart how often they fire. Label values are bounded by the rules' count
(at most `MAX_RULES`, the most recently changed first); the answer is kept `CACHE_SECONDS`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select

from podium.alerts.store import AlertRule, AlertState
from podium.auth.service import names_of
from podium.core.exposition import CachedExposition
from podium.core.platform import Platform

MAX_RULES = 500
CACHE_SECONDS = 10.0
STATES = ("ok", "pending", "firing", "resolved")
_exposition = CachedExposition(CACHE_SECONDS)


class AlertCollector(Collector):
    """Reads the enabled rules and their groups' states once per collection."""

    def __init__(self, platform: Platform):
        self.platform = platform

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.platform.db.read_session() as s:
            rules = list(
                s.execute(
                    select(AlertRule.id, AlertRule.project_id, AlertRule.name, AlertRule.severity)
                    .where(AlertRule.enabled.is_(True))
                    .order_by(AlertRule.updated_at.desc())
                    .limit(MAX_RULES)
                )
            )
            ids = [r.id for r in rules]
            states = list(s.execute(select(AlertState.rule_id, AlertState.state).where(AlertState.rule_id.in_(ids))))
            found = names_of(s, {"project": [r.project_id for r in rules if r.project_id]})
        projects = {pid: name for (_, pid), name in found.items()}
        counts: dict[str, Counter[str]] = {}
        for rule_id, state in states:
            counts.setdefault(rule_id, Counter())[state] += 1
        firing = GaugeMetricFamily(
            "podium_alert_firing",
            "1 while any group of an alert rule is firing, else 0.",
            labels=["project", "rule", "severity"],
        )
        groups = GaugeMetricFamily(
            "podium_alert_groups", "An alert rule's groups in each state.", labels=["project", "rule", "state"]
        )
        for r in rules:
            project = projects.get(r.project_id, r.project_id) if r.project_id else ""
            c = counts.get(r.id, Counter())
            firing.add_metric([project, r.name, r.severity], 1.0 if c["firing"] else 0.0)
            for state in STATES:
                groups.add_metric([project, r.name, state], float(c[state]))
        yield firing
        yield groups


def exposition(platform: Platform) -> bytes:
    """The alert gauges in Prometheus' text format (kept `CACHE_SECONDS`)."""
    return _exposition.render(platform.db.url, lambda: AlertCollector(platform))
