"""The guard domain: guardrail scanners, the scan API, and policies the gateway applies to its calls."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Keep every policy in memory (refreshed on change and every two seconds) and plug the enforcer into the
    gateway as its guard hook."""
    import asyncio

    from podium.gateway.service import Gateway
    from podium.guard.enforce import Enforcer, PolicyBook
    from podium.guard.policies import on_change

    book = runtime.provide(PolicyBook, PolicyBook(runtime.platform))
    runtime.get(Gateway).guard = Enforcer(runtime.platform, book)
    stop_notes = on_change(runtime.platform, book.refresh)

    async def load() -> None:
        await asyncio.to_thread(book.refresh)

    async def stop() -> None:
        stop_notes()

    runtime.on_start("guard policies", load)
    runtime.on_stop("guard policies", stop)
    runtime.loop("guard policy refresher", book.run_refresher)


DOMAIN = Domain(
    name="guard",
    requires=("gateway",),
    tables=("podium.guard.store",),
    api=("podium.guard.routes:router",),
    pages=("podium.guard.pages:router",),
    nav=(NavEntry("Guardrails", "/guard"),),
    cli=(("guard", "podium.guard.cli:guard_app"),),
    setup="podium.guard.domain:setup",
)
