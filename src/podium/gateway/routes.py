"""`/v1`: chat completions, completions, embeddings and models, OpenAI-compatible.

Plain Starlette routes (no FastAPI machinery on the hot path); keys are checked against the cached key
table; models resolve through the in-memory directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from podium.core.errors import PodiumError
from podium.core.http import bearer_token
from podium.core.platform import Platform
from podium.gateway.directory import ModelDirectory, Target
from podium.gateway.errors import GatewayError, sse_error
from podium.models import service as models
from podium.models.providers.base import UpstreamError

JSON = "application/json"


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _directory(request: Request) -> ModelDirectory:
    directory: ModelDirectory = request.app.state.directory
    return directory


def _authenticate(request: Request) -> None:
    try:
        _platform(request).keys.authenticate(bearer_token(request.headers))
    except PodiumError as exc:
        raise GatewayError.from_podium(exc) from None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise GatewayError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _model_field(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise GatewayError(400, "'model' is required", code="missing_field", param="model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "'model' must be a non-empty string", code="invalid_type", param="model")
    return model.strip()


def _target(request: Request, body: dict[str, Any], task: tuple[str, ...]) -> Target:
    target = _directory(request).lookup(_model_field(body))
    if target.task not in task:
        want = " or ".join(task)
        raise GatewayError(
            400,
            f"model {target.resolved.model.name!r} is a {target.task} model; this endpoint needs a {want} model",
            code="wrong_model_task",
            param="model",
        )
    problem = _directory(request).unavailable(target)
    if problem is not None:
        raise problem
    return target


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


async def _sse(chunks: AsyncIterator[dict[str, Any]], include_usage: bool) -> AsyncIterator[bytes]:
    """Server-sent events from provider chunks; usage rides on the final chunk (or its own if asked)."""
    held: dict[str, Any] | None = None
    try:
        async for chunk in chunks:
            if not chunk.get("choices") and chunk.get("usage") is not None:
                if include_usage:
                    if held is not None:
                        yield b"data: " + orjson.dumps(held) + b"\n\n"
                        held = None
                    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                elif held is not None:
                    held["usage"] = chunk["usage"]
                continue
            if held is not None:
                yield b"data: " + orjson.dumps(held) + b"\n\n"
                held = None
            choices = chunk.get("choices") or []
            if choices and choices[-1].get("finish_reason"):
                held = chunk
                continue
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        if held is not None:
            yield b"data: " + orjson.dumps(held) + b"\n\n"
        yield b"data: [DONE]\n\n"
    except UpstreamError as exc:
        yield sse_error(GatewayError.from_upstream(exc))
        yield b"data: [DONE]\n\n"


async def _first_then_rest(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Pull the first chunk before answering, so an upstream that fails at once yields a proper HTTP error."""
    iterator = chunks.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return _empty()

    async def rest() -> AsyncIterator[dict[str, Any]]:
        yield first
        async for item in iterator:
            yield item

    return rest()


async def _empty() -> AsyncIterator[dict[str, Any]]:
    return
    yield {}


async def _generate(request: Request, kind: str) -> Response:
    try:
        _authenticate(request)
        body = await _json_body(request)
        if kind == "chat":
            if "messages" not in body:
                raise GatewayError(400, "'messages' is required", code="missing_field", param="messages")
            target = _target(request, body, ("chat",))
        else:
            if "prompt" not in body:
                raise GatewayError(400, "'prompt' is required", code="missing_field", param="prompt")
            target = _target(request, body, ("chat", "completion"))
        provider = target.provider
        stream = body.get("stream") is True
        if stream:
            opts = body.get("stream_options") or {}
            include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
            source = provider.chat_stream(body) if kind == "chat" else provider.complete_stream(body)
            chunks = await _first_then_rest(source)
            return StreamingResponse(_sse(chunks, include_usage), media_type="text/event-stream")
        result = await (provider.chat(body) if kind == "chat" else provider.complete(body))
        return _json(result)
    except GatewayError as exc:
        return exc.response()
    except UpstreamError as exc:
        return GatewayError.from_upstream(exc).response()


async def chat_completions(request: Request) -> Response:
    """`POST /v1/chat/completions`."""
    return await _generate(request, "chat")


async def completions(request: Request) -> Response:
    """`POST /v1/completions`."""
    return await _generate(request, "completion")


async def embeddings(request: Request) -> Response:
    """`POST /v1/embeddings`."""
    try:
        _authenticate(request)
        body = await _json_body(request)
        if "input" not in body:
            raise GatewayError(400, "'input' is required", code="missing_field", param="input")
        target = _target(request, body, ("embedding",))
        return _json(await target.provider.embed(body))
    except GatewayError as exc:
        return exc.response()
    except UpstreamError as exc:
        return GatewayError.from_upstream(exc).response()


async def list_models(request: Request) -> Response:
    """`GET /v1/models`: every registered model, as OpenAI lists them."""
    try:
        _authenticate(request)
    except GatewayError as exc:
        return exc.response()
    rows = await asyncio.to_thread(models.list_models, _platform(request).db)
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
    return _json({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    """`GET /v1/models/{model}`."""
    try:
        _authenticate(request)
        ref = request.path_params["model"]
        target = _directory(request).lookup(ref)
    except GatewayError as exc:
        return exc.response()
    m = target.resolved.model
    return _json({"id": m.name, "object": "model", "created": int(m.created_at.timestamp()), "owned_by": m.provider})


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
]
