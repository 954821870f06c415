"""Tables of the alerts domain: rules, each rule's current state per group, the history of firings and
resolutions, and the notifications (deliveries) those sent, with their attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow


class AlertRule(Base):
    """A rule of one project: the checked spec (`spec`, as `RuleSpec.dump` writes it) and what lists show."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_alert_rule_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # alr_…
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(10))  # threshold | change | drift
    metric: Mapped[str | None] = mapped_column(String(200), default=None)
    severity: Mapped[str] = mapped_column(String(10), default="warning")
    enabled: Mapped[bool] = mapped_column(default=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertState(Base):
    """A rule's state for one group (`group_key`, "" for the rule's whole traffic): ok, pending (the condition
    holds, not yet for `for`), firing or resolved; `version` guards concurrent evaluations (one wins)."""

    __tablename__ = "alert_states"

    rule_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_key: Mapped[str] = mapped_column(String(200), primary_key=True, default="")
    project_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    state: Mapped[str] = mapped_column(String(10), default="ok")
    since: Mapped[datetime] = mapped_column(default=utcnow)  # when it entered `state`
    pending_since: Mapped[datetime | None] = mapped_column(default=None)
    incident_id: Mapped[str | None] = mapped_column(String(40), default=None)  # the open (or last) incident
    incident_notified: Mapped[bool] = mapped_column(default=False)  # did its firing notify anyone
    value: Mapped[float | None] = mapped_column(default=None)
    threshold: Mapped[float | None] = mapped_column(default=None)
    evaluated_at: Mapped[datetime | None] = mapped_column(default=None)
    notified_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(default=0)


class AlertEvent(Base):
    """One firing, reminder (still firing after the cool-down) or resolution of a rule's group."""

    __tablename__ = "alert_events"
    __table_args__ = (
        Index("ix_alert_events_rule", "rule_id", "at"),
        Index("ix_alert_events_project", "project_id", "at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ale_…
    rule_id: Mapped[str] = mapped_column(String(40))
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    group_key: Mapped[str] = mapped_column(String(200), default="")
    incident_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # firing | reminder | resolved
    severity: Mapped[str] = mapped_column(String(10))
    value: Mapped[float | None] = mapped_column(default=None)
    threshold: Mapped[float | None] = mapped_column(default=None)
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notified: Mapped[bool] = mapped_column(default=False)  # False: no channel, or held back by the cool-down
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertDelivery(Base):
    """One notification of an event to one channel, sent in the background with retries: `pending` (waiting
    for its next attempt at `next_attempt_at`), `sending` (claimed until `lease_until`), `delivered` or
    `failed`; `log` holds each attempt's outcome."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ald_…
    event_id: Mapped[str] = mapped_column(String(40), index=True)
    rule_id: Mapped[str] = mapped_column(String(40), index=True)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    channel: Mapped[str] = mapped_column(String(10))  # webhook | email
    target: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=6)
    last_status: Mapped[int | None] = mapped_column(default=None)  # the HTTP status or SMTP reply code
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    log: Mapped[list[Any]] = mapped_column(default=list)
    payload: Mapped[dict[str, Any]] = mapped_column()
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AlertLease(Base):
    """Which server process evaluates the rules this round (`holder` until `until`), so a server of several
    processes evaluates once per interval, not once per process."""

    __tablename__ = "alert_leases"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(80))
    until: Mapped[datetime] = mapped_column()
