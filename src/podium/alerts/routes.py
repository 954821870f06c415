"""`/api/alerts`: alert rules (create, list, show, replace, delete), their history (events) and notifications
(deliveries), and evaluating the rules now; each handler is one service call."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from podium.alerts import service
from podium.alerts.service import DeliveryInfo, Evaluation, EventInfo, RuleDetail, RuleInfo
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
RuleRef = Annotated[str | None, Query(min_length=1, max_length=120, description="A rule's id or name.")]
Limit = Annotated[int, Query(ge=1, le=service.MAX_LISTED)]
RuleBody = Annotated[
    dict[str, Any],
    Body(
        description="The rule (name, metric, filters, condition, for, cooldown, severity, no_data, channels,"
        ' enabled), or {"source": "<the rule as YAML>"}.',
        openapi_examples={
            "threshold": {
                "summary": "error rate over 5% for 5 minutes",
                "value": {
                    "name": "high-error-rate",
                    "metric": "error_rate",
                    "condition": {"type": "threshold", "op": ">", "value": 0.05, "window": "5m"},
                    "channels": [{"webhook": "https://hooks.example.com/alerts"}],
                },
            }
        },
    ),
]


class EvaluateBody(BaseModel):
    """Which rules to evaluate: one (`rule`, by id or name) or all the caller's."""

    model_config = ConfigDict(extra="forbid")

    rule: str | None = Field(None, min_length=1, max_length=120)


@router.get("/rules")
def list_rules(actor: ActorDep, platform: PlatformDep) -> list[RuleInfo]:
    """The alert rules you see, by name, with their states."""
    return service.list_rules(platform, actor)


@router.post("/rules", status_code=status.HTTP_201_CREATED)
def create_rule(body: RuleBody, actor: ActorDep, platform: PlatformDep) -> RuleDetail:
    """Check and store an alert rule in your project."""
    return service.create_rule(platform, actor, body)


@router.get("/rules/{rule_id}")
def get_rule(rule_id: str, actor: ActorDep, platform: PlatformDep) -> RuleDetail:
    """One rule (by id or name): its spec, state, latest events and deliveries."""
    return service.get_rule(platform, actor, rule_id)


@router.put("/rules/{rule_id}")
def replace_rule(rule_id: str, body: RuleBody, actor: ActorDep, platform: PlatformDep) -> RuleDetail:
    """Replace a rule's spec; its state and history stay."""
    return service.replace_rule(platform, actor, rule_id, body)


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(rule_id: str, actor: ActorDep, platform: PlatformDep) -> Response:
    """Delete a rule with its history and deliveries."""
    service.delete_rule(platform, actor, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/rules/{rule_id}/test")
def test_rule(rule_id: str, actor: ActorDep, platform: PlatformDep) -> EventInfo:
    """Send a test notification to the rule's channels (recorded as a `test` event; the state stays)."""
    return service.test_rule(platform, actor, rule_id)


@router.get("/events")
def list_events(
    actor: ActorDep,
    platform: PlatformDep,
    rule: RuleRef = None,
    kind: Annotated[str | None, Query(max_length=10, description="firing, reminder, resolved or test")] = None,
    limit: Limit = 100,
) -> list[EventInfo]:
    """Firings, reminders and resolutions, newest first, each with its deliveries."""
    return service.list_events(platform, actor, rule=rule, kind=kind, limit=limit)


@router.get("/deliveries")
def list_deliveries(
    actor: ActorDep,
    platform: PlatformDep,
    rule: RuleRef = None,
    status: Annotated[str | None, Query(max_length=10, description="pending, sending, delivered or failed")] = None,
    limit: Limit = 100,
) -> list[DeliveryInfo]:
    """Notifications sent or being sent, newest first: status, attempts, last error."""
    return service.list_deliveries(platform, actor, rule=rule, status=status, limit=limit)


@router.post("/evaluate")
def evaluate(actor: ActorDep, platform: PlatformDep, body: EvaluateBody | None = None) -> Evaluation:
    """Evaluate your enabled rules now (or one); notifications are queued and sent in the background."""
    return service.evaluate(platform, actor, rule=body.rule if body else None)
