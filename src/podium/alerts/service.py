"""The alerts domain's logic: rules (create, replace, delete, read), their evaluation (each rule's state moved
by `engine.step`, firings and resolutions recorded as events, notifications queued as deliveries that the
`Deliverer` sends in the background) and the history.

Rules belong to the caller's project; viewers read, members write and evaluate. Evaluation by the server's loop
acts as the platform and covers every enabled rule; `evaluate` on request covers the caller's project's (every
project's for a server admin).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.alerts import engine, notify
from podium.alerts.engine import DriftSource, MetricSource, Reading, State
from podium.alerts.source import LatestDrift, MonitorMetrics, check_metric
from podium.alerts.spec import RuleSpec, format_duration, parse
from podium.alerts.store import AlertDelivery, AlertEvent, AlertLease, AlertRule, AlertState
from podium.auth.service import names_of, record_audit
from podium.core.db import utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.netguard import NetGuard
from podium.core.platform import Platform

log = logging.getLogger("podium.alerts")
MAX_LISTED = 500
MAX_RULES_PER_PROJECT = 1000
RECENT = 50  # events and deliveries a rule's detail shows
MAX_GROUPS = 100  # groups of one grouped rule evaluated at once
MAX_GROUP_CHARS = 200

# Called after an evaluation queued deliveries (the process's deliverers wake up); set by the domain's setup.
_wakers: list[Callable[[], None]] = []


def on_queued(wake: Callable[[], None]) -> Callable[[], None]:
    """Call `wake` whenever deliveries were queued in this process; returns a function that stops it."""
    _wakers.append(wake)
    return lambda: _wakers.remove(wake) if wake in _wakers else None


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


class RuleResult(BaseModel):
    """What evaluating one rule found."""

    rule_id: str
    rule_name: str
    group: str = ""  # the route, model or prompt of a grouped rule
    state: str
    value: float | None
    threshold: float | None
    summary: str
    event: str | None  # firing | reminder | resolved, when this evaluation recorded one
    error: str | None = None


class Evaluation(BaseModel):
    """An evaluation's results: each rule's, and the events it recorded (their deliveries are queued, not sent)."""

    at: datetime
    rules: list[RuleResult]
    events: list[EventInfo]


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


def _find(s: Session, actor: Actor, ref: str) -> AlertRule:
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
        rule_id = _find(s, actor, ref).id
    _check(platform, spec)  # outside the write transaction: it resolves webhook hosts
    with platform.db.session() as s:
        row = _find(s, actor, rule_id)
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
        row = _find(s, actor, ref)
        actor.require_in(row.project_id, "member", "manage alert rules")
        for table in (AlertDelivery, AlertEvent, AlertState):
            s.execute(delete(table).where(table.rule_id == row.id))
        s.delete(row)
        record_audit(
            s, actor, "alerts.rule.delete", "alert_rule", row.id, project_id=row.project_id, details={"name": row.name}
        )


def test_rule(platform: Platform, actor: Actor, ref: str) -> EventInfo:
    """Send a test notification to each of the rule's channels (recorded as a `test` event; the rule's state
    does not change), to check that a webhook or an address works."""
    with platform.db.session() as s:
        row = _find(s, actor, ref)
        actor.require_in(row.project_id, "member", "send test notifications")
        spec = RuleSpec.model_validate(row.spec)
        if not spec.channels:
            raise InvalidInput("the rule has no channels to test", details={"field": "channels"})
        st = s.get(AlertState, (row.id, ""))
        summary = f"a test notification, sent by {actor.label}: {describe(spec)}"
        reading = Reading(None, st.value if st else None, st.threshold if st else None, summary)
        outcome = engine.Outcome(State(), "test", True)
        event_id = _record(s, platform, row, spec, reading, outcome, new_id("inc"), utcnow(), "")
        record_audit(s, actor, "alerts.rule.test", "alert_rule", row.id, project_id=row.project_id)
        names = {row.id: row.name}
    for wake in list(_wakers):
        wake()
    with platform.db.read_session() as s:
        event = s.get(AlertEvent, event_id)
        assert event is not None
        return _event_infos(s, [event], names)[0]


def _scoped(actor: Actor, q: Any, column: Any) -> Any:
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
                _scoped(actor, select(AlertRule), AlertRule.project_id).order_by(AlertRule.name).limit(MAX_LISTED)
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
        row = _find(s, actor, ref)
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
        event_views = _event_infos(s, events, {row.id: row.name})
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


def _event_infos(s: Session, events: Sequence[AlertEvent], names: dict[str, str]) -> list[EventInfo]:
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
        q = _scoped(actor, select(AlertEvent), AlertEvent.project_id)
        if rule is not None:
            q = q.where(AlertEvent.rule_id == _find(s, actor, rule).id)
        if kind is not None:
            q = q.where(AlertEvent.kind == kind)
        events = list(s.scalars(q.order_by(AlertEvent.at.desc(), AlertEvent.id.desc()).limit(limit)))
        ids = {e.rule_id for e in events}
        names = dict(s.execute(select(AlertRule.id, AlertRule.name).where(AlertRule.id.in_(ids))).all()) if ids else {}
        return _event_infos(s, events, names)


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
        q = _scoped(actor, select(AlertDelivery), AlertDelivery.project_id)
        if rule is not None:
            q = q.where(AlertDelivery.rule_id == _find(s, actor, rule).id)
        if status is not None:
            q = q.where(AlertDelivery.status == status)
        rows = s.scalars(q.order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc()).limit(limit))
        return [_delivery_info(d) for d in rows]


# --- evaluation --------------------------------------------------------------------------------------------


def evaluate(platform: Platform, actor: Actor, *, rule: str | None = None) -> Evaluation:
    """Evaluate now the caller's project's enabled rules (one with `rule`; every project's for a server admin);
    notifications are queued and sent in the background, so this returns before any is delivered."""
    actor.require("member", "evaluate alert rules")
    with platform.db.read_session() as s:
        if rule is not None:
            rows = [_find(s, actor, rule)]
            if not rows[0].enabled:
                raise InvalidInput(
                    f"alert rule {rows[0].name!r} is disabled; enable it first", details={"field": "rule"}
                )
        else:
            q = _scoped(actor, select(AlertRule).where(AlertRule.enabled.is_(True)), AlertRule.project_id)
            rows = list(s.scalars(q.order_by(AlertRule.name)))
    return run_evaluation(platform, rows, MonitorMetrics(platform), LatestDrift(platform))


def evaluate_all(platform: Platform) -> Evaluation:
    """Evaluate every enabled rule as the platform (the server's loop)."""
    with platform.db.read_session() as s:
        rows = list(s.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)))
    return run_evaluation(platform, rows, MonitorMetrics(platform), LatestDrift(platform))


def take_turn(platform: Platform, holder: str, seconds: float, *, name: str = "evaluator") -> bool:
    """Whether `holder` (a server process) evaluates this round: it takes the lease when it is free or expired
    (or its own), for `seconds`; the other processes skip the round."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    with platform.db.session() as s:
        if s.get(AlertLease, name) is None:
            try:
                with s.begin_nested():
                    s.add(AlertLease(name=name, holder=holder, until=until))
                return True
            except IntegrityError:  # another process made it first
                pass
        won = s.execute(
            update(AlertLease)
            .where(AlertLease.name == name, (AlertLease.until <= now) | (AlertLease.holder == holder))
            .values(holder=holder, until=until)
            .execution_options(synchronize_session=False)
        )
        return bool(won.rowcount == 1)  # type: ignore[attr-defined]


def run_evaluation(
    platform: Platform, rows: Sequence[AlertRule], metrics: MetricSource, drift: DriftSource | None
) -> Evaluation:
    """Read each rule's condition (per group of a grouped rule), then move each state in a transaction of its
    own (the state row locked, so concurrent evaluations by several server processes record each firing once)."""
    now = utcnow()
    metrics = _Memo(metrics)
    results: list[RuleResult] = []
    event_ids: list[str] = []
    for row in rows:
        try:
            spec = RuleSpec.model_validate(row.spec)
            groups = _groups(platform, row, spec, metrics, now)
        except Exception as exc:  # a failing source keeps the states as they are; the next evaluation tries again
            results.append(_failed(row, "", exc))
            continue
        if not groups:
            quiet = f"no {spec.group_by} had traffic in the window"
            results.append(
                RuleResult(
                    rule_id=row.id,
                    rule_name=row.name,
                    state="ok",
                    value=None,
                    threshold=None,
                    summary=quiet,
                    event=None,
                )
            )
        for group in groups:
            try:
                reading = engine.read(spec, row.project_id, now, metrics, drift, group or None)
            except Exception as exc:
                results.append(_failed(row, group, exc))
                continue
            if group:
                reading = replace(reading, summary=f"{spec.group_by}={group}: {reading.summary}")
            try:
                result, event_id = _apply(platform, row, spec, reading, now, group)
            except IntegrityError:  # another process made this group's state at the same moment: its turn
                continue
            results.append(result)
            if event_id is not None:
                event_ids.append(event_id)
    events: list[EventInfo] = []
    if event_ids:
        with platform.db.read_session() as s:
            found = list(s.scalars(select(AlertEvent).where(AlertEvent.id.in_(event_ids)).order_by(AlertEvent.id)))
            events = _event_infos(s, found, {r.id: r.name for r in rows})
        if any(e.deliveries for e in events):
            for wake in list(_wakers):
                wake()
    return Evaluation(at=now, rules=results, events=events)


class _Memo:
    """One evaluation's metric reads, each asked once: rules on the same metric, filters and window (a warning
    and a critical rule on one figure) share it."""

    def __init__(self, inner: MetricSource):
        self.inner = inner
        self.values: dict[tuple[Any, ...], float | None] = {}
        self.seen: dict[tuple[Any, ...], list[str]] = {}

    def value(
        self, project_id: str | None, rule: RuleSpec, start: datetime, end: datetime, group: str | None = None
    ) -> float | None:
        """The inner source's value, read once per evaluation."""
        f = rule.filters
        key: tuple[Any, ...] = (project_id, rule.metric, f.route, f.model, f.prompt, rule.group_by, group, start, end)
        if key not in self.values:
            self.values[key] = self.inner.value(project_id, rule, start, end, group)
        return self.values[key]

    def groups(self, project_id: str | None, rule: RuleSpec, start: datetime, end: datetime) -> list[str]:
        """The inner source's groups, read once per evaluation."""
        key = (project_id, rule.filters.route, rule.filters.model, rule.filters.prompt, rule.group_by, start, end)
        if key not in self.seen:
            self.seen[key] = self.inner.groups(project_id, rule, start, end)
        return self.seen[key]


def _groups(platform: Platform, row: AlertRule, spec: RuleSpec, metrics: MetricSource, now: datetime) -> list[str]:
    """The groups to evaluate: "" for a rule without `group_by`; else the values with traffic in the window and
    those whose state is not `ok` (so a group that went quiet still resolves), at most `MAX_GROUPS`."""
    window = engine.window(spec)
    if spec.group_by is None or window is None:
        return [""]
    seen = metrics.groups(row.project_id, spec, now - window, now)
    with platform.db.read_session() as s:
        open_ = s.scalars(
            select(AlertState.group_key).where(
                AlertState.rule_id == row.id, AlertState.state != "ok", AlertState.group_key != ""
            )
        )
        held = sorted(open_)
    return list(dict.fromkeys([*held, *sorted(g for g in seen if len(g) <= MAX_GROUP_CHARS)]))[:MAX_GROUPS]


def _failed(row: AlertRule, group: str, exc: Exception) -> RuleResult:
    log.warning("alert rule %s could not be read: %s", row.id, exc)
    error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    return RuleResult(
        rule_id=row.id,
        rule_name=row.name,
        group=group,
        state="unknown",
        value=None,
        threshold=None,
        summary="",
        event=None,
        error=error,
    )


def _apply(
    platform: Platform, row: AlertRule, spec: RuleSpec, reading: Reading, now: datetime, group: str
) -> tuple[RuleResult, str | None]:
    with platform.db.session() as s:
        st = s.scalars(
            select(AlertState).where(AlertState.rule_id == row.id, AlertState.group_key == group).with_for_update()
        ).first()
        if st is None:  # a group seen for the first time (or the rule was deleted meanwhile)
            if s.get(AlertRule, row.id) is None:
                gone = RuleResult(
                    rule_id=row.id,
                    rule_name=row.name,
                    group=group,
                    state="deleted",
                    value=None,
                    threshold=None,
                    summary=reading.summary,
                    event=None,
                )
                return gone, None
            st = AlertState(
                rule_id=row.id, group_key=group, project_id=row.project_id, state="ok", since=now, version=0
            )
            s.add(st)
        current = State(
            state=st.state,
            since=st.since,
            pending_since=st.pending_since,
            incident_id=st.incident_id,
            incident_notified=st.incident_notified,
            notified_at=st.notified_at,
        )
        outcome = engine.step(spec, current, reading, now, new_id("inc"))
        nxt = outcome.state
        st.state, st.since, st.pending_since = nxt.state, nxt.since or now, nxt.pending_since
        st.incident_id, st.incident_notified, st.notified_at = nxt.incident_id, nxt.incident_notified, nxt.notified_at
        if reading.holds is not None or spec.no_data != "keep":
            st.value, st.threshold = reading.value, reading.threshold
        st.evaluated_at = now
        st.version += 1
        event_id = None
        if outcome.event is not None:
            assert nxt.incident_id is not None
            event_id = _record(s, platform, row, spec, reading, outcome, nxt.incident_id, now, group)
    result = RuleResult(
        rule_id=row.id,
        rule_name=row.name,
        group=group,
        state=nxt.state,
        value=reading.value,
        threshold=reading.threshold,
        summary=reading.summary,
        event=outcome.event,
    )
    return result, event_id


def _record(
    s: Session,
    platform: Platform,
    row: AlertRule,
    spec: RuleSpec,
    reading: Reading,
    outcome: engine.Outcome,
    incident_id: str,
    now: datetime,
    group: str,
) -> str:
    """Write the event and queue one delivery per channel (when it notifies)."""
    assert outcome.event is not None
    event_id = new_id("ale")
    details = dict(reading.details)
    if outcome.held_back:
        details["held_back"] = outcome.held_back
    if not spec.channels:
        details["held_back"] = "the rule has no channels"
    s.add(
        AlertEvent(
            id=event_id,
            rule_id=row.id,
            project_id=row.project_id,
            group_key=group,
            incident_id=incident_id,
            kind=outcome.event,
            severity=spec.severity,
            value=reading.value,
            threshold=reading.threshold,
            message=reading.summary,
            details=details,
            notified=outcome.notify,
            at=now,
        )
    )
    if not outcome.notify:
        return event_id
    project = "global"
    if row.project_id is not None:
        project = names_of(s, {"project": [row.project_id]}).get(("project", row.project_id), row.project_id)
    base = platform.settings.effective_url
    notice = notify.Notice(
        event_id=event_id,
        incident_id=incident_id,
        kind=outcome.event,
        rule_id=row.id,
        rule_name=row.name,
        project=project,
        severity=spec.severity,
        metric=spec.metric,
        condition=spec.condition.type,
        value=reading.value,
        threshold=reading.threshold,
        summary=reading.summary,
        filters={**spec.filters.model_dump(exclude_none=True), **({spec.group_by: group} if spec.group_by else {})},
        at=now,
        links={"rule": f"{base}/alerts/rules/{row.id}", "events": f"{base}/api/alerts/events?rule={row.id}"},
    )
    attempts = platform.settings.alerts_max_attempts
    for channel in spec.channels:
        payload = notify.webhook_payload(notice) if channel.kind == "webhook" else notify.email_message(notice)
        s.add(
            AlertDelivery(
                id=new_id("ald"),
                event_id=event_id,
                rule_id=row.id,
                project_id=row.project_id,
                channel=channel.kind,
                target=channel.target,
                status="pending",
                attempts=0,
                max_attempts=attempts,
                log=[],
                payload=payload,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return event_id
