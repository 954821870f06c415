"""`/v1`: chat completions, completions, embeddings and models, OpenAI-compatible.

Plain Starlette routes (no FastAPI machinery on the hot path). Keys are checked against the cached key
table, names resolve through the in-memory route table, a chat request's `prompt` reference renders from
the in-memory prompt directory, and the record of each call goes to the batched trace writer: no database
round trip per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from podium.core.errors import PodiumError
from podium.core.http import bearer_token, get_authenticator
from podium.core.identity import Principal
from podium.core.platform import Platform
from podium.gateway.cache import Lookup, as_chunks
from podium.gateway.dispatch import Call, Dispatcher, Upstream, first_then_rest
from podium.gateway.errors import GatewayError, as_gateway_error, sse_error
from podium.gateway.guardrails import Guardrail, GuardrailViolation
from podium.gateway.prompting import PromptUse, session_id
from podium.models.providers.base import UpstreamError

JSON = "application/json"
KEEPALIVE = b": keep-alive\n\n"


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.runtime.get(Dispatcher)
    return dispatcher


async def _authenticate(request: Request) -> Principal:
    try:
        return await get_authenticator(request).authenticate_async(bearer_token(request.headers))
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


def _check_fields(kind: str, body: dict[str, Any]) -> None:
    """The checks every upstream would make anyway, done here so bad input never costs an upstream call."""
    if kind == "chat":
        messages = body.get("messages")
        if messages is None:
            raise GatewayError(400, "'messages' is required", code="missing_field", param="messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(400, "'messages' must be a non-empty array", code="invalid_type", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise GatewayError(
                    400, f"messages[{i}] must be an object with a 'role'", code="invalid_type", param=f"messages[{i}]"
                )
    elif kind == "completion":
        if "prompt" not in body:
            raise GatewayError(400, "'prompt' is required", code="missing_field", param="prompt")
    elif "input" not in body:
        raise GatewayError(400, "'input' is required", code="missing_field", param="input")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise GatewayError(400, "'stream' must be a boolean", code="invalid_type", param="stream")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise GatewayError(400, "'user' must be a string", code="invalid_type", param="user")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


async def _until_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _or_disconnect(request: Request, coro: Any) -> Any:
    """Await `coro`, cancelling it if the client goes away first (raises `ClientGone`)."""
    task = asyncio.ensure_future(coro)
    watcher = asyncio.ensure_future(_until_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise ClientGone()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _from_cache(call: Call, found: Lookup) -> Response:
    """Answer from the cache: no upstream call, cost $0 (tokens are still counted)."""
    hit = found.answer
    assert hit is not None
    call.cache = found.status
    call.cache_similarity = found.similarity
    call.set_usage(hit.get("usage"))
    call.cost_micros = 0
    call.output = hit
    call.ttft_ms = (time.perf_counter() - call.t0) * 1000
    if call.stream:
        opts = call.body.get("stream_options")
        frames = as_chunks(hit, bool(isinstance(opts, dict) and opts.get("include_usage")))
        return StreamingResponse(iter(frames), media_type="text/event-stream", headers=call.headers())
    return _json(hit, headers=call.headers())


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def _fail(call: Call, exc: GatewayError | UpstreamError | GuardrailViolation) -> Response:
    error = as_gateway_error(exc)
    call.status = error.status
    call.error = error.message
    return error.response(call.headers() if call.route else None)


async def _generate(request: Request, kind: str) -> Response:
    dispatcher = _dispatcher(request)
    try:
        principal = await _authenticate(request)
        body = await _json_body(request)
        session = session_id(request.scope["headers"], body)
        used: PromptUse | None = None
        if kind == "chat" and "prompt" in body:  # a prompt reference: render it into the request
            if dispatcher.prompts is None:
                raise GatewayError(400, "prompt references are not served by this gateway", code="invalid_prompt")
            body, used = await dispatcher.prompts.apply(body, session)
        _check_fields(kind, body)
        call = Call(
            kind=kind,
            body=body,
            principal=principal,
            model=_model_field(body),
            stream=body.get("stream") is True,
            request_id=request.scope.get("podium.request_id"),
            session_id=session,
            prompt=used,
        )
    except GatewayError as exc:
        return exc.response()
    try:
        tasks = ("chat",) if kind == "chat" else ("chat", "completion") if kind == "completion" else ("embedding",)
        body_bytes = len(await request.body()) if used is None else len(orjson.dumps(body))
        route = await dispatcher.prepare(call, tasks, body_bytes)
        found = await dispatcher.cache.lookup(
            route.spec.cache, route.name, kind, body, request.headers.get("cache-control")
        )
        call.cache = found.status
        if found.answer is not None:
            response = _from_cache(call, found)
            await dispatcher.finish(call)
            return response
        if call.stream and kind != "embedding":
            return await _stream(request, dispatcher, call, route, found)
        result = await dispatcher.complete(call, route, lambda running: _or_disconnect(request, running))
        if found.key is not None or found.vector is not None:
            await dispatcher.cache.store(found, route.spec.cache.ttl, result)
        response = _json(result, headers=call.headers())
    except (GatewayError, UpstreamError, GuardrailViolation) as exc:
        response = _fail(call, exc)
    except ClientGone:
        call.status = 499
        call.error = "the client disconnected before the answer was ready"
        response = Response(status_code=499)
    await dispatcher.finish(call)
    return response


async def _stream(request: Request, dispatcher: Dispatcher, call: Call, route: Any, found: Lookup) -> Response:
    """Stream from the first deployment that yields a first chunk; keep-alive comments while waiting."""
    body = call.body
    opts = body.get("stream_options")
    include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
    keepalive = float(request.app.state.settings.stream_keepalive)
    store = None
    if found.key is not None or found.vector is not None:

        async def store(result: dict[str, Any]) -> None:
            await dispatcher.cache.store(found, route.spec.cache.ttl, result)

    async def op(up: Upstream) -> tuple[dict[str, Any] | None, AsyncIterator[Any]]:
        source = (
            up.provider.chat_stream(body, up.timeouts)
            if call.kind == "chat"
            else up.provider.complete_stream(body, up.timeouts)
        )
        opened = await first_then_rest(source)
        call.ttft_ms = (time.perf_counter() - call.t0) * 1000
        return opened

    opening = asyncio.ensure_future(dispatcher.attempt(call, route, op))
    done, _ = await asyncio.wait({opening}, timeout=keepalive)
    if done:  # the first token came quickly: a failure can still be a plain HTTP error, with full headers
        try:
            opening.result()
        except (GatewayError, UpstreamError) as exc:
            response = _fail(call, exc)
            await dispatcher.finish(call)
            return response
        headers = call.headers()
    else:  # headers go now; keep-alive comments follow until the first token
        headers = {"x-podium-trace-id": call.trace_id, "x-podium-route": route.name}
        if call.prompt is not None:
            headers["x-podium-prompt-version"] = call.prompt.ref
    events = _events(call, dispatcher, opening, include_usage, keepalive, route.guards, store)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _events(
    call: Call,
    dispatcher: Dispatcher,
    opening: asyncio.Future[Any],
    include_usage: bool,
    keepalive: float,
    guards: list[Guardrail],
    store: Callable[[dict[str, Any]], Awaitable[None]] | None,
) -> AsyncIterator[bytes]:
    """Server-sent events; usage rides on the final chunk (or its own, if the client asked)."""
    pieces: list[str] = []
    finish_reason = None
    plain = True  # one choice of plain text: the assembled answer can be cached
    meta: dict[str, Any] = {}
    usage: Any = None
    rest: AsyncIterator[Any] | None = None
    try:
        while not (await asyncio.wait({opening}, timeout=keepalive))[0]:
            yield KEEPALIVE
        try:
            first, rest = opening.result()
        except (GatewayError, UpstreamError) as exc:
            error = exc if isinstance(exc, GatewayError) else GatewayError.from_upstream(exc)
            call.status, call.error = error.status, error.message
            yield sse_error(error)
            yield b"data: [DONE]\n\n"
            return
        assert rest is not None
        held: dict[str, Any] | None = None

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            if first is not None:
                yield first
            async for c in rest:
                yield c

        try:
            async for chunk in chunks():
                meta = meta or {k: chunk.get(k) for k in ("id", "created", "model")}
                if not chunk.get("choices") and chunk.get("usage") is not None:
                    usage = chunk["usage"]
                    call.set_usage(usage)
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
                for c in choices:
                    delta = c.get("delta") or {}
                    if c.get("index", 0) != 0 or (isinstance(delta, dict) and delta.get("tool_calls")):
                        plain = False
                    text = delta.get("content") if isinstance(delta, dict) else None
                    if text is None:
                        text = c.get("text")
                    if isinstance(text, str):
                        pieces.append(text)
                        if guards and text:
                            so_far = "".join(pieces)
                            for guard in guards:
                                await guard.check_response(so_far)
                    if c.get("finish_reason"):
                        finish_reason = c["finish_reason"]
                if choices and choices[-1].get("finish_reason"):
                    held = chunk
                    continue
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            if held is not None:
                usage = usage or held.get("usage")
                yield b"data: " + orjson.dumps(held) + b"\n\n"
            yield b"data: [DONE]\n\n"
            if store is not None and plain and finish_reason:
                await store(_assembled(call.kind, meta, "".join(pieces), finish_reason, usage))
        except UpstreamError as exc:
            error = GatewayError.from_upstream(exc)
            call.status, call.error = error.status, f"failed mid-stream: {error.message}"
            yield sse_error(error)
            yield b"data: [DONE]\n\n"
        except GuardrailViolation as exc:
            error = as_gateway_error(exc)
            call.status, call.error = error.status, error.message
            yield sse_error(error)
            yield b"data: [DONE]\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        call.status = 499
        call.error = "the client disconnected during the stream"
        if not opening.done():
            opening.cancel()
        raise
    finally:
        call.output = {"content": "".join(pieces), "finish_reason": finish_reason}
        if rest is not None and hasattr(rest, "aclose"):
            with contextlib.suppress(BaseException):
                await rest.aclose()
        dispatcher.finish_soon(call)


def _assembled(kind: str, meta: dict[str, Any], text: str, finish_reason: str, usage: Any) -> dict[str, Any]:
    """A streamed answer put back together as the non-streamed response, for the cache."""
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        obj = "chat.completion"
    else:
        choice, obj = {"index": 0, "text": text, "logprobs": None}, "text_completion"
    choice["finish_reason"] = finish_reason
    return {**meta, "object": obj, "choices": [choice], "usage": usage}


async def chat_completions(request: Request) -> Response:
    """`POST /v1/chat/completions`."""
    return await _generate(request, "chat")


async def completions(request: Request) -> Response:
    """`POST /v1/completions`."""
    return await _generate(request, "completion")


async def embeddings(request: Request) -> Response:
    """`POST /v1/embeddings`."""
    return await _generate(request, "embedding")


async def list_models(request: Request) -> Response:
    """`GET /v1/models`: routes and registered models, as OpenAI lists them."""
    from podium.models import service as models

    try:
        await _authenticate(request)
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
    for name, route in sorted(_dispatcher(request).table.routes.items()):
        data.append({"id": name, "object": "model", "created": 0, "owned_by": "podium-route", "source": route.source})
    return _json({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    """`GET /v1/models/{model}`."""
    try:
        await _authenticate(request)
        ref = request.path_params["model"]
        route = _dispatcher(request).table.get(ref)
    except GatewayError as exc:
        return exc.response()
    if route.target is not None:
        m = route.target.resolved.model
        return _json(
            {"id": m.name, "object": "model", "created": int(m.created_at.timestamp()), "owned_by": m.provider}
        )
    return _json({"id": route.name, "object": "model", "created": 0, "owned_by": "podium-route"})


routes = [
    HttpRoute("/v1/chat/completions", chat_completions, methods=["POST"]),
    HttpRoute("/v1/completions", completions, methods=["POST"]),
    HttpRoute("/v1/embeddings", embeddings, methods=["POST"]),
    HttpRoute("/v1/models", list_models, methods=["GET"]),
    HttpRoute("/v1/models/{model:path}", get_model, methods=["GET"]),
]
