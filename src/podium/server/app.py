"""The app factory: one FastAPI app mounting every domain's API router and dashboard pages, behind the front
door that serves the domains' hot-path routes (`/v1`) directly.

`podium serve` runs it under uvicorn (`factory=True`), once per worker process. Startup starts the
job backend and the periodic flushers; shutdown (after uvicorn drained in-flight requests) stops
jobs and flushes every buffer before the process exits.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from podium.core.config import Settings, load_settings
from podium.core.domains import domains, load, setup_all, upload_paths
from podium.core.errors import PodiumError
from podium.core.http import (
    ORJSONResponse,
    RequestContextMiddleware,
    http_error_handler,
    podium_error_handler,
    unhandled_error_handler,
    validation_error_handler,
)
from podium.core.identity import Authenticator
from podium.core.migrate import schema_state
from podium.core.platform import Platform
from podium.core.runtime import Runtime
from podium.core.version import __version__
from podium.models.supervisor import served_models
from podium.server import pages as server_pages
from podium.server.frontdoor import FrontDoor
from podium.server.metrics import MetricsMiddleware, metrics_endpoint
from podium.web.shell import STATIC, LoginRequired

log = logging.getLogger("podium.server")


def create_app(settings: Settings | None = None) -> FrontDoor:
    """Build the Podium app for one process: every installed domain's setup, routes and pages. The result is
    the ASGI app to serve; its `api` is the FastAPI app and its `state` that app's state."""
    settings = settings or load_settings()
    platform = Platform.from_settings(settings)
    runtime = Runtime(settings, platform)
    setup_all(runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        # objects made at startup (modules, app, tables) never die: keep them out of the cyclic collector's
        # full passes, which otherwise stall the event loop for tens of milliseconds under load
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)  # fewer young-generation passes; request objects rarely form cycles
        try:
            yield
        finally:
            await runtime.stop()

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
    app.state.runtime = runtime
    app.state.keys = runtime.get(Authenticator)  # type: ignore[type-abstract]
    app.state.settings = settings
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
        """The database is reachable and at the code's migration head; and the state of each local model
        this server serves (`loading` ones are waited for by calls, up to `model_load_wait`)."""
        try:
            state = schema_state(platform.db)
        except PodiumError as exc:  # the reason goes to the log: it may name the database's host and user
            log.warning("readiness: the database is unreachable (%s)", exc.message)
            return ORJSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        ok = state.status == "current"
        body: dict[str, Any] = {"status": "ready" if ok else "unavailable", "database": "ok", "schema": state.describe}
        models = served_models(settings)
        if models:
            body["models"] = models
            body["loading"] = sorted(name for name, s in models.items() if s in ("loading", "restarting"))
        return ORJSONResponse(body, status_code=200 if ok else 503)

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    hot = [route for d in domains() for ref in d.http for route in load(ref)(runtime)]
    for d in domains():
        for ref in d.api:
            app.include_router(load(ref))
    app.include_router(server_pages.router)
    for d in domains():
        for ref in d.pages:
            app.include_router(load(ref))
    app.mount("/static", StaticFiles(directory=Path(STATIC)), name="static")

    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        uploads=upload_paths(),
    )
    app.add_middleware(MetricsMiddleware)
    return FrontDoor(app, hot, settings.max_body_bytes)


async def _login_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)
