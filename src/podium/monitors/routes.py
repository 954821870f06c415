"""`/api/monitors`: the list of monitors, a monitor's series, the overview's summary and rolling at once;
each handler is one service call. A metric is a path (`score:<name>`: score names may hold `/`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.monitors import service
from podium.monitors.service import MetricInfo, MonitorSeries, MonitorValue, Rolled, Summary

router = APIRouter(prefix="/api/monitors", tags=["monitors"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
Text = Annotated[str | None, Query(max_length=200)]


@router.get("")
def list_metrics(actor: ActorDep) -> list[MetricInfo]:
    """The monitors: each metric's name, description, unit and which way is bad."""
    return service.list_metrics(actor)


@router.get("/summary")
def summary(
    actor: ActorDep,
    platform: PlatformDep,
    project: Text = None,
    window: Annotated[str, Query(max_length=20, description="the window's length: 1h, 24h, 7d")] = "24h",
) -> Summary:
    """The headline figures of the last window against the window before it."""
    return service.summary_of(platform, actor, project=project, window_text=window)


@router.post("/roll")
def roll(actor: ActorDep, platform: PlatformDep) -> Rolled:
    """Roll the new traces and scores into the monitors now (admins; the server does it every few seconds)."""
    return service.roll_now(platform, actor)


@router.get("/{metric:path}/value")
def value(
    metric: str,
    actor: ActorDep,
    platform: PlatformDep,
    project: Text = None,
    route: Text = None,
    model: Text = None,
    prompt: Text = None,
    start: Annotated[str | None, Query(alias="from", max_length=40, description="ISO-8601 time or 24h, 7d ago")] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> MonitorValue:
    """A monitor over the whole window (the last 24 hours by default); `value` null: no data."""
    return service.value_of(
        platform, actor, metric, project=project, route=route, model=model, prompt=prompt, start=start, end=end
    )


@router.get("/{metric:path}")
def series(
    metric: str,
    actor: ActorDep,
    platform: PlatformDep,
    project: Text = None,
    route: Text = None,
    model: Text = None,
    prompt: Text = None,
    start: Annotated[str | None, Query(alias="from", max_length=40, description="ISO-8601 time or 24h, 7d ago")] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    bucket: Annotated[str, Query(max_length=10)] = "hour",
    by: Annotated[str | None, Query(max_length=10, description="project, route, model, prompt or none")] = None,
) -> MonitorSeries:
    """A monitor per time bucket (and group) over a window (the last 24 hours by default)."""
    return service.series_of(
        platform,
        actor,
        metric,
        project=project,
        route=route,
        model=model,
        prompt=prompt,
        start=start,
        end=end,
        bucket=bucket,
        by=by,
    )
