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

from podium.core.db import Database, utcnow
from podium.core.identity import Principal
from podium.core.periodic import run_every
from podium.gateway.counters import Check, Counters, MemoryCounters
from podium.gateway.errors import GatewayError
from podium.gateway.limits import day_period, load_limits, load_spend, model_allowed, month_period
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


def _label(principal: Principal, scope: str) -> str:
    if scope == "key":
        return f"key {principal.key_prefix}"
    if scope == "project":
        return f"project {principal.project_name!r}"
    return f"user {principal.user_name!r}"


def _money(micros: int) -> str:
    return f"${micros / 1_000_000:,.6f}".rstrip("0").rstrip(".") if micros % 10_000 else f"${micros / 1_000_000:,.2f}"


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

    async def admit(self, principal: Principal, model: str, estimate: Callable[[], tuple[int, int]]) -> Ticket | None:
        """Check the caller's limits and reserve this request's share, or raise the 403/429 that says which
        limit it hit and when that resets. `estimate` gives (max tokens, max cost in micro-dollars)."""
        scopes = self.scopes(principal)
        if not scopes:
            return None
        for s in scopes:
            if s.allowed_models is not None and not model_allowed(s.allowed_models, model):
                allowed = ", ".join(s.allowed_models) or "none"
                raise GatewayError(
                    403,
                    f"{_label(principal, s.scope)} may not use model {model!r}; allowed: {allowed}",
                    code="model_not_allowed",
                    param="model",
                )
        now_s = time.time()
        now = datetime.fromtimestamp(now_s, UTC)
        minute = int(now_s // 60)
        needs_estimate = any(s.tpm is not None or s.daily is not None or s.monthly is not None for s in scopes)
        tokens, cost = estimate() if needs_estimate else (0, 0)
        shared = self.counters.shared
        checks: list[Check] = []
        kinds: list[tuple[ScopeLimits, str]] = []
        ticket = Ticket(tokens=tokens, cost=cost)
        for s in scopes:
            if s.rpm is not None:
                checks.append(Check(f"rpm:{s.scope}:{s.scope_id}:{minute}", 1, s.rpm))
                kinds.append((s, "rpm"))
            if s.tpm is not None:
                key = f"tpm:{s.scope}:{s.scope_id}:{minute}"
                checks.append(Check(key, tokens, s.tpm))
                kinds.append((s, "tpm"))
                ticket.tpm_keys.append(key)
            for limit, period, ttl, kind in (
                (s.daily, day_period(now), DAY_TTL, "daily"),
                (s.monthly, month_period(now), MONTH_TTL, "monthly"),
            ):
                if limit is None:
                    continue
                ledger = (s.scope, s.scope_id, period)
                total = self._spent.get(ledger, 0)
                base = 0 if shared else max(0, total - self._mine.get(ledger, 0))
                key = f"spend:{s.scope}:{s.scope_id}:{period}"
                checks.append(Check(key, cost, limit, base=base, seed=total, ttl=ttl))
                kinds.append((s, kind))
                ticket.spend_keys.append(key)
        if not checks:
            return None
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
        scope, kind = kinds[index]
        raise self._refusal(principal, scope, kind, checks[index], current, now_s, now)

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
            f"{who} is over its {kind} budget of {_money(check.limit)} (spent or reserved {_money(spent)}; this "
            f"request may cost up to {_money(check.amount)}); it resets at {end:%Y-%m-%dT%H:%M:%SZ}",
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
                day, month = day_period(when), month_period(when)
                for scope, scope_id in _owners(principal):
                    deltas.append((f"spend:{scope}:{scope_id}:{day}", cost))
                    deltas.append((f"spend:{scope}:{scope_id}:{month}", cost))
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
        day, month = day_period(when), month_period(when)
        out: list[tuple[str, CounterKey, int]] = []
        for scope, scope_id in _owners(principal):
            out.append((SPEND_COUNTER, (scope, scope_id, day), cost))
            out.append((SPEND_COUNTER, (scope, scope_id, month), cost))
        return out

    async def aclose(self) -> None:
        """Let pending settlements finish, then close the counters."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)
        await self.counters.aclose()


def _owners(principal: Principal) -> tuple[tuple[str, str], ...]:
    return (("key", principal.key_id), ("project", principal.project_id), ("user", principal.user_id))
