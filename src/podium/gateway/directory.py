"""Model names to providers, without a database round trip per request.

A reference is read from the database the first time this process sees it; after that the route table's
background refresh re-resolves every known reference every couple of seconds (so registry and alias changes
apply without a restart) and the hot path only reads the snapshot. One provider object, holding one pooled
connection session, is kept per model version.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from podium.core.errors import NotFound, PodiumError
from podium.core.identity import Principal
from podium.core.netguard import NetGuard
from podium.core.platform import Platform
from podium.gateway.errors import GatewayError
from podium.models import service
from podium.models.providers import registry
from podium.models.providers.base import Provider
from podium.models.providers.registry import Connection
from podium.models.service import ResolvedModel
from podium.models.supervisor import (
    mark_used,
    on_demand_available,
    request_worker,
    socket_path,
    wanted_path,
    worker_state,
)


@dataclass(frozen=True)
class Target:
    """A resolved model and the provider that serves it."""

    resolved: ResolvedModel
    provider: Provider

    @property
    def task(self) -> str:
        """chat, completion or embedding."""
        return self.resolved.model.task


class ModelDirectory:
    """Resolves `name`, `name@version` and `name@alias` to providers from a background-refreshed snapshot."""

    def __init__(self, platform: Platform, idle: float = 600.0, max_refs: int = 10_000):
        self.platform = platform
        self.idle = idle  # a reference unused this long is forgotten (and read afresh if it comes back)
        self.max_refs = max_refs
        self._cache: dict[str, Target | GatewayError] = {}
        self._used: dict[str, float] = {}
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self.names: dict[str, str | None] | None = None  # registered model name -> its project (None: global)
        self._names_at = 0.0  # when `names` was read (monotonic)
        self._names_started = 0.0  # when the latest read of `names` began (monotonic)
        self._names_lock: asyncio.Lock | None = None
        self._marked: dict[str, float] = {}  # version id -> when this process last marked it used (monotonic)

    def visible_names(self, principal: Principal | None) -> list[str]:
        """The registered model names a caller may use (its project's and the global ones), sorted."""
        return sorted(n for n, project in (self.names or {}).items() if _sees(principal, project))

    def not_found(self, ref: str, principal: Principal | None) -> GatewayError:
        """The 404 for a reference the caller cannot use, naming only the models it may use."""
        known = self.visible_names(principal)
        shown = ", ".join(known[:KNOWN_LISTED]) + (", …" if len(known) > KNOWN_LISTED else "")
        return GatewayError(
            404, f"model {ref!r} not found; known models: {shown or 'none'}", code="model_not_found", param="model"
        )

    async def lookup_for(self, ref: str, principal: Principal | None) -> Target:
        """`lookup` for a caller, on the event loop: a name no model has is refused from the snapshot (no
        database read, nothing cached), another project's model is as unknown as a missing one, and a first
        sight of a reference is read in a worker thread."""
        ref = canonical(ref)
        value = self._cache.get(ref)
        if value is None:
            name = ref.partition("@")[0]
            if self.names is None or name not in self.names:
                await self._reread_names()  # a model registered since the last refresh, in any process
                if self.names is not None and name not in self.names:
                    raise self.not_found(ref, principal)
            value = await asyncio.to_thread(self._lookup_value, ref)
        self._used[ref] = time.monotonic()
        if isinstance(value, GatewayError):
            name = ref.partition("@")[0]
            known = self.names is not None and name in self.names and _sees(principal, self.names[name])
            if value.status == 404 and not known:  # say nothing of a model the caller may not use
                raise self.not_found(ref, principal)
            raise value
        if not _sees(principal, value.resolved.model.project_id):
            raise self.not_found(ref, principal)
        return value

    async def _reread_names(self) -> None:
        """Read the names again, at most twice a second whatever the traffic (a flood of unknown names costs
        the database nothing more), and off the event loop. A caller waits for a read that starts after it
        arrived (up to `NAMES_FRESH`), so a model registered just before its request is always found."""
        arrived = time.monotonic()
        if self._names_lock is None:
            self._names_lock = asyncio.Lock()
        async with self._names_lock:
            if self._names_started >= arrived:  # a read began after this caller came: its answer will do
                return
            due = self._names_at + NAMES_FRESH - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
            self._names_started = time.monotonic()
            names = await asyncio.to_thread(service.model_names, self.platform)
            self.names, self._names_at = names, time.monotonic()

    def _lookup_value(self, ref: str) -> Target | GatewayError:
        value = self._cache.get(ref)
        if value is None:
            value = self._resolve(ref)
            with self._lock:
                if len(self._cache) >= self.max_refs:
                    oldest = next(iter(self._cache))
                    self._cache.pop(oldest, None)
                    self._used.pop(oldest, None)
                self._cache[ref] = value
        return value

    def lookup(self, ref: str) -> Target:
        """The target for a model reference, or a `GatewayError` (404). For the platform's own lookups (a
        route's `provider: model` deployment, a fallback): callers acting for a client use `lookup_for`."""
        ref = canonical(ref)
        value = self._cache.get(ref)
        if value is None:  # first sight of this reference in this process: one database read
            value = self._resolve(ref)
            if len(self._cache) >= self.max_refs:
                oldest = next(iter(self._cache))
                self._cache.pop(oldest, None)
                self._used.pop(oldest, None)
            self._cache[ref] = value
        self._used[ref] = time.monotonic()
        if isinstance(value, GatewayError):
            raise value
        return value

    def refresh(self) -> None:
        """Re-read the model names and re-resolve every known reference (blocking: the route table calls it
        from its refresh thread)."""
        started = time.monotonic()
        self.names, self._names_at = service.model_names(self.platform), time.monotonic()
        self._names_started = max(self._names_started, started)
        now = time.monotonic()
        for ref in list(self._cache):
            if now - self._used.get(ref, 0.0) > self.idle:
                self._cache.pop(ref, None)
                self._used.pop(ref, None)
            else:
                self._cache[ref] = self._resolve(ref)

    def _resolve(self, ref: str) -> Target | GatewayError:
        try:
            resolved = service.resolve(self.platform, ref)
        except NotFound as exc:
            return GatewayError(404, exc.message, code="model_not_found", param="model")
        except PodiumError as exc:
            return GatewayError.from_podium(exc)
        return Target(resolved, self._provider(resolved))

    def _provider(self, r: ResolvedModel) -> Provider:
        key = r.version.id
        with self._lock:
            provider = self._providers.get(key)
            if provider is None:
                provider = self._providers[key] = make_provider(self.platform, r)
            return provider

    async def wait_ready(self, target: Target, timeout: float | None = None) -> GatewayError | None:
        """Like `unavailable`, but a local model that is loading or restarting is waited for (its worker's
        state file read every 50-250 ms) up to `timeout` (the `model_load_wait` setting) instead of refused
        at once: a call that arrives while the server starts is answered as soon as its model is ready. A
        version no worker serves (one an alias just moved to) is started on demand and waited for the same
        way, when `podium serve` runs with `serve_on_demand`; the caller was checked to see the model."""
        problem = self.unavailable(target)
        if problem is None:
            self._mark_used(target)
            return None
        asked = problem.code in STARTABLE and self._ask(target)
        if not asked and problem.code not in WAITED_FOR:
            return problem
        limit = self.platform.settings.model_load_wait if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        pause = 0.05
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 1.5, 0.25)
            problem = self.unavailable(target)
            if problem is None:
                self._mark_used(target)
                return None
            if problem.code in WAITED_FOR:
                continue
            if not (asked and problem.code in STARTABLE):
                return problem
            if wanted_path(self.platform.settings, target.resolved.version.id).exists():
                continue  # the supervisor has not taken the request yet (or waits for room)
            if problem.code != "model_not_loaded":
                return problem  # refused: says what to change
            self._ask(target)  # stopped while waited for (to make room for another): ask again
        if asked and problem.code in STARTABLE:
            return GatewayError(
                503,
                f"model {target.resolved.ref} is starting on demand; retry in a few seconds",
                code="model_loading",
                headers={"Retry-After": "5"},
            )
        return problem

    def _ask(self, target: Target) -> bool:
        """Ask the running `podium serve` for a worker of this version; False if it starts none on demand."""
        settings = self.platform.settings
        if not on_demand_available(settings):
            return False
        r = target.resolved
        return request_worker(settings, r.version.id, r.ref, r.model.task)

    def _mark_used(self, target: Target) -> None:
        """Tell the supervisor this version is in use (at most every `USED_EVERY` seconds per process), so an
        on-demand worker that makes room for another is the least recently used one."""
        vid = target.resolved.version.id
        now = time.monotonic()
        if now - self._marked.get(vid, -USED_EVERY) >= USED_EVERY:
            self._marked[vid] = now
            mark_used(self.platform.settings, vid)

    def unavailable(self, target: Target) -> GatewayError | None:
        """For local models: why the worker cannot answer (loading, failed, not served), if it cannot."""
        r = target.resolved
        if r.model.provider != "local":
            return None
        settings = self.platform.settings
        state, detail = worker_state(settings, r.version.id)
        name = r.ref
        if state == "ready" and socket_path(settings, r.version.id).exists():
            return None
        if state == "loading":
            return GatewayError(
                503,
                f"model {name} is still loading; retry in a few seconds",
                code="model_loading",
                headers={"Retry-After": "5"},
            )
        if state == "restarting":
            return GatewayError(
                503, f"model {name} is restarting: {detail}", code="model_restarting", headers={"Retry-After": "5"}
            )
        if state == "failed":
            return GatewayError(503, f"model {name} failed to load: {detail}", code="model_failed")
        if state == "refused":
            return GatewayError(503, f"model {name} cannot be started on demand: {detail}", code="model_workers_full")
        return GatewayError(
            503,
            f"model {name} is registered but not loaded by this server; add it to serve_models"
            " (PODIUM_SERVE_MODELS) and restart" + ("" if settings.serve_on_demand else ", or turn serve_on_demand on"),
            code="model_not_loaded",
        )

    async def aclose(self) -> None:
        """Close every provider's connections."""
        for provider in list(self._providers.values()):
            await provider.aclose()


KNOWN_LISTED = 30  # model names a 404 lists
WAITED_FOR = frozenset({"model_loading", "model_restarting"})  # states a call waits out (`wait_ready`)
STARTABLE = frozenset({"model_not_loaded", "model_workers_full"})  # a call asks for a worker (`wait_ready`)
USED_EVERY = 5.0  # seconds between a process's marks that a model version is in use
NAMES_FRESH = 0.5  # seconds a re-read of the model names stays good for unknown names


def _sees(principal: Principal | None, project_id: str | None) -> bool:
    return project_id is None or principal is None or principal.admin or principal.project_id == project_id


def canonical(ref: str) -> str:
    """One spelling per reference: `m@0003` and `m@v3` are `m@3` (so padded numbers cost no extra lookups)."""
    name, at, tag = ref.partition("@")
    if not at:
        return ref
    digits = tag[1:] if tag[:1] in ("v", "V") else tag
    if digits.isascii() and digits.isdigit():
        return f"{name}@{int(digits)}"
    return ref


def make_provider(platform: Platform, r: ResolvedModel) -> Provider:
    """The adapter for a resolved model."""
    cfg = r.config
    if r.model.provider == "local":
        connection = Connection(r.model.name, unix_socket=str(socket_path(platform.settings, r.version.id)))
    else:
        connection = Connection(
            str(cfg["model"]),
            cfg.get("base_url"),
            cfg.get("api_key"),
            cfg.get("headers") or {},
            guard=NetGuard(allow_private=platform.settings.upstream_allow_private),
        )
    try:
        return registry.create(r.model.provider, connection)
    except ValueError as exc:
        raise GatewayError(500, f"model {r.ref} cannot be reached: {exc}") from None
