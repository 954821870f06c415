"""The process's ASGI entry: the domains' hot-path routes (`/v1`) straight to their handlers, the rest to FastAPI.

`/v1` is the request path of every LLM call, so it skips FastAPI's middleware stack (seven ASGI layers and
an OpenTelemetry lookup per request, about a quarter of a call's CPU when profiled) and gets what it needs
here, once per request: the request id (a sane incoming `X-Request-ID`, else a new one, echoed back), the
body-size limit, answers in OpenAI's error shape for a wrong method (405), a body over the limit (413) and
a bug (500, logged with the request id), and the Prometheus request metrics. Everything else (other `/v1`
routes such as the OTLP receiver, unknown paths, the management API, the dashboard, `/metrics`, health
checks, lifespan) goes to the FastAPI app, whose error handlers answer `/v1` paths in OpenAI's shape too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Message, Receive, Scope, Send

from podium.core.http import openai_error, request_id_for, send_json
from podium.server.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("podium.http")

_MAX_CHILDREN = 1_000  # metric children cached by (method, route, status)


class BodyTooLarge(Exception):
    """The request body grew past the limit while it was being read."""


class FrontDoor:
    """Dispatches HTTP requests for the hot-path routes itself and hands everything else to `app`."""

    def __init__(self, app: FastAPI, routes: Sequence[BaseRoute], max_body_bytes: int):
        self.app = self.api = app
        self.max_body = max_body_bytes
        self._exact: dict[str, Route] = {}  # paths without parameters: one dict lookup
        self._patterns: list[Route] = []
        for route in routes:
            if not isinstance(route, Route):
                raise TypeError(f"a hot-path route must be a starlette Route, not {type(route).__name__}")
            if route.param_convertors:
                self._patterns.append(route)
            else:
                self._exact[route.path] = route
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @property
    def state(self) -> State:
        """The FastAPI app's state (platform, runtime, settings)."""
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        route = self._exact.get(path)
        allowed: set[str] | None = None
        if route is not None:
            if route.methods and scope["method"] not in route.methods:
                allowed, route = route.methods, None
        else:
            for candidate in self._patterns:
                match, child = candidate.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    route = candidate
                    break
                if match is Match.PARTIAL and allowed is None:
                    allowed = candidate.methods or set()
        if route is None and allowed is None:  # not a hot-path route: FastAPI serves it (its /v1 answers, such as
            await self.app(scope, receive, send)  # the OTLP receiver, and a 404 in OpenAI's shape for the rest)
            return
        await self._serve(scope, receive, send, route, allowed)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, route: Route | None, allowed: set[str] | None
    ) -> None:
        start = time.perf_counter()
        incoming = length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"x-request-id":
                incoming = value.decode("latin-1")
        rid = request_id_for(incoming)
        scope["podium.request_id"] = rid
        rid_header = (b"x-request-id", rid.encode())
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        method: str = scope["method"]
        template = route.path if route is not None else "unmatched"
        try:
            if route is None:
                code = "method_not_allowed" if allowed is not None else "not_found"
                headers = [(b"allow", ", ".join(sorted(allowed)).encode())] if allowed else []
                await send_json(
                    send_with_id,
                    405 if allowed is not None else 404,
                    openai_error(f"no such endpoint: {method} {scope['path']}", code),
                    headers,
                )
            elif length is not None and length.isdigit() and int(length) > self.max_body:
                await self._too_large(send_with_id)
            else:
                if length is None:  # no declared length (chunked): count what arrives
                    receive = self._limited(receive)
                await route.app(scope, receive, send_with_id)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s (request %s)", method, scope["path"], rid)
            if not started:
                message = f"internal error; the server log has details (request id {rid})"
                await send_json(send_with_id, 500, openai_error(message, "internal_error", "server_error"))
        finally:
            self._observe(method, template, status, time.perf_counter() - start)

    def _limited(self, receive: Receive) -> Receive:
        limit, received = self.max_body, 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        return limited_receive

    async def _too_large(self, send: Send) -> None:
        message = f"request body is larger than the limit of {self.max_body} bytes (setting max_body_bytes)"
        await send_json(send, 413, openai_error(message, "body_too_large"), [(b"connection", b"close")])

    def _observe(self, method: str, template: str, status: int, seconds: float) -> None:
        key = (method, template, status)
        children = self._metrics.get(key)
        if children is None:
            if len(self._metrics) > _MAX_CHILDREN:
                self._metrics.clear()
            children = self._metrics[key] = (
                HTTP_REQUESTS.labels(method, template, str(status)),
                HTTP_LATENCY.labels(method, template),
            )
        children[0].inc()
        children[1].observe(seconds)
