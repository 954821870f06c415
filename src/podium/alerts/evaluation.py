"""Evaluating alert rules: each rule's condition read (per group of a grouped rule), its state moved by
`engine.step` in a transaction of its own, firings, reminders and resolutions recorded as events, and their
notifications queued as deliveries that the `Deliverer` sends in the background; test notifications; the lease
that lets one process of a server evaluate each round.

Evaluation by the server's loop acts as the platform and covers every enabled rule; `evaluate` on request covers
the caller's project's (every project's for a server admin).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.alerts import engine, notify
from podium.alerts.engine import DriftSource, MetricSource, Reading, State
from podium.alerts.ruleset import EventInfo, describe, event_infos, find_rule, in_scope
from podium.alerts.source import LatestDrift, MonitorMetrics
from podium.alerts.spec import RuleSpec
from podium.alerts.store import AlertDelivery, AlertEvent, AlertLease, AlertRule, AlertState
from podium.auth.service import names_of, record_audit
from podium.core.db import utcnow
from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform

log = logging.getLogger("podium.alerts")
MAX_GROUPS = 100  # groups of one grouped rule evaluated at once
MAX_GROUP_CHARS = 200

# Called after an evaluation queued deliveries (the process's deliverers wake up); set by the domain's setup.
_wakers: list[Callable[[], None]] = []


def on_queued(wake: Callable[[], None]) -> Callable[[], None]:
    """Call `wake` whenever deliveries were queued in this process; returns a function that stops it."""
    _wakers.append(wake)
    return lambda: _wakers.remove(wake) if wake in _wakers else None


class RuleResult(BaseModel):
    """What evaluating one rule found."""

    rule_id: str
    rule_name: str
    group: str = ""  # the route, model or prompt of a grouped rule
    state: str
    value: float | None
    threshold: float | None
    summary: str
    event: str | None  # firing, reminder or resolved, when this evaluation recorded one
    error: str | None = None


class Evaluation(BaseModel):
    """An evaluation's results: each rule's, and the events it recorded (their deliveries are queued, not sent)."""

    at: datetime
    rules: list[RuleResult]
    events: list[EventInfo]


# --- evaluation --------------------------------------------------------------------------------------------


def evaluate(platform: Platform, actor: Actor, *, rule: str | None = None) -> Evaluation:
    """Evaluate now the caller's project's enabled rules (one with `rule`; every project's for a server admin);
    notifications are queued and sent in the background, so this returns before any is delivered."""
    actor.require("member", "evaluate alert rules")
    with platform.db.read_session() as s:
        if rule is not None:
            rows = [find_rule(s, actor, rule)]
            if not rows[0].enabled:
                raise InvalidInput(
                    f"alert rule {rows[0].name!r} is disabled; enable it first", details={"field": "rule"}
                )
        else:
            q = in_scope(actor, select(AlertRule).where(AlertRule.enabled.is_(True)), AlertRule.project_id)
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


def prune(platform: Platform, older_than: timedelta, *, now: datetime | None = None, limit: int = 10_000) -> int:
    """Delete events older than `older_than` with their finished notifications (at most `limit` a call), except
    those of incidents still open; returns how many events went."""
    cutoff = (now or utcnow()) - older_than
    with platform.db.session() as s:
        open_ = select(AlertState.incident_id).where(AlertState.state.in_(("pending", "firing")))
        old = select(AlertEvent.id).where(
            AlertEvent.at < cutoff, AlertEvent.incident_id.not_in(open_.where(AlertState.incident_id.is_not(None)))
        )
        ids = list(s.scalars(old.limit(limit)))
        if not ids:
            return 0
        waiting = select(AlertDelivery.event_id).where(
            AlertDelivery.event_id.in_(ids), AlertDelivery.status.in_(("pending", "sending"))
        )
        ids = sorted(set(ids) - set(s.scalars(waiting)))
        s.execute(delete(AlertDelivery).where(AlertDelivery.event_id.in_(ids)))
        s.execute(delete(AlertEvent).where(AlertEvent.id.in_(ids)))
        return len(ids)


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
            events = event_infos(s, found, {r.id: r.name for r in rows})
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


def test_rule(platform: Platform, actor: Actor, ref: str) -> EventInfo:
    """Send a test notification to each of the rule's channels (recorded as a `test` event; the rule's state
    does not change), to check that a webhook or an address works."""
    with platform.db.session() as s:
        row = find_rule(s, actor, ref)
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
        return event_infos(s, [event], names)[0]
