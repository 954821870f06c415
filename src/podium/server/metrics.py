"""Prometheus metrics for the server; multi-process aware when `PROMETHEUS_MULTIPROC_DIR` is set."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.core.errors import PodiumError

HTTP_REQUESTS = Counter("podium_http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "podium_http_request_duration_seconds",
    "Time to answer an HTTP request (to the end of the body).",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def render_metrics() -> tuple[bytes, str]:
    """The text exposition of every metric (across processes in multi-process mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


async def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics` (with `metrics_require_key`, for callers with a valid API key only)."""
    if request.app.state.settings.metrics_require_key:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        try:
            await request.app.state.keys.authenticate_async(token)
        except PodiumError as exc:
            return JSONResponse(
                {"error": {"code": exc.code, "message": f"/metrics needs an API key: {exc.message}"}},
                status_code=exc.status,
            )
    body, content_type = render_metrics()
    return Response(body + await _monitors(request) + await _alerts(request), media_type=content_type)


async def _monitors(request: Request) -> bytes:
    """The monitors' gauges (read from the database); nothing if they cannot be read now."""
    from podium.monitors.prometheus import exposition

    try:
        return await asyncio.to_thread(exposition, request.app.state.platform)
    except Exception:
        logging.getLogger("podium.monitors").exception("reading the monitors for /metrics failed")
        return b""


async def _alerts(request: Request) -> bytes:
    """The alert rules' state gauges (read from the database); nothing if they cannot be read now."""
    from podium.alerts.prometheus import exposition

    try:
        return await asyncio.to_thread(exposition, request.app.state.platform)
    except Exception:
        logging.getLogger("podium.alerts").exception("reading the alert states for /metrics failed")
        return b""


class MetricsMiddleware:
    """Counts requests and times them by route template (not raw path, to bound label values)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "static" if scope["path"].startswith("/static") else "unmatched"
            )
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(time.perf_counter() - start)
