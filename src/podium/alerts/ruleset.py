"""Alert rules: their checks beyond the spec's, create, replace, delete and read them with their states, and the
history (events) and notifications (deliveries) they recorded. Viewers read; members write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.alerts.source import check_metric
from podium.alerts.spec import RuleSpec, format_duration, parse
from podium.alerts.store import AlertDelivery, AlertEvent, AlertRule, AlertState
from podium.auth.service import record_audit
from podium.core.db import utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.netguard import NetGuard
from podium.core.platform import Platform

MAX_LISTED = 500
MAX_RULES_PER_PROJECT = 1000
RECENT = 50  # events and deliveries a rule's detail shows


# --- views -----------------------------------------------------------------------------------------------


class StateInfo(BaseModel):
    """A rule's state (for its group: "" is the rule's whole traffic)."""

    group: str
    state: str
    since: datetime | None
    pending_since: datetime | None
    incident_id: str | None
    value: float | None
    threshold: float | None
    evaluated_at: datetime | None
    notified_at: datetime | None


class RuleInfo(BaseModel):
    """A rule as lists show it, with its state."""

    id: str
    name: str
    project_id: str | None
    kind: str
    metric: str | None
    severity: str
    enabled: bool
    state: str  # the worst of its groups' states (firing > pending > resolved > ok); `disabled` when off
    value: float | None
    evaluated_at: datetime | None
    summary: str  # the condition in words
    created_by: str
    created_at: datetime
    updated_at: datetime


class DeliveryInfo(BaseModel):
    """One notification of an event to one channel, and how sending it went."""

    id: str
    event_id: str
    rule_id: str
    channel: str
    target: str
    status: str
    attempts: int
    max_attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    log: list[dict[str, Any]]


class EventInfo(BaseModel):
    """A firing, reminder or resolution, with its deliveries."""

    id: str
    rule_id: str
    rule_name: str
    project_id: str | None
    group: str
    incident_id: str
    kind: str
    severity: str
    value: float | None
    threshold: float | None
    message: str
    details: dict[str, Any]
    notified: bool
    at: datetime
    deliveries: list[DeliveryInfo]


class RuleDetail(RuleInfo):
    """A rule whole: its spec, its states, its recent events and deliveries."""

    spec: dict[str, Any]
    states: list[StateInfo]
    events: list[EventInfo]
    deliveries: list[DeliveryInfo]


# --- rules -------------------------------------------------------------------------------------------------


def describe(spec: RuleSpec) -> str:
    """The condition in words: `error_rate > 0.05 over 5m`, `p95 up 50% vs the 1h before`, `drift verdict`."""
    c = spec.condition
    f = ", ".join(f"{k}={v}" for k, v in spec.filters.model_dump(exclude_none=True).items())
    where = f" [{f}]" if f else ""
    if c.type == "threshold":
        text = f"{spec.metric} {c.op} {c.value:g} over {format_duration(c.window)}"
    elif c.type == "change":
        base = format_duration(c.baseline or c.window)
        offset = format_duration(c.offset or c.window)
        window = format_duration(c.window)
        text = f"{spec.metric} {c.direction} {c.percent:g}% over {window} vs {base} ending {offset} earlier"
    else:
        text = "latest drift report " + (f"score {c.op} {c.value:g}" if c.op is not None else "says drift")
    if spec.for_ > timedelta(0):
        text += f" for {format_duration(spec.for_)}"
    if spec.group_by is not None:
        text += f" per {spec.group_by}"
    return text + where


def _check(platform: Platform, spec: RuleSpec) -> None:
    """What the spec cannot check alone: the metric exists, the webhooks may be reached, e-mail can be sent."""
    if spec.metric is not None:
        check_metric(spec.metric)
    guard = NetGuard(allow_private=platform.settings.upstream_allow_private)
    for i, channel in enumerate(spec.channels):
        if channel.webhook is not None:
            try:
                guard.check_url(channel.webhook)
            except InvalidInput as exc:
                raise InvalidInput(exc.message, details={"field": f"channels[{i}].webhook"}) from None
        elif not platform.settings.smtp_host:
            raise InvalidInput(
                "this server sends no e-mail: it has no SMTP server (setting smtp_host)",
                details={"field": f"channels[{i}].email"},
            )


def _spec_of(body: dict[str, Any]) -> RuleSpec:
    """A rule from a request body: the rule's fields, or `{"source": "<YAML>"}`."""
    if set(body) == {"source"}:
        if not isinstance(body["source"], str):
            raise InvalidInput("source is the rule's YAML text", details={"field": "source"})
        return parse(None, source=body["source"])
    return parse(body)


def find_rule(s: Session, actor: Actor, ref: str) -> AlertRule:
    """A rule by id, or by name in the caller's project (a server admin's names reach every project)."""
    row = s.get(AlertRule, ref)
    if row is None:
        q = select(AlertRule).where(AlertRule.name == ref)
        rows = list(s.scalars(q))
        own = [r for r in rows if r.project_id == actor.project_id]
        row = own[0] if own else (rows[0] if len(rows) == 1 and actor.is_admin else None)
    if row is None or not actor.sees(row.project_id):
        raise NotFound(f"alert rule {ref!r} not found")
    return row


def _rule_info(row: AlertRule, states: Sequence[AlertState]) -> RuleInfo:
    spec = RuleSpec.model_validate(row.spec)
    order = ("ok", "resolved", "pending", "firing")
    worst = max(states, key=lambda st: order.index(st.state) if st.state in order else 0, default=None)
    return RuleInfo(
        id=row.id,
        name=row.name,
        project_id=row.project_id,
        kind=row.kind,
        metric=row.metric,
        severity=row.severity,
        enabled=row.enabled,
        state=(worst.state if worst is not None else "ok") if row.enabled else "disabled",
        value=worst.value if worst is not None else None,
        evaluated_at=worst.evaluated_at if worst is not None else None,
        summary=describe(spec),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def create_rule(platform: Platform, actor: Actor, body: dict[str, Any]) -> RuleDetail:
    """Check and store a rule in the caller's project (its state starts `ok`)."""
    actor.require_in(actor.project_id, "member", "manage alert rules")
    spec = _spec_of(body)
    _check(platform, spec)
    rule_id, now = new_id("alr"), utcnow()
    with platform.db.session() as s:
        project = actor.project_id
        taken = select(AlertRule.id).where(
            AlertRule.name == spec.name,
            AlertRule.project_id.is_(None) if project is None else AlertRule.project_id == project,
        )
        if s.scalar(taken) is not None:
            raise Conflict(f"alert rule {spec.name!r} exists already", details={"field": "name"})
        count = s.scalar(select(func.count()).select_from(AlertRule).where(AlertRule.project_id == project)) or 0
        if count >= MAX_RULES_PER_PROJECT:
            raise InvalidInput(
                f"a project holds at most {MAX_RULES_PER_PROJECT} alert rules", details={"field": "name"}
            )
        s.add(_row(rule_id, project, spec, actor, now))
        s.add(AlertState(rule_id=rule_id, group_key="", project_id=project, state="ok", since=now))
        try:
            s.flush()
        except IntegrityError:
            raise Conflict(f"alert rule {spec.name!r} exists already", details={"field": "name"}) from None
        record_audit(
            s, actor, "alerts.rule.create", "alert_rule", rule_id, project_id=project, details={"name": spec.name}
        )
    return get_rule(platform, actor, rule_id)


def _row(rule_id: str, project: str | None, spec: RuleSpec, actor: Actor, now: datetime) -> AlertRule:
    return AlertRule(
        id=rule_id,
        project_id=project,
        name=spec.name,
        kind=spec.condition.type,
        metric=spec.metric,
        severity=spec.severity,
        enabled=spec.enabled,
        spec=spec.dump(),
        created_by=actor.label,
        created_at=now,
        updated_at=now,
    )


def replace_rule(platform: Platform, actor: Actor, ref: str, body: dict[str, Any]) -> RuleDetail:
    """Replace a rule's spec (its state and history stay; the next evaluation reads the new condition)."""
    spec = _spec_of(body)
    with platform.db.read_session() as s:
        rule_id = find_rule(s, actor, ref).id
    _check(platform, spec)  # outside the write transaction: it resolves webhook hosts
    with platform.db.session() as s:
        row = find_rule(s, actor, rule_id)
        actor.require_in(row.project_id, "member", "manage alert rules")
        if spec.name != row.name:
            clash = s.scalar(
                select(AlertRule.id).where(
                    AlertRule.name == spec.name,
                    AlertRule.project_id.is_(None)
                    if row.project_id is None
                    else AlertRule.project_id == row.project_id,
                )
            )
            if clash is not None:
                raise Conflict(f"alert rule {spec.name!r} exists already", details={"field": "name"})
        if RuleSpec.model_validate(row.spec).group_by != spec.group_by:  # other groups: the states start over
            s.execute(delete(AlertState).where(AlertState.rule_id == row.id))
            s.add(AlertState(rule_id=row.id, group_key="", project_id=row.project_id, state="ok", since=utcnow()))
        row.name, row.kind, row.metric = spec.name, spec.condition.type, spec.metric
        row.severity, row.enabled, row.spec, row.updated_at = spec.severity, spec.enabled, spec.dump(), utcnow()
        record_audit(s, actor, "alerts.rule.update", "alert_rule", row.id, project_id=row.project_id)
        rule_id = row.id
    return get_rule(platform, actor, rule_id)


def delete_rule(platform: Platform, actor: Actor, ref: str) -> None:
    """Delete a rule with its states, history and deliveries (queued ones are not sent)."""
    with platform.db.session() as s:
        row = find_rule(s, actor, ref)
        actor.require_in(row.project_id, "member", "manage alert rules")
        for table in (AlertDelivery, AlertEvent, AlertState):
            s.execute(delete(table).where(table.rule_id == row.id))
        s.delete(row)
        record_audit(
            s, actor, "alerts.rule.delete", "alert_rule", row.id, project_id=row.project_id, details={"name": row.name}
        )


def in_scope(actor: Actor, q: Any, column: Any) -> Any:
    """`q` limited to the rows whose project (`column`) the actor sees: its own and the global ones."""
    scope = actor.scope()
    if scope is None:
        return q
    projects = [p for p in scope if p is not None]
    return q.where(column.in_(projects) | column.is_(None))


def list_rules(platform: Platform, actor: Actor) -> list[RuleInfo]:
    """The rules the caller sees, by name, each with its state."""
    actor.require("viewer", "read alert rules")
    with platform.db.read_session() as s:
        rows = list(
            s.scalars(
                in_scope(actor, select(AlertRule), AlertRule.project_id).order_by(AlertRule.name).limit(MAX_LISTED)
            )
        )
        states: dict[str, list[AlertState]] = {}
        if rows:
            for st in s.scalars(select(AlertState).where(AlertState.rule_id.in_([r.id for r in rows]))):
                states.setdefault(st.rule_id, []).append(st)
        return [_rule_info(r, states.get(r.id, [])) for r in rows]


def get_rule(platform: Platform, actor: Actor, ref: str) -> RuleDetail:
    """One rule: its spec, states, and its latest events and deliveries."""
    actor.require("viewer", "read alert rules")
    with platform.db.read_session() as s:
        row = find_rule(s, actor, ref)
        states = list(s.scalars(select(AlertState).where(AlertState.rule_id == row.id).order_by(AlertState.group_key)))
        events = list(
            s.scalars(
                select(AlertEvent)
                .where(AlertEvent.rule_id == row.id)
                .order_by(AlertEvent.at.desc(), AlertEvent.id.desc())
                .limit(RECENT)
            )
        )
        deliveries = list(
            s.scalars(
                select(AlertDelivery)
                .where(AlertDelivery.rule_id == row.id)
                .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc())
                .limit(RECENT)
            )
        )
        info = _rule_info(row, states)
        event_views = event_infos(s, events, {row.id: row.name})
    return RuleDetail(
        **info.model_dump(),
        spec=row.spec,
        states=[_state_info(st) for st in states],
        events=event_views,
        deliveries=[_delivery_info(d) for d in deliveries],
    )


def _state_info(st: AlertState) -> StateInfo:
    return StateInfo(
        group=st.group_key,
        state=st.state,
        since=st.since,
        pending_since=st.pending_since,
        incident_id=st.incident_id,
        value=st.value,
        threshold=st.threshold,
        evaluated_at=st.evaluated_at,
        notified_at=st.notified_at,
    )


def _delivery_info(d: AlertDelivery) -> DeliveryInfo:
    return DeliveryInfo(
        id=d.id,
        event_id=d.event_id,
        rule_id=d.rule_id,
        channel=d.channel,
        target=d.target,
        status=d.status,
        attempts=d.attempts,
        max_attempts=d.max_attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        created_at=d.created_at,
        finished_at=d.finished_at,
        log=list(d.log or []),
    )


def event_infos(s: Session, events: Sequence[AlertEvent], names: dict[str, str]) -> list[EventInfo]:
    by_event: dict[str, list[DeliveryInfo]] = {}
    if events:
        q = select(AlertDelivery).where(AlertDelivery.event_id.in_([e.id for e in events])).order_by(AlertDelivery.id)
        for d in s.scalars(q):
            by_event.setdefault(d.event_id, []).append(_delivery_info(d))
    return [
        EventInfo(
            id=e.id,
            rule_id=e.rule_id,
            rule_name=names.get(e.rule_id, ""),
            project_id=e.project_id,
            group=e.group_key,
            incident_id=e.incident_id,
            kind=e.kind,
            severity=e.severity,
            value=e.value,
            threshold=e.threshold,
            message=e.message,
            details=e.details,
            notified=e.notified,
            at=e.at,
            deliveries=by_event.get(e.id, []),
        )
        for e in events
    ]


def list_events(
    platform: Platform, actor: Actor, *, rule: str | None = None, kind: str | None = None, limit: int = 100
) -> list[EventInfo]:
    """The history the caller sees, newest first: firings, reminders and resolutions with their deliveries."""
    actor.require("viewer", "read alert events")
    if not 1 <= limit <= MAX_LISTED:
        raise InvalidInput(f"limit must be between 1 and {MAX_LISTED}", details={"field": "limit"})
    if kind is not None and kind not in ("firing", "reminder", "resolved", "test"):
        raise InvalidInput(f"kind {kind!r} is not firing, reminder, resolved or test", details={"field": "kind"})
    with platform.db.read_session() as s:
        q = in_scope(actor, select(AlertEvent), AlertEvent.project_id)
        if rule is not None:
            q = q.where(AlertEvent.rule_id == find_rule(s, actor, rule).id)
        if kind is not None:
            q = q.where(AlertEvent.kind == kind)
        events = list(s.scalars(q.order_by(AlertEvent.at.desc(), AlertEvent.id.desc()).limit(limit)))
        ids = {e.rule_id for e in events}
        names = dict(s.execute(select(AlertRule.id, AlertRule.name).where(AlertRule.id.in_(ids))).all()) if ids else {}
        return event_infos(s, events, names)


def list_deliveries(
    platform: Platform, actor: Actor, *, rule: str | None = None, status: str | None = None, limit: int = 100
) -> list[DeliveryInfo]:
    """Notifications and how sending them went, newest first."""
    actor.require("viewer", "read alert deliveries")
    if not 1 <= limit <= MAX_LISTED:
        raise InvalidInput(f"limit must be between 1 and {MAX_LISTED}", details={"field": "limit"})
    if status is not None and status not in ("pending", "sending", "delivered", "failed"):
        raise InvalidInput(
            f"status {status!r} is not pending, sending, delivered or failed", details={"field": "status"}
        )
    with platform.db.read_session() as s:
        q = in_scope(actor, select(AlertDelivery), AlertDelivery.project_id)
        if rule is not None:
            q = q.where(AlertDelivery.rule_id == find_rule(s, actor, rule).id)
        if status is not None:
            q = q.where(AlertDelivery.status == status)
        rows = s.scalars(q.order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc()).limit(limit))
        return [_delivery_info(d) for d in rows]
