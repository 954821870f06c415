"""The app factory: one FastAPI app mounting every domain's API router and dashboard pages.

`podium serve` runs it under uvicorn (`factory=True`), once per worker process. Startup starts the
job backend and the periodic flushers; shutdown (after uvicorn drained in-flight requests) stops
jobs and flushes every buffer before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from podium import __version__
from podium.artifacts import jobs as _artifacts  # noqa: F401  (registers job kinds)
from podium.auth import pages as auth_pages
from podium.auth import routes as auth_routes
from podium.auth import service as auth_service
from podium.core.config import Settings, load_settings
from podium.core.errors import PodiumError
from podium.core.http import (
    ORJSONResponse,
    RequestContextMiddleware,
    http_error_handler,
    podium_error_handler,
    unhandled_error_handler,
    validation_error_handler,
)
from podium.core.migrate import schema_state
from podium.core.platform import Platform
from podium.gateway import routes as gateway_api
from podium.gateway import v1 as gateway_routes
from podium.gateway.counters import RedisCounters, redis_client
from podium.gateway.directory import ModelDirectory
from podium.gateway.dispatch import Dispatcher
from podium.gateway.governor import Governor
from podium.gateway.service import config_route_specs
from podium.gateway.store import SPEND_COUNTER, add_spend
from podium.gateway.table import RouteTable
from podium.jobs import pages as job_pages
from podium.jobs import routes as job_routes
from podium.jobs.service import LocalBackend
from podium.models import jobs as _model_jobs  # noqa: F401  (registers job kinds)
from podium.models import pages as model_pages
from podium.models import routes as model_routes
from podium.prompts import pages as prompt_pages
from podium.prompts import routes as prompt_routes
from podium.prompts.directory import PromptDirectory
from podium.prompts.experiments import routes as experiment_routes
from podium.prompts.experiments.service import bandit_loop
from podium.server.metrics import MetricsMiddleware, metrics_endpoint
from podium.tracing import pages as tracing_pages
from podium.tracing import routes as tracing_routes
from podium.tracing.otlp import routes as otlp_routes
from podium.tracing.scores import routes as score_routes
from podium.tracing.service import retention_loop
from podium.tracing.writer import TraceWriter
from podium.web import pages as shell_pages
from podium.web.shell import STATIC, LoginRequired

log = logging.getLogger("podium.server")

# Each domain adds its API router and its pages here; later domains append to these lists.
API_ROUTERS = [
    auth_routes.router,
    job_routes.router,
    model_routes.router,
    gateway_api.router,
    gateway_api.limits_router,
    tracing_routes.router,
    otlp_routes.router,
    prompt_routes.router,
    experiment_routes.router,
    score_routes.router,
]
PAGE_ROUTERS = [
    shell_pages.router,
    auth_pages.router,
    job_pages.router,
    model_pages.router,
    tracing_pages.router,
    prompt_pages.router,
]

Flusher = Callable[[], object]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Podium app for one process."""
    settings = settings or load_settings()
    platform = Platform.from_settings(settings)
    directory = ModelDirectory(platform)
    writer = TraceWriter(
        platform.db,
        settings.home_dir / "spill",
        max_queue=settings.trace_queue_size,
        process=settings.trace_writer == "process",
    )
    writer.add_counter(SPEND_COUNTER, add_spend)
    table = RouteTable(platform, directory, config_route_specs(settings))
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    governor = Governor(platform.db, writer, RedisCounters(redis) if redis is not None else None)
    prompts = PromptDirectory(platform)  # prompt references in chat requests, from a refreshed snapshot
    dispatcher = Dispatcher(table, writer, governor, settings.default_max_tokens, redis, prompts)
    keys = auth_service.key_cache(platform.db)
    flushers: list[Flusher] = [keys.flush_usage]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = None
        if settings.job_workers > 0:
            backend = LocalBackend(platform, settings.job_workers)
            backend.start()
        try:
            await asyncio.to_thread(writer.replay_spill)
        except Exception:
            log.exception("replaying spilled trace records failed; they stay on disk for the next start")
        writer.start()
        try:
            await asyncio.to_thread(table.refresh)
        except Exception:
            log.exception("loading gateway routes failed; retrying in the background")
        try:
            await asyncio.to_thread(governor.refresh)
        except Exception:
            log.exception("loading gateway limits failed; retrying in the background")
        try:
            await asyncio.to_thread(prompts.refresh)
        except Exception:
            log.exception("loading prompts failed; retrying in the background")
        # objects made at startup (modules, app, tables) never die: keep them out of the cyclic collector's
        # full passes, which otherwise stall the event loop for tens of milliseconds under load
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)  # fewer young-generation passes; request objects rarely form cycles
        task = asyncio.create_task(_flush_periodically(flushers, 5.0))
        refresher = asyncio.create_task(table.run_refresher())
        limits_refresher = asyncio.create_task(governor.run_refresher())
        # deletes traces past each project's days, and payloads nothing refers to any more
        retention = asyncio.create_task(retention_loop(platform.db, platform.blobs))
        bandit = asyncio.create_task(bandit_loop(platform.db))  # moves shares of auto prompt experiments
        prompts_refresher = asyncio.create_task(prompts.run_refresher())
        try:
            yield
        finally:
            for t in (task, refresher, limits_refresher, retention, prompts_refresher, bandit):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if backend is not None:
                await asyncio.to_thread(backend.stop, min(settings.graceful_timeout, 10.0))
            await directory.aclose()
            await table.aclose()
            await governor.aclose()
            if redis is not None:
                await redis.aclose()
            for flush in flushers:
                try:
                    await asyncio.to_thread(flush)
                except Exception:
                    log.exception("flush at shutdown failed")
            await asyncio.to_thread(writer.close, max(settings.graceful_timeout, 10.0))

    app = FastAPI(
        title="Podium",
        version=__version__,
        description="Self-hosted LLMOps platform: the management API.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        default_response_class=ORJSONResponse,
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.state.keys = keys
    app.state.directory = directory
    app.state.routes = table
    app.state.dispatcher = dispatcher
    app.state.prompts = prompts
    app.state.governor = governor
    app.state.trace_writer = writer
    app.state.settings = settings
    app.state.flushers = flushers
    app.state.secret_key = platform.secret_key

    app.add_exception_handler(PodiumError, podium_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
    app.add_exception_handler(LoginRequired, _login_redirect)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        """The database is reachable and at the code's migration head."""
        try:
            state = schema_state(platform.db)
        except PodiumError as exc:
            return ORJSONResponse({"status": "unavailable", "database": exc.message}, status_code=503)
        ok = state.status == "current"
        body = {"status": "ready" if ok else "unavailable", "database": "ok", "schema": state.describe}
        return ORJSONResponse(body, status_code=200 if ok else 503)

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.router.routes.extend(gateway_routes.routes)
    for router in API_ROUTERS:
        app.include_router(router)
    for router in PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(STATIC)), name="static")

    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    return app


async def _login_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)


async def _flush_periodically(flushers: list[Flusher], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        for flush in flushers:
            try:
                await asyncio.to_thread(flush)
            except Exception:
                log.exception("periodic flush failed")
