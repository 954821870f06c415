"""The gateway domain: `/v1` (OpenAI-compatible) in front of every model and route, with routing, fallbacks,
caches, limits and budgets, guardrail hooks and a trace of every call; and its management API."""

from __future__ import annotations

from podium.core.domains import Domain
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Build the route table, the governor and the `Gateway` request service the `/v1` handlers (and the
    playground) use; refresh the table and the limits in the background; hand jobs the server's loop and
    gateway (`bridge`) while it runs; close upstream connections at stop."""
    import asyncio

    from podium.core.identity import Authenticator
    from podium.gateway import bridge
    from podium.gateway.admin import config_route_specs
    from podium.gateway.counters import RedisCounters, redis_client
    from podium.gateway.directory import ModelDirectory
    from podium.gateway.dispatch import Dispatcher
    from podium.gateway.governor import Governor
    from podium.gateway.service import Gateway
    from podium.gateway.store import SPEND_COUNTER, add_spend
    from podium.gateway.table import RouteTable
    from podium.tracing.writer import TraceWriter

    settings, platform = runtime.settings, runtime.platform
    writer = runtime.get(TraceWriter)
    writer.add_counter(SPEND_COUNTER, add_spend)  # the spend ledger rides in the trace writer's transactions
    directory = runtime.provide(ModelDirectory, ModelDirectory(platform))
    table = runtime.provide(RouteTable, RouteTable(platform, directory, config_route_specs(settings)))
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    governor = runtime.provide(Governor, Governor(platform.db, writer, RedisCounters(redis) if redis else None))
    dispatcher = Dispatcher(table, writer, governor, settings.default_max_tokens, redis)
    runtime.provide(Gateway, Gateway(dispatcher, runtime.get(Authenticator), settings.stream_keepalive))  # type: ignore[type-abstract]

    async def load_routes() -> None:
        await asyncio.to_thread(table.refresh)

    async def load_limits() -> None:
        await asyncio.to_thread(governor.refresh)

    async def attach() -> None:
        bridge.attach(runtime)

    async def stop() -> None:
        bridge.detach(runtime)
        await directory.aclose()
        await table.aclose()
        await governor.aclose()
        if redis is not None:
            await redis.aclose()

    runtime.on_start("loading gateway routes (retried in the background)", load_routes)
    runtime.on_start("loading gateway limits (retried in the background)", load_limits)
    runtime.on_start("gateway for jobs", attach)
    runtime.on_stop("gateway connections", stop)
    runtime.loop("gateway route refresher", table.run_refresher)
    runtime.loop("gateway limits refresher", governor.run_refresher)


DOMAIN = Domain(
    name="gateway",
    requires=("auth", "models", "tracing"),
    tables=("podium.gateway.store",),
    http=("podium.gateway.v1:routes",),
    api=("podium.gateway.routes:router", "podium.gateway.routes:limits_router"),
    cli=(("routes", "podium.gateway.cli:routes_app"), ("limits", "podium.gateway.cli:limits_app")),
    setup="podium.gateway.domain:setup",
)
