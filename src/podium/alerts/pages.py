"""Dashboard pages for alerts: the rules with their states and the latest events; one rule (its condition, state,
spec as YAML, history of firings and resolutions, and each notification with its attempts), with "evaluate now"
and "delete" for members.

Every figure comes from `alerts.service`, called as the signed-in user; the templates escape everything (rule
names, messages, webhook answers are never markup)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.alerts import engine, service
from podium.alerts.spec import RuleSpec, format_duration
from podium.core.db import utcnow
from podium.core.errors import PodiumError
from podium.core.http import get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.monitors import service as monitors_service
from podium.web.charts import Chart, Series, layout_chart
from podium.web.shell import PageSession, check_csrf, error_page, page_session, redirect, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]
RECENT_EVENTS = 25
CHART_GROUPS = 5
PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e", "#7048e8", "#1098ad")
BUCKETS = (  # name, seconds, axis label, the longest span drawn with it
    ("minute", 60, "%H:%M", timedelta(hours=6)),
    ("hour", 3600, "%m-%d %H:%M", timedelta(days=14)),
    ("day", 86400, "%Y-%m-%d", timedelta(days=400)),
)


def fmt_value(value: float | None) -> str:
    """A metric value: four significant digits; `—` for none."""
    return "—" if value is None else f"{value:.4g}"


def _slots(start: datetime, end: datetime, size: int) -> list[datetime]:
    first = int(start.timestamp()) // size * size
    last = int(end.timestamp() - 1e-6) // size * size
    return [datetime.fromtimestamp(t, UTC) for t in range(first, max(last, first) + 1, size)]


def metric_chart(platform: Platform, actor: Actor, rule: service.RuleDetail) -> Chart | None:
    """The rule's metric over the last twelve windows (at least an hour), per minute, hour or day, a line per
    group of a grouped rule (the busiest few) and the threshold's line; None for a drift rule."""
    spec = RuleSpec.model_validate(rule.spec)
    window = engine.window(spec)
    if window is None or spec.metric is None:
        return None
    span = max(window * 12, timedelta(hours=1))
    bucket, size, label = next(b for b in BUCKETS if span <= b[3])[:3]
    end = utcnow()
    start = end - span
    found = monitors_service.series(
        platform,
        actor,
        spec.metric,
        project=rule.project_id,
        start=start,
        end=end,
        bucket=bucket,
        by=spec.group_by,
        **spec.filters.model_dump(),
    )
    slots = _slots(start, end, size)
    index = {slot: i for i, slot in enumerate(slots)}
    lines: dict[str, list[float | None]] = {}
    weight: dict[str, int] = {}
    for point in found.points:
        name = point.group or spec.metric
        i = index.get(point.bucket)
        if i is not None:
            lines.setdefault(name, [None] * len(slots))[i] = point.value
            weight[name] = weight.get(name, 0) + point.count
    shown = sorted(lines, key=lambda g: (-weight[g], g))[:CHART_GROUPS]
    series = [Series(name, lines[name]) for name in shown]
    c = spec.condition
    if c.type == "threshold":
        series.append(Series(f"threshold {c.op} {c.value:g}", [c.value] * len(slots), color="#c92a2a"))
    title = f"{spec.metric} per {bucket}, the last {format_duration(span)}"
    chart = Chart("metric", title, found.metric.unit, series)
    return layout_chart(chart, slots, label, fmt_value, PALETTE)


def _helpers() -> dict[str, Any]:
    return {"fmt_value": fmt_value, "quote": lambda v: quote(str(v), safe="")}


@router.get("/alerts")
def alerts_page(request: Request, session: SessionDep) -> Response:
    """The rules the user sees with their states (firing first), and the latest events."""
    platform = get_platform(request)
    try:
        rules = service.list_rules(platform, session.actor)
        events = service.list_events(platform, session.actor, limit=RECENT_EVENTS)
    except PodiumError as exc:
        return error_page(request, session, exc)
    order = {"firing": 0, "pending": 1, "resolved": 2, "ok": 3, "disabled": 4}
    rules.sort(key=lambda r: (order.get(r.state, 5), r.name))
    firing = sum(1 for r in rules if r.state == "firing")
    return render(request, "alerts/list.html", session, rules=rules, events=events, firing=firing, **_helpers())


@router.get("/alerts/rules/{rule_id}")
def rule_page(request: Request, rule_id: str, session: SessionDep) -> Response:
    """A rule: its state and condition, its spec, its history and its notifications."""
    platform = get_platform(request)
    try:
        rule = service.get_rule(platform, session.actor, rule_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    source = yaml.safe_dump(rule.spec, sort_keys=False, allow_unicode=True)
    evaluated = request.query_params.get("evaluated")
    tested = request.query_params.get("tested")
    try:
        chart = metric_chart(platform, session.actor, rule)
    except PodiumError:  # the page stays readable without its chart
        chart = None
    return render(
        request,
        "alerts/rule.html",
        session,
        rule=rule,
        source=source,
        evaluated=evaluated,
        tested=tested,
        chart=chart,
        **_helpers(),
    )


@router.post("/alerts/rules/{rule_id}/evaluate")
def evaluate_page(request: Request, rule_id: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Evaluate the rule now from its page (its notifications go out in the background)."""
    try:
        check_csrf(session, csrf)
        result = service.evaluate(get_platform(request), session.actor, rule=rule_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    event = next((r.event for r in result.rules if r.event), None) or "none"
    return redirect(f"/alerts/rules/{quote(rule_id, safe='')}?evaluated={quote(event, safe='')}")


@router.post("/alerts/rules/{rule_id}/test")
def test_page(request: Request, rule_id: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Send a test notification to the rule's channels from its page."""
    try:
        check_csrf(session, csrf)
        event = service.test_rule(get_platform(request), session.actor, rule_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/alerts/rules/{quote(rule_id, safe='')}?tested={len(event.deliveries)}")


@router.post("/alerts/rules/{rule_id}/delete")
def delete_page(request: Request, rule_id: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Delete the rule with its history."""
    try:
        check_csrf(session, csrf)
        service.delete_rule(get_platform(request), session.actor, rule_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect("/alerts")
