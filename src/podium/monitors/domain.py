"""The monitors domain: figures over the traces and their scores, read from rollups, as an API, a CLI,
Prometheus metrics and dashboard pages."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Roll new traces and scores into the monitor rollup in the background."""
    from podium.monitors.roller import roll_loop

    db = runtime.platform.db
    runtime.loop("monitors roll", lambda: roll_loop(db))


DOMAIN = Domain(
    name="monitors",
    requires=("tracing", "gateway"),
    tables=("podium.monitors.store",),
    api=("podium.monitors.routes:router",),
    pages=("podium.monitors.pages:router",),
    nav=(NavEntry("Monitoring overview", "/overview"), NavEntry("Monitors", "/monitors")),
    cli=(("monitors", "podium.monitors.cli:monitors_app"),),
    setup="podium.monitors.domain:setup",
)
