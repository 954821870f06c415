"""Governance on the hot path: allowed models, requests and tokens per minute, and daily and monthly
budgets of the calling key, its project and its user, checked together.

Budgets hold exactly: before the call, the request's largest possible cost (its prompt's upper bound in
tokens plus `max_tokens`, at the dearest deployment it may reach) is reserved against every budget; after
it, the reservation is settled to the actual cost (or released, for a failure or a client that went
away). Limits and ledger totals come from a snapshot a background thread refreshes, so a request never
waits on the database. In-process counters (the default) are exact for one worker; with Redis
(`PODIUM_REDIS_URL`) every worker and host reserves from the same counters.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from podium.core.db import Database, utcnow
from podium.core.identity import Principal
from podium.core.money import format_micros
from podium.core.periodic import run_every
from podium.gateway.counters import Check, Counters, MemoryCounters
from podium.gateway.errors import GatewayError
from podium.gateway.limits import load_limits, load_spend, model_allowed, periods
from podium.gateway.store import SPEND_COUNTER
from podium.tracing.writer import CounterKey, TraceWriter

log = logging.getLogger("podium.gateway.governor")

DAY_TTL = 2 * 86_400
MONTH_TTL = 33 * 86_400


@dataclass(frozen=True)
class ScopeLimits:
    """The limits of one key, project or user, as the hot path reads them."""

    scope: str
    scope_id: str
    allowed_models: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    daily: int | None  # micro-dollars
    monthly: int | None


@dataclass
class Ticket:
    """What one request reserved, to settle when it ends."""

    tpm_keys: list[str] = field(default_factory=list)
    tokens: int = 0
    spend_keys: list[str] = field(default_factory=list)
    cost: int = 0
    settled: bool = False


class _Step(NamedTuple):
    """One counter a caller's request checks: its scope and kind, key and limit (and, for a budget, the
    spend the counter does not hold itself, the ledger total and the key's lifetime)."""

    scope: ScopeLimits
    kind: str  # rpm, tpm, daily or monthly
    key: str
    limit: int
    base: int = 0
    seed: int = 0
    ttl: int = 120


class _Plan(NamedTuple):
    """A caller's checks for one minute of one limits snapshot."""

    limits: dict[tuple[str, str], ScopeLimits]  # the snapshot it was made from
    minute: int
    scopes: tuple[ScopeLimits, ...]
    steps: tuple[_Step, ...]
    needs_estimate: bool  # a token or budget limit: the request's largest use must be worked out


def _label(principal: Principal, scope: str) -> str:
    if scope == "key":
        return f"key {principal.key_prefix}"
    if scope == "project":
        return f"project {principal.project_name!r}"
    return f"user {principal.user_name!r}"


def _period_end(now: datetime, monthly: bool) -> datetime:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if not monthly:
        return day + timedelta(days=1)
    first = day.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


class Governor:
    """Checks and reserves each request's limits; settles them when it ends."""

    def __init__(self, db: Database, writer: TraceWriter, counters: Counters | None = None):
        self.db = db
        self.writer = writer
        self.counters: Counters = counters or MemoryCounters()
        self.limits: dict[tuple[str, str], ScopeLimits] = {}
        self._spent: dict[CounterKey, int] = {}  # ledger totals in the database, as last read
        self._mine: dict[CounterKey, int] = {}  # this process's committed part of them, read just before
        self._pending: set[asyncio.Future[None]] = set()
        self._plans: dict[tuple[str, str, str], _Plan] = {}  # by caller (key, project, user)

    # --- snapshot (background thread) ----------------------------------------------------------

    def refresh(self) -> None:
        """Reload limits and the current periods' ledger totals (blocking: call it off the event loop)."""
        now = utcnow()
        limits = {
            (r.scope, r.scope_id): ScopeLimits(
                r.scope,
                r.scope_id,
                tuple(r.allowed_models) if r.allowed_models is not None else None,
                r.rpm,
                r.tpm,
                r.daily_budget_micros,
                r.monthly_budget_micros,
            )
            for r in load_limits(self.db)
        }
        budgeted = [k for k, v in limits.items() if v.daily is not None or v.monthly is not None]
        mine = dict(self.writer.committed.get(SPEND_COUNTER, {}))  # before the read: may under-state, never over
        spent = load_spend(self.db, budgeted, now)
        self.limits, self._spent, self._mine = limits, {tuple(k): v for k, v in spent.items()}, mine

    async def run_refresher(self, every: float = 2.0) -> None:
        """Refresh the snapshot every `every` seconds until cancelled."""
        await run_every(every, self.refresh, "refreshing gateway limits failed; keeping the last snapshot")

    # --- admission (event loop) ----------------------------------------------------------------

    def scopes(self, principal: Principal) -> list[ScopeLimits]:
        """The limits that apply to a caller: its key's, its project's and its user's."""
        if not self.limits:
            return []
        found = (
            self.limits.get(("key", principal.key_id)),
            self.limits.get(("project", principal.project_id)),
            self.limits.get(("user", principal.user_id)),
        )
        return [s for s in found if s is not None]

    def _plan(self, principal: Principal, minute: int, now: datetime) -> _Plan:
        """What a caller's requests check this minute (scopes, counter keys, limits, ledger bases), worked
        out once per snapshot and minute rather than on every request."""
        key = (principal.key_id, principal.project_id, principal.user_id)
        cached = self._plans.get(key)
        if cached is not None and cached.minute == minute and cached.limits is self.limits:
            return cached
        if len(self._plans) > 10_000 or (self._plans and next(iter(self._plans.values())).limits is not self.limits):
            self._plans.clear()
        scopes = self.scopes(principal)
        day, month = periods(now)
        shared = self.counters.shared
        steps: list[_Step] = []
        for s in scopes:
            if s.rpm is not None:
                steps.append(_Step(s, "rpm", f"rpm:{s.scope}:{s.scope_id}:{minute}", s.rpm))
            if s.tpm is not None:
                steps.append(_Step(s, "tpm", f"tpm:{s.scope}:{s.scope_id}:{minute}", s.tpm))
            for limit, period, ttl, kind in (
                (s.daily, day, DAY_TTL, "daily"),
                (s.monthly, month, MONTH_TTL, "monthly"),
            ):
                if limit is None:
                    continue
                ledger = (s.scope, s.scope_id, period)
                total = self._spent.get(ledger, 0)
                base = 0 if shared else max(0, total - self._mine.get(ledger, 0))
                steps.append(_Step(s, kind, f"spend:{s.scope}:{s.scope_id}:{period}", limit, base, total, ttl))
        plan = _Plan(self.limits, minute, tuple(scopes), tuple(steps), any(st.kind != "rpm" for st in steps))
        self._plans[key] = plan
        return plan

    async def admit(self, principal: Principal, model: str, estimate: Callable[[], tuple[int, int]]) -> Ticket | None:
        """Check the caller's limits and reserve this request's share, or raise the 403/429 that says which
        limit it hit and when that resets. `estimate` gives (max tokens, max cost in micro-dollars)."""
        if not self.limits:
            return None
        now_s = time.time()
        minute = int(now_s // 60)
        plan = self._plan(principal, minute, datetime.fromtimestamp(now_s, UTC))
        if not plan.scopes:
            return None
        for s in plan.scopes:
            if s.allowed_models is not None and not model_allowed(s.allowed_models, model):
                allowed = ", ".join(s.allowed_models) or "none"
                raise GatewayError(
                    403,
                    f"{_label(principal, s.scope)} may not use model {model!r}; allowed: {allowed}",
                    code="model_not_allowed",
                    param="model",
                )
        if not plan.steps:
            return None
        tokens, cost = estimate() if plan.needs_estimate else (0, 0)
        ticket = Ticket(tokens=tokens, cost=cost)
        checks: list[Check] = []
        for st in plan.steps:
            if st.kind == "rpm":
                checks.append(Check(st.key, 1, st.limit))
            elif st.kind == "tpm":
                checks.append(Check(st.key, tokens, st.limit))
                ticket.tpm_keys.append(st.key)
            else:
                checks.append(Check(st.key, cost, st.limit, st.base, st.seed, st.ttl))
                ticket.spend_keys.append(st.key)
        try:
            refused = await self.counters.reserve(checks)
        except Exception as exc:
            log.warning("limit counters unreachable: %s", exc)
            raise GatewayError(
                503,
                "the gateway cannot reach its limit counters (Redis) to check this key's limits; retry shortly",
                code="limits_unavailable",
                headers={"Retry-After": "1"},
            ) from None
        if refused is None:
            return ticket
        index, current = refused
        step = plan.steps[index]
        raise self._refusal(
            principal, step.scope, step.kind, checks[index], current, now_s, datetime.fromtimestamp(now_s, UTC)
        )

    def _refusal(
        self, principal: Principal, s: ScopeLimits, kind: str, check: Check, current: int, now_s: float, now: datetime
    ) -> GatewayError:
        who = _label(principal, s.scope)
        if kind in ("rpm", "tpm"):
            reset_s = (int(now_s // 60) + 1) * 60
            reset = datetime.fromtimestamp(reset_s, UTC)
            wait = max(1, math.ceil(reset_s - now_s))
            if kind == "rpm":
                what = f"its limit of {s.rpm:,} requests per minute"
            else:
                what = (
                    f"its limit of {s.tpm:,} tokens per minute ({current:,} used or reserved this minute; this "
                    f"request may use up to {check.amount:,})"
                )
            return GatewayError(
                429,
                f"{who} is over {what}; it resets at {reset:%H:%M:%S} UTC, in {wait} s",
                code="rate_limit_exceeded" if kind == "rpm" else "tokens_per_minute_exceeded",
                headers={"Retry-After": str(wait), "x-podium-limit": f"{s.scope}:{kind}"},
            )
        end = _period_end(now, kind == "monthly")
        wait = max(1, math.ceil((end - now).total_seconds()))
        spent = current + check.base
        return GatewayError(
            429,
            f"{who} is over its {kind} budget of {format_micros(check.limit)} (spent or reserved"
            f" {format_micros(spent)}; this request may cost up to {format_micros(check.amount)}); it resets at"
            f" {end:%Y-%m-%dT%H:%M:%SZ}",
            code="budget_exceeded",
            type_="insufficient_quota",
            headers={"Retry-After": str(wait), "x-podium-limit": f"{s.scope}:{kind}_budget"},
        )

    # --- settling ------------------------------------------------------------------------------

    def settle(self, ticket: Ticket | None, principal: Principal, cost: int, tokens: int, when: datetime) -> None:
        """Turn a reservation into the actual use (0 for a failure or a disconnect). Never waits: safe in a
        `finally` that is being cancelled."""
        deltas: list[tuple[str, int]] = []
        if ticket is not None and not ticket.settled:
            ticket.settled = True
            deltas += [(k, tokens - ticket.tokens) for k in ticket.tpm_keys]
            if self.counters.shared:
                deltas += [(k, cost - ticket.cost) for k in ticket.spend_keys]
            else:
                deltas += [(k, -ticket.cost) for k in ticket.spend_keys]
        if isinstance(self.counters, MemoryCounters):
            # this process's spend, until the ledger snapshot shows it committed
            if cost:
                deltas += [(k, cost) for k in _spend_keys(principal, when)[0]]
            self.counters.add(deltas, ttl=MONTH_TTL if cost else 0)
        elif deltas:
            task = asyncio.ensure_future(self._adjust(deltas))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _adjust(self, deltas: list[tuple[str, int]]) -> None:
        try:
            await self.counters.adjust(deltas)
        except Exception:
            log.exception("settling limit counters failed; the reservation expires with its period")

    @staticmethod
    def ledger(principal: Principal, cost: int, when: datetime) -> list[tuple[str, CounterKey, int]]:
        """The spend-ledger deltas of one call (key, project and user; day and month), for the writer."""
        if not cost:
            return []
        return [(SPEND_COUNTER, k, cost) for k in _spend_keys(principal, when)[1]]

    async def aclose(self) -> None:
        """Let pending settlements finish, then close the counters."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)
        await self.counters.aclose()


_SpendKeys = tuple[tuple[str, ...], tuple[CounterKey, ...]]
_spend_key_cache: dict[tuple[str, str, str, str, str], _SpendKeys] = {}


def _spend_keys(principal: Principal, when: datetime) -> _SpendKeys:
    """The in-process counter keys and the ledger keys a caller's spend goes to (key, project and user; day
    and month), made once per caller and day: every call that costs anything adds to all of them."""
    day, month = periods(when)
    cache_key = (principal.key_id, principal.project_id, principal.user_id, day, month)
    found = _spend_key_cache.get(cache_key)
    if found is None:
        if len(_spend_key_cache) > 10_000:
            _spend_key_cache.clear()
        owners = _owners(principal)
        counters = tuple(f"spend:{scope}:{scope_id}:{period}" for scope, scope_id in owners for period in (day, month))
        ledger = tuple((scope, scope_id, period) for scope, scope_id in owners for period in (day, month))
        found = _spend_key_cache[cache_key] = (counters, ledger)
    return found


def _owners(principal: Principal) -> tuple[tuple[str, str], ...]:
    return (("key", principal.key_id), ("project", principal.project_id), ("user", principal.user_id))
