"""The alerts domain: rules on monitors and drift, their states, history and notifications, served through
`/api/alerts`, `podium alerts` and the dashboard; each server process evaluates the rules every
`alerts_interval` seconds and sends the notifications in the background."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

from podium.core.domains import Domain, NavEntry

if TYPE_CHECKING:
    from podium.core.runtime import Runtime

DOMAIN = Domain(
    name="alerts",
    requires=("monitors", "drift", "jobs"),
    tables=("podium.alerts.store",),
    api=("podium.alerts.routes:router",),
    pages=("podium.alerts.pages:router",),
    nav=(NavEntry("Alerts", "/alerts"),),
    cli=(("alerts", "podium.alerts.cli:alerts_app"),),
    setup="podium.alerts.domain:setup",
)


def setup(runtime: Runtime) -> None:
    """Start this process's notification sender, and the evaluator loop unless `alerts_interval` is 0."""
    from podium.alerts import service
    from podium.alerts.delivery import Deliverer
    from podium.core.periodic import run_every

    deliverer = runtime.provide(Deliverer, Deliverer(runtime.platform))
    stop_waking = service.on_queued(deliverer.wake)
    runtime.loop("alert notifications", deliverer.run)

    async def forget() -> None:
        stop_waking()

    runtime.on_stop("alert notifications", forget)
    every = runtime.settings.alerts_interval
    if every > 0:
        holder = f"{socket.gethostname()[:60]}:{os.getpid()}:{id(runtime)}"

        keep = timedelta(days=runtime.settings.alerts_retention_days)

        def round_() -> None:
            if service.take_turn(runtime.platform, holder, every * 0.9):  # one process of the server per round
                service.evaluate_all(runtime.platform)
                if keep:
                    service.prune(runtime.platform, keep)

        async def evaluate() -> None:
            await run_every(every, round_, "evaluating alert rules failed")

        runtime.loop("alert rules", evaluate)
