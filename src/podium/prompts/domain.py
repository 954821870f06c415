"""The prompts domain: the prompt registry (versions, labels, rendering), prompt references in the gateway,
experiments with a bandit, the playground, and the prompt pages."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Keep a snapshot of prompts and running experiments for the gateway (refreshed every second), plug it
    in as the gateway's prompt resolver, and move the shares of auto experiments in the background."""
    import asyncio

    from podium.gateway.service import Gateway
    from podium.prompts.directory import PromptDirectory
    from podium.prompts.experiments.service import bandit_loop
    from podium.prompts.references import PromptReferences

    platform = runtime.platform
    directory = runtime.provide(PromptDirectory, PromptDirectory(platform))
    runtime.get(Gateway).prompts = PromptReferences(directory)

    async def start() -> None:
        await asyncio.to_thread(directory.refresh)

    runtime.on_start("prompt snapshot", start)
    runtime.loop("prompt snapshot refresher", directory.run_refresher)
    every = runtime.settings.experiment_rebalance_seconds
    runtime.loop("prompt experiment bandit", lambda: bandit_loop(platform.db, every))


DOMAIN = Domain(
    name="prompts",
    requires=("gateway", "tracing"),
    tables=("podium.prompts.store",),
    api=(
        "podium.prompts.routes:router",
        "podium.prompts.routes:playground_router",
        "podium.prompts.experiments.routes:router",
    ),
    pages=("podium.prompts.pages:router",),
    nav=(NavEntry("Prompts", "/prompts"),),
    cli=(("prompts", "podium.prompts.cli:prompts_app"),),
    setup="podium.prompts.domain:setup",
)
