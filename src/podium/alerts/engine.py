"""The rule engine without the database: what a rule reads now (`read`), and what that does to its state
(`step`), so the transitions can be read (and reasoned about) in one place.

States: `ok` → (`pending` while the condition has held less than `for`) → `firing` → `resolved` → `ok`.

De-duplication and the cool-down (the choice, in full):
- one incident per rule and group: while it is firing, re-evaluations record nothing new; the incident's id
  stays on the state until it resolves;
- a still-firing incident notifies again (a `reminder` event) only once `cooldown` has passed since the
  group's last notification; `cooldown: 0` sends no reminders;
- a new firing within `cooldown` of the group's last notification (a flapping rule) is recorded, but held
  back: its event says `notified: false` and why;
- a resolution notifies exactly when its incident's firing did, so nobody receives a "resolved" for an
  alert they never got.
No data (no traffic in the window, no drift report) is the rule's `no_data`: `ok` (the condition does not
hold), `alert` (it does) or `keep` (nothing changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from podium.alerts.spec import Change, Drift, RuleSpec, Threshold, compare, format_duration


class MetricSource(Protocol):
    """A monitor metric over a time range, with the rule's project and filters (None: no data)."""

    def value(
        self, project_id: str | None, rule: RuleSpec, start: datetime, end: datetime, group: str | None = None
    ) -> float | None:
        """The rule's metric from `start` to `end` (of one `group` of the rule's `group_by`)."""

    def groups(self, project_id: str | None, rule: RuleSpec, start: datetime, end: datetime) -> list[str]:
        """The values of the rule's `group_by` that had traffic from `start` to `end`."""


@dataclass(frozen=True)
class DriftReading:
    """What the latest drift report says."""

    report_id: str
    drifted: bool
    score: float | None
    at: datetime


class DriftSource(Protocol):
    """The latest drift report of a project (None: there is none)."""

    def latest(self, project_id: str | None, rule: RuleSpec) -> DriftReading | None:
        """The newest report the rule watches."""


@dataclass(frozen=True)
class Reading:
    """A rule's condition now: `holds` None means no data."""

    holds: bool | None
    value: float | None
    threshold: float | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def window(rule: RuleSpec) -> timedelta | None:
    """The window a metric rule reads now (where a grouped rule finds its groups)."""
    c = rule.condition
    return None if isinstance(c, Drift) else c.window


def _fmt(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def read(
    rule: RuleSpec,
    project_id: str | None,
    now: datetime,
    metrics: MetricSource,
    drift: DriftSource | None,
    group: str | None = None,
) -> Reading:
    """Evaluate the rule's condition as of `now` (for one `group` of a grouped rule)."""
    c = rule.condition
    if isinstance(c, Threshold):
        v = metrics.value(project_id, rule, now - c.window, now, group)
        text = f"{rule.metric} = {_fmt(v)} over {format_duration(c.window)} (threshold {c.op} {c.value:.4g})"
        return Reading(None if v is None else compare(v, c.op, c.value), v, c.value, text)
    if isinstance(c, Change):
        return _change(rule, c, project_id, now, metrics, group)
    assert isinstance(c, Drift)
    if drift is None:
        return Reading(None, None, c.value, "drift reports are not available on this server")
    latest = drift.latest(project_id, rule)
    if latest is None or (c.max_age is not None and now - latest.at > c.max_age):
        return Reading(None, None, c.value, "no recent drift report")
    details = {"report": latest.report_id, "drifted": latest.drifted, "report_at": latest.at.isoformat()}
    if c.op is None or c.value is None:
        text = (
            f"drift report {latest.report_id}: {'drift' if latest.drifted else 'no drift'} (score {_fmt(latest.score)})"
        )
        return Reading(latest.drifted, latest.score, None, text, details)
    if latest.score is None:
        return Reading(None, None, c.value, f"drift report {latest.report_id} has no score", details)
    text = f"drift score = {latest.score:.4g} (threshold {c.op} {c.value:.4g}), report {latest.report_id}"
    return Reading(compare(latest.score, c.op, c.value), latest.score, c.value, text, details)


def _change(
    rule: RuleSpec, c: Change, project_id: str | None, now: datetime, metrics: MetricSource, group: str | None
) -> Reading:
    """The window's value against the baseline window's: the threshold reported is the value the window would
    have to pass (the baseline moved by `percent` in the rule's direction)."""
    current = metrics.value(project_id, rule, now - c.window, now, group)
    base_end = now - (c.offset if c.offset is not None else c.window)
    base_start = base_end - (c.baseline if c.baseline is not None else c.window)
    baseline = metrics.value(project_id, rule, base_start, base_end, group)
    factor = c.percent / 100
    bound = None if baseline is None else baseline * (1 - factor if c.direction == "down" else 1 + factor)
    details: dict[str, Any] = {
        "baseline": baseline,
        "baseline_from": base_start.isoformat(),
        "baseline_to": base_end.isoformat(),
    }
    if current is None or baseline is None:
        text = f"{rule.metric} = {_fmt(current)} against a baseline of {_fmt(baseline)}"
        return Reading(None, current, bound, text, details)
    if baseline == 0:
        change = 0.0 if current == 0 else None  # from nothing to something: an unbounded rise
        rose, fell = current > 0, current < 0
    else:
        change = (current - baseline) / abs(baseline) * 100
        rose, fell = change > c.percent, change < -c.percent
    holds = {"up": rose, "down": fell, "either": rose or fell}[c.direction]
    details["change_percent"] = change
    pct = "an unbounded change" if change is None else f"{change:+.1f}%"
    text = (
        f"{rule.metric} = {current:.4g} over {format_duration(c.window)}, {pct} against {baseline:.4g}"
        f" (threshold {c.direction} {c.percent:g}%)"
    )
    return Reading(holds, current, bound, text, details)


Kind = Literal["firing", "reminder", "resolved", "test"]  # a test: sent on request, no state changes


@dataclass
class State:
    """A rule group's state as `step` reads and writes it."""

    state: str = "ok"
    since: datetime | None = None
    pending_since: datetime | None = None
    incident_id: str | None = None
    incident_notified: bool = False
    notified_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What one evaluation changed: the next state, and the event to record (if any) and whether it notifies."""

    state: State
    event: Kind | None = None
    notify: bool = False
    held_back: str | None = None  # why a firing did not notify


def step(rule: RuleSpec, current: State, reading: Reading, now: datetime, new_incident: str) -> Outcome:
    """The transition of one evaluation (see the module's docstring for the rules)."""
    holds = reading.holds
    if holds is None:
        if rule.no_data == "keep":
            return Outcome(current)
        holds = rule.no_data == "alert"
    s = State(**current.__dict__)
    cooled = s.notified_at is None or now - s.notified_at >= rule.cooldown
    if holds:
        if s.state in ("ok", "resolved", "pending"):
            if s.state != "pending":
                s.pending_since = now
            assert s.pending_since is not None
            if now - s.pending_since < rule.for_:
                if s.state != "pending":
                    s.state, s.since = "pending", now
                return Outcome(s)
            s.state, s.since, s.pending_since, s.incident_id = "firing", now, None, new_incident
            notify = cooled and bool(rule.channels)
            s.incident_notified = notify
            if notify:
                s.notified_at = now
            held = None
            if not cooled:
                assert s.notified_at is not None
                ago = format_duration(timedelta(seconds=int((now - s.notified_at).total_seconds())))
                held = f"notified {ago} ago, within the cool-down of {format_duration(rule.cooldown)}"
            return Outcome(s, "firing", notify, held)
        # firing: one incident; a reminder once the cool-down has passed since the last notification
        if rule.cooldown > timedelta(0) and cooled and rule.channels:
            s.notified_at = now
            s.incident_notified = True
            return Outcome(s, "reminder", True)
        return Outcome(s)
    if s.state == "firing":
        s.state, s.since = "resolved", now
        notify = s.incident_notified and bool(rule.channels)
        if notify:
            s.notified_at = now
        return Outcome(s, "resolved", notify)
    if s.state in ("pending", "resolved"):
        s.state, s.since, s.pending_since = "ok", now, None
    return Outcome(s)
