"""Limits on keys, projects and users (allowed models, requests and tokens per minute, daily and monthly
budgets): set, show, list and remove, audited; and the loaders the gateway's governor snapshots.

Budgets are given in USD and stored as integer micro-dollars (at most six decimals, so the conversion is
exact). A scope is `key` (id or `pk-…` prefix), `project` or `user` (name or id); limits at every level
apply to a request at once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, tuple_

from podium.auth.service import key_ref, names_of, project_ref, record_audit, user_ref
from podium.core.config import Settings
from podium.core.db import Database, utcnow
from podium.core.errors import ConfigError, InvalidInput, NotFound, validated
from podium.core.identity import Actor
from podium.core.money import micros, usd
from podium.core.platform import Platform
from podium.gateway.store import GatewayLimit, Spend

Scope = Literal["key", "project", "user"]
SCOPES: tuple[Scope, ...] = ("key", "project", "user")


class LimitSpec(BaseModel):
    """The limits to set on one scope; a field left out (or null) means no limit of that kind."""

    model_config = ConfigDict(extra="forbid")

    allowed_models: list[str] | None = Field(
        None, description="Model names or glob patterns (`gpt-4o*`) this scope may call; null: any."
    )
    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (prompt + completion).")
    daily_budget_usd: Decimal | None = Field(None, ge=0, decimal_places=6, description="USD per UTC day.")
    monthly_budget_usd: Decimal | None = Field(None, ge=0, decimal_places=6, description="USD per UTC month.")


class LimitInfo(BaseModel):
    """One scope's limits and what it has spent in the current day and month."""

    scope: str
    scope_id: str
    name: str
    allowed_models: list[str] | None
    rpm: int | None
    tpm: int | None
    daily_budget_usd: Decimal | None
    monthly_budget_usd: Decimal | None
    spent_today_usd: Decimal
    spent_this_month_usd: Decimal
    updated_by: str
    updated_at: datetime


def to_micros(amount: Decimal | None) -> int | None:
    """A USD decimal (at most six places) as micro-dollars."""
    return None if amount is None else micros(amount)


def _usd(amount: int | None) -> Decimal | None:
    return None if amount is None else usd(amount)


def day_period(now: datetime) -> str:
    """The spend ledger's period key for `now`'s UTC day."""
    d = now if now.tzinfo is UTC else now.astimezone(UTC)
    return f"d:{d.year:04d}-{d.month:02d}-{d.day:02d}"  # not strftime: this runs on every governed request


def month_period(now: datetime) -> str:
    """The spend ledger's period key for `now`'s UTC month."""
    d = now if now.tzinfo is UTC else now.astimezone(UTC)
    return f"m:{d.year:04d}-{d.month:02d}"


_last_periods: tuple[date, str, str] = (date.min, "", "")


def periods(now: datetime) -> tuple[str, str]:
    """`day_period(now)` and `month_period(now)`, remembered for the current day (every governed request
    asks, several times)."""
    global _last_periods
    d = now if now.tzinfo is UTC else now.astimezone(UTC)
    day = d.date()
    last = _last_periods
    if last[0] != day:
        last = _last_periods = (day, day_period(d), month_period(d))
    return last[1], last[2]


def parse_limits(data: Any) -> LimitSpec:
    """Validate a limits body; `InvalidInput` names the first wrong field."""
    spec = validated(LimitSpec, data, "limits", default="limits")
    for pattern in spec.allowed_models or []:
        if not pattern.strip():
            raise InvalidInput(
                "limits field 'allowed_models': names must be non-empty", details={"field": "allowed_models"}
            )
    return spec


def _check_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise InvalidInput(f"unknown scope {scope!r}; use one of: {', '.join(SCOPES)}", details={"field": "scope"})
    return scope


def _resolve(session: Any, scope: Scope, ref: str) -> tuple[str, str, str | None]:
    """(scope id, display name, project id) of a key, project or user reference."""
    if scope == "key":
        k = key_ref(session, ref)
        return k.id, k.prefix, k.project_id
    if scope == "project":
        p = project_ref(session, ref)
        return p.id, p.name, p.id
    u = user_ref(session, ref)
    return u.id, u.name, None


def _names(session: Any, rows: Iterable[GatewayLimit]) -> dict[tuple[str, str], str]:
    wanted: dict[str, list[str]] = {s: [] for s in SCOPES}
    for r in rows:
        wanted[r.scope].append(r.scope_id)
    return names_of(session, wanted)


def _spent(session: Any, keys: list[tuple[str, str]], now: datetime) -> dict[tuple[str, str, str], int]:
    if not keys:
        return {}
    periods = [day_period(now), month_period(now)]
    q = select(Spend).where(tuple_(Spend.scope, Spend.scope_id).in_(keys), Spend.period.in_(periods))
    return {(r.scope, r.scope_id, r.period): r.spent_micros for r in session.scalars(q)}


def _info(row: GatewayLimit, name: str, spent: dict[tuple[str, str, str], int], now: datetime) -> LimitInfo:
    return LimitInfo(
        scope=row.scope,
        scope_id=row.scope_id,
        name=name,
        allowed_models=row.allowed_models,
        rpm=row.rpm,
        tpm=row.tpm,
        daily_budget_usd=_usd(row.daily_budget_micros),
        monthly_budget_usd=_usd(row.monthly_budget_micros),
        spent_today_usd=usd(spent.get((row.scope, row.scope_id, day_period(now)), 0)),
        spent_this_month_usd=usd(spent.get((row.scope, row.scope_id, month_period(now)), 0)),
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def check_shared_counters(settings: Settings, spec: LimitSpec | None = None) -> None:
    """Rates and budgets are counted in memory by each server process unless Redis is shared: with several
    workers and no Redis, each would let through the whole limit. Refuse rather than over-spend."""
    counted = spec is None or any(
        v is not None for v in (spec.rpm, spec.tpm, spec.daily_budget_usd, spec.monthly_budget_usd)
    )
    if counted and settings.workers > 1 and not settings.redis_url:
        raise InvalidInput(
            f"rate limits and budgets need redis_url when the server runs {settings.workers} workers (each would"
            " count on its own and let the whole limit through); set redis_url or run one worker",
            details={"field": "redis_url"},
        )


def check_stored_limits(settings: Settings, db: Database) -> None:
    """At start: the stored rates and budgets can be enforced by this server's shape (`check_shared_counters`)."""
    if settings.workers <= 1 or settings.redis_url:
        return
    counted = [
        f"{row.scope} {row.scope_id}"
        for row in load_limits(db)
        if any(v is not None for v in (row.rpm, row.tpm, row.daily_budget_micros, row.monthly_budget_micros))
    ]
    if counted:
        raise ConfigError(
            f"{len(counted)} rate limits or budgets are set ({', '.join(counted[:3])}…) but {settings.workers} workers"
            " without redis_url would each let the whole limit through: set redis_url, or run one worker"
        )


def set_limits(platform: Platform, actor: Actor, scope: str, ref: str, data: Any) -> LimitInfo:
    """Set (replace) the limits of one key, project or user (admin); audited."""
    actor.require_admin("set gateway limits")
    scope = _check_scope(scope)
    spec = parse_limits(data)
    check_shared_counters(platform.settings, spec)
    now = utcnow()
    with platform.db.session() as s:
        scope_id, name, project_id = _resolve(s, scope, ref)
        row = s.get(GatewayLimit, (scope, scope_id))
        if row is None:
            row = GatewayLimit(scope=scope, scope_id=scope_id)
            s.add(row)
        row.allowed_models = spec.allowed_models
        row.rpm = spec.rpm
        row.tpm = spec.tpm
        row.daily_budget_micros = to_micros(spec.daily_budget_usd)
        row.monthly_budget_micros = to_micros(spec.monthly_budget_usd)
        row.updated_by = actor.label
        row.updated_at = now
        s.flush()
        record_audit(
            s,
            actor,
            "gateway.limits.set",
            f"{scope}_limits",
            scope_id,
            project_id=project_id,
            details=spec.model_dump(mode="json"),
        )
        return _info(row, name, _spent(s, [(scope, scope_id)], now), now)


def get_limits(platform: Platform, actor: Actor, scope: str, ref: str) -> LimitInfo:
    """One scope's limits and current spend."""
    actor.require("viewer", "read gateway limits")
    scope = _check_scope(scope)
    now = utcnow()
    with platform.db.read_session() as s:
        scope_id, name, project_id = _resolve(s, scope, ref)
        if not _visible(actor, scope, scope_id, project_id):
            raise NotFound(f"{scope} {ref!r} not found")
        row = s.get(GatewayLimit, (scope, scope_id))
        if row is None:
            raise NotFound(f"{scope} {ref!r} has no limits; set them with `podium limits set {scope} {ref} …`")
        return _info(row, name, _spent(s, [(scope, scope_id)], now), now)


def _visible(actor: Actor, scope: str, scope_id: str, project_id: str | None) -> bool:
    """Limits and spend a caller may read: a server admin all; others their project's, its keys', and their own."""
    if actor.is_admin:
        return True
    principal = actor.principal
    if principal is None:
        return False
    if scope == "project":
        return scope_id == principal.project_id
    if scope == "key":
        return project_id == principal.project_id
    return scope_id == principal.user_id


def list_limits(platform: Platform, actor: Actor) -> list[LimitInfo]:
    """The scopes with limits the caller may read (see `_visible`), with current spend."""
    actor.require("viewer", "read gateway limits")
    now = utcnow()
    with platform.db.read_session() as s:
        rows = list(s.scalars(select(GatewayLimit).order_by(GatewayLimit.scope, GatewayLimit.scope_id)))
        rows = [r for r in rows if _visible(actor, r.scope, r.scope_id, _key_project(s, r))]
        names = _names(s, rows)
        spent = _spent(s, [(r.scope, r.scope_id) for r in rows], now)
        return [_info(r, names.get((r.scope, r.scope_id), r.scope_id), spent, now) for r in rows]


def delete_limits(platform: Platform, actor: Actor, scope: str, ref: str) -> None:
    """Remove one scope's limits (admin); audited."""
    actor.require_admin("remove gateway limits")
    scope = _check_scope(scope)
    with platform.db.session() as s:
        scope_id, _, project_id = _resolve(s, scope, ref)
        row = s.get(GatewayLimit, (scope, scope_id))
        if row is None:
            raise NotFound(f"{scope} {ref!r} has no limits")
        s.delete(row)
        record_audit(s, actor, "gateway.limits.delete", f"{scope}_limits", scope_id, project_id=project_id)


# --- what the governor snapshots (called from its refresh thread) ---------------------------------


def load_limits(db: Database) -> list[GatewayLimit]:
    """Every limits row, detached."""
    with db.read_session() as s:
        rows = list(s.scalars(select(GatewayLimit)))
        s.expunge_all()
        return rows


def load_spend(db: Database, keys: list[tuple[str, str]], now: datetime) -> dict[tuple[str, str, str], int]:
    """Ledger totals for the current day and month of the given scopes."""
    with db.read_session() as s:
        return _spent(s, keys, now)


def model_allowed(patterns: Iterable[str], model: str) -> bool:
    """True if `model` matches one of the names or glob patterns."""
    return any(p == model or fnmatch.fnmatchcase(model, p) for p in patterns)


def _key_project(session: Any, row: GatewayLimit) -> str | None:
    """The project of a key-scoped limit's key (None for other scopes)."""
    if row.scope != "key":
        return None
    try:
        return str(key_ref(session, row.scope_id).project_id)
    except NotFound:
        return None
