"""HTTP glue shared by every domain's routes: the platform, the acting principal, errors, request ids."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.core.errors import PodiumError
from podium.core.identity import Actor, Authenticator, Principal
from podium.core.ids import ulid
from podium.core.platform import Platform

log = logging.getLogger("podium.http")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class ORJSONResponse(JSONResponse):
    """JSON responses rendered by orjson (datetimes as ISO-8601)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS, default=_default)


def _default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def get_platform(request: Request) -> Platform:
    """The process's `Platform`."""
    platform: Platform = request.app.state.platform
    return platform


def bearer_token(headers: Any) -> str | None:
    """The API key from `Authorization: Bearer …` or `X-API-Key`."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return str(token.strip())
        return str(auth.strip())
    key = headers.get("x-api-key")
    return str(key) if key else None


def request_id(request: Request) -> str | None:
    """The id the request-id middleware gave this request."""
    rid: str | None = request.scope.get("podium.request_id")
    return rid


def get_authenticator(request: Request) -> Authenticator:
    """The process's `Authenticator` (the auth domain's key cache)."""
    keys: Authenticator = request.app.state.keys
    return keys


def current_principal(request: Request) -> Principal:
    """The principal behind the request's API key; 401 without a valid one."""
    return get_authenticator(request).authenticate(bearer_token(request.headers))


def current_actor(request: Request) -> Actor:
    """FastAPI dependency: the authenticated actor of this request."""
    principal = request.scope.get("podium.principal")
    if principal is None:
        principal = current_principal(request)
        request.scope["podium.principal"] = principal
    return Actor(principal, request_id(request))


# --- plain ASGI (the `/v1` hot path) -------------------------------------------------------------


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status."""
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def openai_error(message: str, code: str, type_: str = "invalid_request_error", param: str | None = None) -> bytes:
    """An error body in OpenAI's shape (`/v1`)."""
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code, "param": param}})


async def send_json(send: Send, status: int, payload: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send a whole JSON response (`payload` already serialised) with extra raw headers."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class ClientDisconnected(Exception):
    """The client went away while its request was being read."""


async def read_body(receive: Receive) -> bytes:
    """The whole request body from ASGI messages; `ClientDisconnected` if the client leaves first."""
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnected()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


# --- error rendering -------------------------------------------------------------------------


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `/api` error shape."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


async def podium_error_handler(request: Request, exc: Exception) -> Response:
    """Render a `PodiumError` with its status."""
    assert isinstance(exc, PodiumError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if _is_v1(request):
        body = openai_error(exc.message, exc.code, openai_type(exc.status), exc.details.get("field"))
        return Response(body, exc.status, headers, "application/json")
    return ORJSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[-1] if loc else "?")


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """Render request validation errors naming every bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        errors.append({"field": _field_path(tuple(err.get("loc", ()))), "message": err.get("msg", "invalid")})
    first = errors[0] if errors else {"field": "?", "message": "invalid"}
    message = f"invalid request: {first['field']}: {first['message']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    if _is_v1(request):
        return Response(openai_error(message, "invalid_input", param=first["field"]), 400, None, "application/json")
    return ORJSONResponse(error_body("invalid_input", message, {"errors": errors}), status_code=400)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Render Starlette's HTTP errors (404 for unknown paths, 405) in the `/api` shape, or OpenAI's under `/v1`."""
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code in (404, 405):
        message = f"no such endpoint: {request.method} {request.url.path}"
    if _is_v1(request):
        return Response(openai_error(message, code), exc.status_code, exc.headers, "application/json")
    return ORJSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


def _is_v1(request: Request) -> bool:
    path = request.url.path
    return path == "/v1" or path.startswith("/v1/")


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    """A bug: log it with the request id, answer 500 without internals."""
    rid = request_id(request)
    log.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, rid)
    message = f"internal error; the server log has details (request id {rid})"
    if _is_v1(request):
        return Response(openai_error(message, "internal_error", "server_error"), 500, media_type="application/json")
    return ORJSONResponse(error_body("internal_error", message), status_code=500)


# --- middleware ----------------------------------------------------------------------------------


def request_id_for(incoming: str | None) -> str:
    """The id of a request: a sane incoming `X-Request-ID`, else a new one."""
    return incoming if incoming and _REQUEST_ID_RE.match(incoming) else "req_" + ulid()


class RequestContextMiddleware:
    """Gives each request an id (honouring a sane incoming `X-Request-ID`), echoes it, caps body size: at
    `max_body_bytes`, or `max_upload_bytes` on the paths matching one of `uploads` (routes that take files
    and spool them to disk). (`/v1` never comes here: the server's front door does the same for it.)"""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int | None = None, uploads: tuple[str, ...] = ()
    ):
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes or max_body_bytes
        self.uploads = re.compile("|".join(f"(?:{p})" for p in uploads)) if uploads else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        rid = request_id_for(incoming)
        scope["podium.request_id"] = rid
        rid_bytes = rid.encode()
        limit = self.max_upload if self.uploads is not None and self.uploads.fullmatch(scope["path"]) else self.max_body

        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(send, rid_bytes, limit, scope["path"])
            return

        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge()
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid_bytes))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            if too_large:
                await self._too_large(send, rid_bytes, limit, scope["path"])

    async def _too_large(self, send: Send, rid: bytes, limit: int, path: str) -> None:
        setting = "max_body_bytes" if limit == self.max_body else "max_upload_bytes"
        message = f"request body is larger than the limit of {limit} bytes (setting {setting})"
        headers = [(b"x-request-id", rid), (b"connection", b"close")]
        v1 = path == "/v1" or path.startswith("/v1/")  # /v1 answers in OpenAI's shape (OTLP ingest comes here)
        body = openai_error(message, "body_too_large") if v1 else orjson.dumps(error_body("body_too_large", message))
        await send_json(send, 413, body, headers)


class _BodyTooLarge(Exception):
    pass
