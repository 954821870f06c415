"""`/v1`: chat completions, completions, embeddings and models, OpenAI-compatible.

Plain Starlette routes (no FastAPI machinery on the hot path) that only parse and serialise: the request
becomes an `Incoming`, the `Gateway` service turns it into an `Answer`, and the answer is written back as
JSON or as server-sent events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute
from starlette.routing import Route as HttpRoute

from podium.core import sse
from podium.core.http import bearer_token
from podium.core.runtime import Runtime
from podium.gateway.errors import GatewayError
from podium.gateway.prompting import session_id
from podium.gateway.service import KEEPALIVE, Answer, Gateway, Incoming

JSON = "application/json"
Handler = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON body rendered by orjson."""
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


async def parse_body(request: Request) -> tuple[dict[str, Any], int]:
    """The request's JSON object and its size in bytes; a 400 says what is wrong with it."""
    raw = await request.body()
    if not raw:
        raise GatewayError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return body, len(raw)


async def sse_stream(chunks: AsyncIterator[dict[str, Any] | None]) -> AsyncIterator[bytes]:
    """An answer's chunks as server-sent events, ended by `[DONE]`."""
    async for chunk in chunks:
        yield sse.KEEPALIVE if chunk is KEEPALIVE else sse.frame(chunk)
    yield sse.DONE


def write(answer: Answer) -> Response:
    """The HTTP response of an answer."""
    headers = answer.headers
    if answer.status == 401:
        headers = {**headers, "WWW-Authenticate": "Bearer"}
    if answer.stream is not None:
        return StreamingResponse(sse_stream(answer.stream), media_type="text/event-stream", headers=headers)
    if answer.body is None:
        return Response(status_code=answer.status, headers=headers)
    return json_response(answer.body, answer.status, headers)


def _until_disconnect(request: Request) -> Callable[[], Awaitable[None]]:
    async def gone() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return gone


def generate(gateway: Gateway, kind: str) -> Handler:
    """The handler of one generation endpoint (`chat`, `completion` or `embedding`)."""

    async def handler(request: Request) -> Response:
        try:
            principal = await gateway.authenticate(bearer_token(request.headers))
            body, size = await parse_body(request)
        except GatewayError as exc:
            return exc.response()
        incoming = Incoming(
            kind=kind,
            body=body,
            body_bytes=size,
            request_id=request.scope.get("podium.request_id"),
            session_id=session_id(request.scope["headers"], body),
            cache_control=request.headers.get("cache-control"),
        )
        return write(await gateway.handle(principal, incoming, gone=_until_disconnect(request)))

    return handler


def model_list(gateway: Gateway, runtime: Runtime) -> Handler:
    """`GET /v1/models`: routes and registered models, as OpenAI lists them."""
    from podium.models import service as models

    async def handler(request: Request) -> Response:
        try:
            await gateway.authenticate(bearer_token(request.headers))
        except GatewayError as exc:
            return exc.response()
        rows = await asyncio.to_thread(models.list_models, runtime.platform.db)
        data = [
            {
                "id": m.name,
                "object": "model",
                "created": int(m.created_at.timestamp()),
                "owned_by": m.provider,
                "task": m.task,
            }
            for m in rows
        ]
        for name, route in sorted(gateway.dispatcher.table.routes.items()):
            data.append(
                {"id": name, "object": "model", "created": 0, "owned_by": "podium-route", "source": route.source}
            )
        return json_response({"object": "list", "data": data})

    return handler


def model_detail(gateway: Gateway) -> Handler:
    """`GET /v1/models/{model}`."""

    async def handler(request: Request) -> Response:
        try:
            await gateway.authenticate(bearer_token(request.headers))
            route = gateway.dispatcher.table.get(request.path_params["model"])
        except GatewayError as exc:
            return exc.response()
        if route.target is not None:
            m = route.target.resolved.model
            created = int(m.created_at.timestamp())
            return json_response({"id": m.name, "object": "model", "created": created, "owned_by": m.provider})
        return json_response({"id": route.name, "object": "model", "created": 0, "owned_by": "podium-route"})

    return handler


def routes(runtime: Runtime) -> list[BaseRoute]:
    """The `/v1` routes, bound to the process's gateway."""
    gateway = runtime.get(Gateway)
    return [
        HttpRoute("/v1/chat/completions", generate(gateway, "chat"), methods=["POST"]),
        HttpRoute("/v1/completions", generate(gateway, "completion"), methods=["POST"]),
        HttpRoute("/v1/embeddings", generate(gateway, "embedding"), methods=["POST"]),
        HttpRoute("/v1/models", model_list(gateway, runtime), methods=["GET"]),
        HttpRoute("/v1/models/{model:path}", model_detail(gateway), methods=["GET"]),
    ]
