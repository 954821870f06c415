"""Where rules read their figures: the monitors domain's metrics and the drift domain's latest report, called
as the platform itself (the rule's project and filters scope the read)."""

from __future__ import annotations

from datetime import datetime

from podium.alerts.engine import DriftReading
from podium.alerts.spec import RuleSpec
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.drift import service as drift_service
from podium.monitors import service as monitors_service


def check_metric(metric: str) -> str:
    """The metric's name if the monitors domain knows it; `InvalidInput` naming `metric` otherwise."""
    return monitors_service.metric_info(metric).name


class MonitorMetrics:
    """A rule's metric from `podium.monitors.service.value`."""

    def __init__(self, platform: Platform):
        self.platform = platform

    def value(
        self, project_id: str | None, rule: RuleSpec, start: datetime, end: datetime, group: str | None = None
    ) -> float | None:
        """The metric of the rule's project and filters (and group) over `[start, end)`."""
        assert rule.metric is not None
        filters = rule.filters.model_dump()
        if rule.group_by is not None and group is not None:
            filters[rule.group_by] = group
        return monitors_service.value(
            self.platform, Actor.system(), rule.metric, project=project_id, start=start, end=end, **filters
        )

    def groups(self, project_id: str | None, rule: RuleSpec, start: datetime, end: datetime) -> list[str]:
        """The route, model or prompt values of the traces from `start` to `end` (by their request counts)."""
        if rule.group_by is None:
            return []
        series = monitors_service.series(
            self.platform,
            Actor.system(),
            "requests",
            project=project_id,
            start=start,
            end=end,
            bucket="day",
            by=rule.group_by,
            **rule.filters.model_dump(),
        )
        return [g for g in series.groups() if g]


class LatestDrift:
    """The project's newest drift report, from `podium.drift.service.latest`."""

    def __init__(self, platform: Platform):
        self.platform = platform

    def latest(self, project_id: str | None, rule: RuleSpec) -> DriftReading | None:
        """What the newest report says (None: the project has none, or the rule is global)."""
        if project_id is None:
            return None
        report = drift_service.latest(self.platform, Actor.system(), project=project_id)
        if report is None:
            return None
        return DriftReading(report_id=report.id, drifted=report.drift, score=report.score, at=report.created_at)
