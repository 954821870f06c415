"""Model names to providers, without a database round trip per request.

A reference is read from the database the first time this process sees it; after that the route table's
background refresh re-resolves every known reference every couple of seconds (so registry and alias changes
apply without a restart) and the hot path only reads the snapshot. One provider object, holding one pooled
connection session, is kept per model version.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from podium.core.errors import NotFound, PodiumError
from podium.core.platform import Platform
from podium.gateway.errors import GatewayError
from podium.models import service
from podium.models.providers import registry
from podium.models.providers.base import Provider
from podium.models.providers.registry import Connection
from podium.models.service import ResolvedModel
from podium.models.supervisor import socket_path, worker_state


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

    def lookup(self, ref: str) -> Target:
        """The target for a model reference, or a `GatewayError` (404 naming the known models)."""
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
        """Re-resolve every known reference (blocking: the route table calls it from its refresh thread)."""
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
        return GatewayError(
            503,
            f"model {name} is registered but not loaded by this server; add it to serve_models"
            " (PODIUM_SERVE_MODELS) and restart",
            code="model_not_loaded",
        )

    async def aclose(self) -> None:
        """Close every provider's connections."""
        for provider in list(self._providers.values()):
            await provider.aclose()


def make_provider(platform: Platform, r: ResolvedModel) -> Provider:
    """The adapter for a resolved model."""
    cfg = r.config
    if r.model.provider == "local":
        connection = Connection(r.model.name, unix_socket=str(socket_path(platform.settings, r.version.id)))
    else:
        connection = Connection(str(cfg["model"]), cfg.get("base_url"), cfg.get("api_key"), cfg.get("headers") or {})
    try:
        return registry.create(r.model.provider, connection)
    except ValueError as exc:
        raise GatewayError(500, f"model {r.ref} cannot be reached: {exc}") from None
