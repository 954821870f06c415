"""The jobs domain: background work with progress, run by the local backend of each server process."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Start the local job backend (when `job_workers` > 0) with the server, and stop it first at shutdown."""
    import asyncio

    from podium.jobs.service import LocalBackend

    workers = runtime.settings.job_workers
    if workers <= 0:
        return
    backend = LocalBackend(runtime.platform, workers)

    async def start() -> None:
        backend.start()

    async def stop() -> None:
        await asyncio.to_thread(backend.stop, min(runtime.settings.graceful_timeout, 10.0))

    runtime.on_start("job backend", start)
    runtime.on_stop("job backend", stop)


DOMAIN = Domain(
    name="jobs",
    requires=("auth",),
    tables=("podium.jobs.store",),
    api=("podium.jobs.routes:router",),
    pages=("podium.jobs.pages:router",),
    nav=(NavEntry("Jobs", "/jobs"),),
    cli=(("jobs", "podium.jobs.cli:jobs_app"),),
    setup="podium.jobs.domain:setup",
)
