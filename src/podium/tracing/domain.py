"""The tracing domain: traces, spans and scores; the batched writer every recorder hands its records to;
OTLP in and out; queries, aggregates, retention and the trace pages."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Provide the process's `TraceWriter` (spilled records are replayed at start; it drains last at stop)
    and run retention in the background."""
    import asyncio
    import logging

    from podium.tracing.retention import retention_loop
    from podium.tracing.writer import TraceWriter

    settings, platform = runtime.settings, runtime.platform
    writer = runtime.provide(
        TraceWriter,
        TraceWriter(
            platform.db,
            settings.home_dir / "spill",
            max_queue=settings.trace_queue_size,
            process=settings.trace_writer == "process",
        ),
    )
    log = logging.getLogger("podium.tracing")

    async def start() -> None:
        try:
            await asyncio.to_thread(writer.replay_spill)
        except Exception:
            log.exception("replaying spilled trace records failed; they stay on disk for the next start")
        writer.start()

    async def stop() -> None:
        await asyncio.to_thread(writer.close, max(settings.graceful_timeout, 10.0))

    runtime.on_start("trace writer", start)
    runtime.on_stop("trace writer", stop)
    # deletes traces past each project's days, and payloads nothing refers to any more
    runtime.loop("trace retention", lambda: retention_loop(platform.db, platform.blobs))


DOMAIN = Domain(
    name="tracing",
    requires=("auth", "models"),
    tables=("podium.tracing.store", "podium.tracing.scores.store"),
    api=("podium.tracing.routes:router", "podium.tracing.otlp.routes:router", "podium.tracing.scores.routes:router"),
    pages=("podium.tracing.pages:router", "podium.tracing.metrics_page:router"),
    nav=(NavEntry("Traces", "/traces"), NavEntry("Metrics", "/trace-metrics")),
    cli=(("traces", "podium.tracing.cli:traces_app"), ("scores", "podium.tracing.scores.cli:scores_app")),
    setup="podium.tracing.domain:setup",
    blobs=("podium.tracing.payloads:referenced",),
)
