"""Dashboard pages for alerts: the rules with their states and the latest events; one rule (its condition, state,
spec as YAML, history of firings and resolutions, and each notification with its attempts), with "evaluate now"
and "delete" for members.

Every figure comes from `alerts.service`, called as the signed-in user; the templates escape everything (rule
names, messages, webhook answers are never markup)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.alerts import service
from podium.core.errors import PodiumError
from podium.core.http import get_platform
from podium.web.shell import PageSession, check_csrf, error_page, page_session, redirect, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]
RECENT_EVENTS = 25


def fmt_value(value: float | None) -> str:
    """A metric value: four significant digits; `—` for none."""
    return "—" if value is None else f"{value:.4g}"


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
    return render(request, "alerts/rule.html", session, rule=rule, source=source, evaluated=evaluated, **_helpers())


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


@router.post("/alerts/rules/{rule_id}/delete")
def delete_page(request: Request, rule_id: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Delete the rule with its history."""
    try:
        check_csrf(session, csrf)
        service.delete_rule(get_platform(request), session.actor, rule_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect("/alerts")
