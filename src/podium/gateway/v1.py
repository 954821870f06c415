"""`/v1`: chat completions, completions, embeddings and models, OpenAI-compatible.

Plain ASGI handlers (the server's front door calls them directly, outside FastAPI) that only parse and
serialise: the request becomes an `Incoming`, the `Gateway` service turns it into an `Answer`, and the answer
is written back as JSON or as server-sent events. The front door gives each request its id, caps its body and
answers unknown paths and methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from podium.core import sse
from podium.core.http import ClientDisconnected, bearer_token, read_body, send_json
from podium.core.identity import Actor
from podium.core.runtime import Runtime
from podium.gateway import openapi
from podium.gateway.dispatch import traceparent
from podium.gateway.errors import GatewayError
from podium.gateway.prompting import session_id
from podium.gateway.service import KEEPALIVE, Answer, Gateway, Incoming

# request headers the handlers read, as ASGI spells them (lowercase bytes)
_WANTED = {
    b"authorization": "authorization",
    b"x-api-key": "x-api-key",
    b"cache-control": "cache-control",
    b"traceparent": "traceparent",  # W3C Trace Context: the call continues the caller's trace
}


def request_headers(scope: Scope) -> dict[str, str]:
    """The request headers the handlers use (key, cache control), in one scan of the raw headers."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = _WANTED.get(name)
        if key is not None:
            found[key] = value.decode("latin-1")
    return found


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Response headers as ASGI wants them."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object; a 400 says what is wrong with it."""
    if not raw:
        raise GatewayError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return body


async def send_error(send: Send, exc: GatewayError) -> None:
    """An error answer in OpenAI's shape."""
    headers = dict(exc.headers)
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    await send_json(send, exc.status, orjson.dumps(exc.body()), raw_headers(headers))


async def sse_stream(chunks: AsyncIterator[dict[str, Any] | None]) -> AsyncIterator[bytes]:
    """An answer's chunks as server-sent events, ended by `[DONE]`."""
    async for chunk in chunks:
        yield sse.KEEPALIVE if chunk is KEEPALIVE else sse.frame(chunk)
    yield sse.DONE


async def write(answer: Answer, scope: Scope, receive: Receive, send: Send) -> None:
    """Send an answer: JSON (serialised once, or already serialised by the gateway), or server-sent events."""
    headers = answer.headers
    if answer.status == 401:
        headers = {**headers, "WWW-Authenticate": "Bearer"}
    if answer.stream is not None:
        # Starlette's streaming response also watches for the client leaving, which ends the stream (recorded
        # as 499) instead of reading the rest of it from the upstream
        response = StreamingResponse(sse_stream(answer.stream), media_type="text/event-stream", headers=headers)
        await response(scope, receive, send)
        return
    if answer.body is None:
        await send({"type": "http.response.start", "status": answer.status, "headers": raw_headers(headers)})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = answer.raw if answer.raw is not None else orjson.dumps(answer.body)
    await send_json(send, answer.status, payload, raw_headers(headers))


def _until_disconnect(receive: Receive) -> Callable[[], Awaitable[None]]:
    async def gone() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    return gone


class Generate:
    """The handler of one generation endpoint (`chat`, `completion` or `embedding`)."""

    def __init__(self, gateway: Gateway, kind: str):
        self.gateway = gateway
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        headers = request_headers(scope)
        try:
            principal = await gateway.authenticate(bearer_token(headers))
            raw = await read_body(receive)
            body = parse_body(raw)
        except GatewayError as exc:
            await send_error(send, exc)
            return
        except ClientDisconnected:
            return
        incoming = Incoming(
            kind=self.kind,
            body=body,
            body_bytes=len(raw),
            request_id=scope.get("podium.request_id"),
            session_id=session_id(scope["headers"], body),
            cache_control=headers.get("cache-control"),
            raw=raw,
        )
        parent = traceparent(headers.get("traceparent"))
        answer = await gateway.handle(principal, incoming, gone=_until_disconnect(receive), parent=parent)
        await write(answer, scope, receive, send)


class ModelList:
    """`GET /v1/models`: routes and registered models, as OpenAI lists them."""

    def __init__(self, gateway: Gateway, runtime: Runtime):
        self.gateway = gateway
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from podium.models import service as models

        try:
            principal = await self.gateway.authenticate(bearer_token(request_headers(scope)))
        except GatewayError as exc:
            await send_error(send, exc)
            return
        rows = await asyncio.to_thread(models.list_models, self.runtime.platform, Actor(principal))
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
        for name, route in sorted(self.gateway.dispatcher.table.routes.items()):
            data.append(
                {"id": name, "object": "model", "created": 0, "owned_by": "podium-route", "source": route.source}
            )
        await send_json(send, 200, orjson.dumps({"object": "list", "data": data}))


class ModelDetail:
    """`GET /v1/models/{model}`."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = await self.gateway.authenticate(bearer_token(request_headers(scope)))
            route = await self.gateway.dispatcher.table.get_for(scope["path_params"]["model"], principal)
        except GatewayError as exc:
            await send_error(send, exc)
            return
        if route.target is not None:
            m = route.target.resolved.model
            created = int(m.created_at.timestamp())
            body = {"id": m.name, "object": "model", "created": created, "owned_by": m.provider}
        else:
            body = {"id": route.name, "object": "model", "created": 0, "owned_by": "podium-route"}
        await send_json(send, 200, orjson.dumps(body))


class OpenAPIDocument:
    """`GET /v1/openapi.json`: the `/v1` OpenAPI document (public, like `/api/openapi.json`)."""

    def __init__(self) -> None:
        self.raw = orjson.dumps(openapi.document())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.raw)


def routes(runtime: Runtime) -> list[BaseRoute]:
    """The `/v1` routes, bound to the process's gateway (plain ASGI endpoints, served by the front door)."""
    gateway = runtime.get(Gateway)
    return [
        Route("/v1/chat/completions", Generate(gateway, "chat"), methods=["POST"]),
        Route("/v1/completions", Generate(gateway, "completion"), methods=["POST"]),
        Route("/v1/embeddings", Generate(gateway, "embedding"), methods=["POST"]),
        Route("/v1/openapi.json", OpenAPIDocument(), methods=["GET"]),
        Route("/v1/models", ModelList(gateway, runtime), methods=["GET"]),
        Route("/v1/models/{model:path}", ModelDetail(gateway), methods=["GET"]),
    ]
