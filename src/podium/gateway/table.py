"""The in-memory route table the hot path reads: routes from the database and `podium.toml`, and the
registered models (each one a single-deployment route), with live deployment health.

A background task reloads the stored routes every couple of seconds (so `podium routes add` applies
without a restart); deployments whose definition did not change keep their connections and health.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from podium.core.identity import Principal
from podium.core.netguard import NetGuard
from podium.core.periodic import run_every
from podium.core.platform import Platform
from podium.gateway.directory import ModelDirectory, Target, canonical
from podium.gateway.errors import GatewayError
from podium.gateway.guardrails import Guardrail, build_guardrails
from podium.gateway.resilience import Breaker, Health
from podium.gateway.spec import MODEL, DeploymentSpec, RouteSpec
from podium.models.prices import FREE, Price, lookup_price
from podium.models.providers import registry
from podium.models.providers.base import Provider, Timeouts
from podium.models.providers.registry import Connection

log = logging.getLogger("podium.gateway.table")
MAX_MODEL_ROUTES = 10_000  # registered-model routes kept (one per reference and version)
MISS_RELOAD = 0.5  # seconds between reloads of the table caused by calls naming an unknown model


@dataclass
class Deployment:
    """One upstream of a route, with its provider and live health."""

    name: str
    spec: DeploymentSpec
    fingerprint: str
    health: Health
    price: Price
    timeouts: Timeouts
    provider: Provider | None = None  # None for `provider: model`: resolved through the model directory

    @property
    def context_window(self) -> int | None:
        """Known context length, for context-window fallbacks."""
        return self.spec.context_window


@dataclass
class Route:
    """A public name, its deployments in strategy order, and where to go when they fail."""

    name: str
    spec: RouteSpec
    deployments: list[Deployment]
    source: str  # api, config or model
    target: Target | None = None  # for a registered model
    rr: int = 0
    fingerprint: str = ""
    guards: list[Guardrail] = field(default_factory=list)

    def order(self, user: str | None) -> list[Deployment]:
        """The deployments to try, best first by the route's strategy; ones cooling down are left out."""
        ready = [d for d in self.deployments if d.health.breaker.allows()]
        if len(ready) <= 1:
            return ready
        strategy = self.spec.strategy
        if strategy == "weighted":
            first = _weighted_pick(ready, f"{self.name}:{user}" if user else None)
            rest = sorted((d for d in ready if d is not first), key=lambda d: -d.spec.weight)
            return [first, *rest]
        if strategy == "round-robin":
            self.rr += 1
            k = self.rr % len(ready)
            return ready[k:] + ready[:k]
        if strategy == "least-busy":
            random.shuffle(ready)
            return sorted(ready, key=lambda d: d.health.inflight)
        if strategy == "lowest-latency":
            random.shuffle(ready)
            return sorted(ready, key=lambda d: -1.0 if d.health.ewma_ms is None else d.health.ewma_ms)
        random.shuffle(ready)  # lowest-cost
        return sorted(ready, key=lambda d: d.price.input + d.price.output)


def _weighted_pick(deps: list[Deployment], sticky: str | None) -> Deployment:
    """A deployment drawn by weight; the same sticky key (route and user) always draws the same point."""
    total = sum(d.spec.weight for d in deps)
    if sticky is None:
        point = random.random() * total  # nosec B311  # not security: load spreading, jitter and experiment arms
    else:
        digest = hashlib.blake2b(sticky.encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2**64 * total
    for d in deps:
        point -= d.spec.weight
        if point < 0:
            return d
    return deps[-1]


def _fingerprint(data: Any) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


class RouteTable:
    """Routes by name for the hot path; `refresh` reloads stored routes (call it off the event loop)."""

    def __init__(self, platform: Platform, directory: ModelDirectory, config_routes: list[RouteSpec] | None = None):
        self.platform = platform
        self.directory = directory
        self.config_routes = config_routes or []
        self.routes: dict[str, Route] = {}
        self._model_routes: dict[str, Route] = {}
        self._refresh_lock = threading.Lock()
        self._refresh_started = 0.0  # when the latest reload began (monotonic)
        self._miss_lock: asyncio.Lock | None = None

    # --- lookups (event loop) ------------------------------------------------------------------

    def get(self, name: str) -> Route:
        """The route for a public name: a defined route, else a registered model (`name`, `name@alias`)."""
        route = self.routes.get(name)
        if route is not None:
            return route
        try:
            target = self.directory.lookup(name)
        except GatewayError as exc:
            raise self._with_routes(exc) from None
        return self._route_of(name, target)

    async def get_for(self, name: str, principal: Principal | None) -> Route:
        """`get` for a client's call: a defined route, else a registered model the caller may use (another
        project's model is as unknown as a missing one); nothing blocks the event loop. A name found neither
        way waits for a reload of the table that starts after the call arrived (at most two a second), so a
        route created on another worker just before is found."""
        arrived = time.monotonic()
        route = self.routes.get(name)
        if route is not None:
            return route
        try:
            target = await self.directory.lookup_for(name, principal)
        except GatewayError as exc:
            if exc.status == 404 and await self._reloaded_since(arrived):
                route = self.routes.get(name)
                if route is not None:
                    return route
            raise self._with_routes(exc) from None
        return self._route_of(name, target)

    def _with_routes(self, exc: GatewayError) -> GatewayError:
        """A model lookup's 404 naming the routes too (any other error as it is)."""
        if exc.status != 404 or not self.routes:
            return exc
        known = ", ".join(sorted(self.routes))
        return GatewayError(404, f"{exc.message.rstrip('.')}; routes: {known}", code="model_not_found", param="model")

    def _route_of(self, name: str, target: Target) -> Route:
        key = f"{canonical(name)}\0{target.resolved.version.id}"
        route = self._model_routes.get(key)
        if route is None:
            if len(self._model_routes) >= MAX_MODEL_ROUTES:  # bounded: old entries are rebuilt on demand
                self._model_routes.pop(next(iter(self._model_routes)))
            route = self._model_routes[key] = self._model_route(canonical(name), target)
        return route

    def _model_route(self, name: str, target: Target) -> Route:
        m = target.resolved.model
        cfg = target.resolved.config
        if m.provider == "local":
            price = FREE
            upstream = target.resolved.ref
        else:
            upstream = str(cfg.get("model") or m.name)
            price = lookup_price(upstream) or FREE
        spec = DeploymentSpec(provider=MODEL, model=name, name=f"{m.provider}/{upstream}")
        dep = Deployment(
            name=spec.name or name,
            spec=spec,
            fingerprint="",
            health=Health(Breaker()),
            price=price,
            timeouts=Timeouts(),
        )
        route_spec = RouteSpec(name=m.name, deployments=[spec], retries=1)
        return Route(name=name, spec=route_spec, deployments=[dep], source="model", target=target)

    # --- reloading (worker thread) ---------------------------------------------------------------

    async def _reloaded_since(self, arrived: float) -> bool:
        """Make sure the table was read after `arrived` (waiting for the next slot: reads on misses happen at
        most twice a second); False if the read failed."""
        if self._miss_lock is None:
            self._miss_lock = asyncio.Lock()
        async with self._miss_lock:
            if self._refresh_started >= arrived:
                return True
            due = self._refresh_started + MISS_RELOAD - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.warning("reloading gateway routes on a miss failed", exc_info=True)
                return False
            return True

    def refresh(self) -> None:
        """Rebuild the table from the database and the configuration; unchanged routes and deployments are kept
        as they are (connections, health, compiled guardrails). One at a time (the background refresher and
        reloads on a miss)."""
        with self._refresh_lock:
            self._refresh_started = time.monotonic()
            self._refresh()

    def _refresh(self) -> None:
        from podium.gateway import admin

        self.directory.refresh()
        specs: list[tuple[RouteSpec, str]] = [(s, "config") for s in self.config_routes]
        specs += [(s, "api") for s in admin.load_route_specs(self.platform)]
        fresh: dict[str, Route] = {}
        for spec, source in specs:
            if spec.name in fresh:
                continue  # a stored route never shadows one from podium.toml
            dfps = [
                _fingerprint(
                    {**d.model_dump(mode="json"), "api_key": d.api_key.get_secret_value() if d.api_key else None}
                )
                for d in spec.deployments
            ]
            fp = _fingerprint([spec.model_dump(mode="json", exclude={"deployments"}), dfps])
            old = self.routes.get(spec.name)
            if old is not None and old.fingerprint == fp:
                old.source = source
                fresh[spec.name] = old  # unchanged: keep its providers, health and compiled guardrails
                continue
            old_deps = {d.name: d for d in old.deployments} if old else {}
            deps = []
            for d, dfp in zip(spec.deployments, dfps, strict=True):
                prev = old_deps.get(d.name or "")
                if prev is not None and prev.fingerprint == dfp:
                    prev.health.breaker.failures = spec.circuit.failures
                    prev.health.breaker.cooldown = spec.circuit.cooldown
                    deps.append(prev)
                else:
                    deps.append(self._deployment(spec, d, dfp))
            route = Route(
                name=spec.name,
                spec=spec,
                deployments=deps,
                source=source,
                fingerprint=fp,
                guards=build_guardrails(spec.guardrails),
            )
            if old is not None:
                route.rr = old.rr
            fresh[spec.name] = route
        self.routes = fresh

    def _deployment(self, route: RouteSpec, d: DeploymentSpec, fingerprint: str) -> Deployment:
        timeouts = Timeouts(connect=d.timeouts.connect, first_token=d.timeouts.first_token, total=d.timeouts.total)
        api_key = d.api_key.get_secret_value() if d.api_key else None
        provider: Provider | None = None
        if d.provider != MODEL:  # a registered model is reached through the model directory instead
            guard = NetGuard(allow_private=self.platform.settings.upstream_allow_private)
            connection = Connection(d.model, d.base_url, api_key, d.headers, timeouts, guard=guard)
            provider = registry.create(d.provider, connection)
        if d.price is not None:
            price = Price(d.price.input, d.price.output)
        elif d.provider == MODEL:
            price = FREE  # priced by the registered model's own route when it is called
        else:
            price = lookup_price(d.model) or FREE
        return Deployment(
            name=d.name or d.model,
            spec=d,
            fingerprint=fingerprint,
            health=Health(Breaker(route.circuit.failures, route.circuit.cooldown)),
            price=price,
            timeouts=timeouts,
            provider=provider,
        )

    async def run_refresher(self, every: float = 2.0) -> None:
        """Reload every `every` seconds until cancelled."""
        await run_every(every, self.refresh, "reloading gateway routes failed; keeping the previous table")

    async def aclose(self) -> None:
        """Close every deployment's connections."""
        for route in self.routes.values():
            for d in route.deployments:
                if d.provider is not None:
                    await d.provider.aclose()
