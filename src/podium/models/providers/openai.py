"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, TGI, llama.cpp server, LM Studio, Podium model workers).

Requests pass through with `model` rewritten to the upstream's name; tools, `response_format`, `logprobs` and
any other field go through untouched. Whole JSON answers from a plain-HTTP upstream (a model worker's unix
socket, vLLM or Ollama in the cluster) go through the lean client of `http1` (a sixth of aiohttp's CPU per
call); streams and TLS upstreams through one pooled aiohttp session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from podium.core import sse
from podium.core.netguard import GuardedResolver, NetGuard
from podium.core.retry import parse_retry_after
from podium.models.providers import http1
from podium.models.providers.base import (
    AUTH,
    BAD_REQUEST,
    CONNECTION,
    CONTEXT_WINDOW,
    NOT_FOUND,
    RATE_LIMIT,
    SERVER,
    TIMEOUT,
    Provider,
    Timeouts,
    UpstreamError,
    estimate_tokens,
)

_CONTEXT_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "longer than the context",
)


def error_from_response(status: int, payload: bytes, headers: Any) -> UpstreamError:
    """Map an upstream error response to a typed `UpstreamError`, keeping its status and message."""
    body: Any = None
    message = payload[:500].decode(errors="replace") or f"HTTP {status}"
    code = None
    param = None
    with contextlib.suppress(ValueError):
        body = orjson.loads(payload)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code")
            param = err.get("param")
        elif isinstance(err, str):
            message = err
        elif isinstance(body, dict) and "message" in body:
            message = str(body["message"])
    retry_after = parse_retry_after(headers.get("Retry-After") if headers is not None else None)
    lower = message.lower()
    if status == 429:
        kind = RATE_LIMIT
    elif status >= 500:
        kind = SERVER
    elif code == "context_length_exceeded" or any(h in lower for h in _CONTEXT_HINTS):
        kind = CONTEXT_WINDOW
    elif status in (401, 403):
        kind = AUTH
    elif status == 404:
        kind = NOT_FOUND
    else:
        kind = BAD_REQUEST
    return UpstreamError(kind, message, status=status, retry_after=retry_after, body=body, param=param)


def _decode(status: int, payload: bytes, headers: Any) -> dict[str, Any]:
    """A whole answer's JSON body, or the `UpstreamError` its status or a body that is not JSON means."""
    if status >= 400:
        raise error_from_response(status, payload, headers)
    try:
        result: dict[str, Any] = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise UpstreamError(SERVER, "upstream answered with invalid JSON", status=502) from None
    return result


class OpenAIProvider(Provider):
    """An OpenAI-compatible HTTP upstream (over TCP, or a unix socket for local model workers)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        unix_socket: str | None = None,
        headers: dict[str, str] | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 1000,
        guard: NetGuard | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.guard = guard  # checked on every connection's resolved addresses
        self.model = model
        self.api_key = api_key
        self.unix_socket = unix_socket
        self.timeouts = timeouts or Timeouts()
        self.max_connections = max_connections
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        parts = urlsplit(self.base_url)
        # whole answers from plain-HTTP upstreams take the lean client; headers it cannot send safely (a line
        # break, NUL, non-latin-1) go the aiohttp way, which refuses them when a call is made
        self._plain = parts.scheme == "http" and bool(parts.hostname) and not parts.username
        try:
            http1.header_block(self._headers)
        except ValueError:
            self._plain = False
        self._prefix = parts.path.rstrip("/")
        self._pool: http1.Http1Pool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None

    def pool(self) -> http1.Http1Pool:
        """The lean client's connections, for the running event loop."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or self._pool_loop is not loop:
            if pool is not None:
                pool.close()  # another event loop's connections: unusable from this one
            parts = urlsplit(self.base_url)
            pool = http1.Http1Pool(
                parts.hostname or "localhost",
                parts.port or 80,
                unix_socket=self.unix_socket,
                guard=None if self.unix_socket else self.guard,
                limit=self.max_connections,
                headers=self._headers,
            )
            self._pool, self._pool_loop = pool, loop
        return pool

    def session(self) -> aiohttp.ClientSession:
        """The pooled session of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector: aiohttp.BaseConnector
            if self.unix_socket:
                connector = aiohttp.UnixConnector(path=self.unix_socket, limit=self.max_connections)
            else:
                connector = aiohttp.TCPConnector(
                    limit=self.max_connections,
                    ttl_dns_cache=300,
                    keepalive_timeout=30,
                    resolver=GuardedResolver(self.guard) if self.guard is not None else None,
                )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, json_serialize=lambda o: orjson.dumps(o).decode()
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _body(self, body: dict[str, Any]) -> bytes:
        return orjson.dumps({**body, "model": self.model})

    async def _post_json(self, path: str, body: dict[str, Any], timeouts: Timeouts | None) -> dict[str, Any]:
        try:
            return await self._post_json_once(path, body, timeouts)
        except aiohttp.ServerDisconnectedError:
            # a pooled keep-alive connection whose server went away (e.g. a restarted model worker):
            # nothing was processed, so one retry on a fresh connection is safe
            return await self._post_json_once(path, body, timeouts)

    async def _post_json_once(self, path: str, body: dict[str, Any], timeouts: Timeouts | None) -> dict[str, Any]:
        if self._plain:
            return await self._post_lean(path, body, timeouts)
        t = timeouts or self.timeouts
        timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_token)
        try:
            async with self.session().post(self.base_url + path, data=self._body(body), timeout=timeout) as resp:
                return _decode(resp.status, await resp.read(), resp.headers)
        except TimeoutError:
            raise UpstreamError(TIMEOUT, f"upstream {self.base_url} timed out", status=504) from None
        except aiohttp.ServerDisconnectedError:
            raise
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamError(CONNECTION, f"cannot reach upstream {self.base_url}: {exc}", status=502) from None

    async def _post_lean(self, path: str, body: dict[str, Any], timeouts: Timeouts | None) -> dict[str, Any]:
        """`_post_json_once` through the lean client (a stale pooled connection is retried inside it)."""
        t = timeouts or self.timeouts
        try:
            answer = await self.pool().post(
                self._prefix + path, self._body(body), connect=t.connect, first_byte=t.first_token, total=t.total
            )
        except TimeoutError:
            raise UpstreamError(TIMEOUT, f"upstream {self.base_url} timed out", status=504) from None
        except (OSError, ValueError) as exc:  # ConnectionError included; ValueError: a path HTTP cannot carry
            raise UpstreamError(CONNECTION, f"cannot reach upstream {self.base_url}: {exc}", status=502) from None
        return _decode(answer.status, answer.body, answer.headers)

    async def _stream(
        self, path: str, body: dict[str, Any], timeouts: Timeouts | None
    ) -> AsyncIterator[dict[str, Any]]:
        t = timeouts or self.timeouts
        payload = dict(body)
        payload["stream"] = True
        options = dict(payload.get("stream_options") or {})
        options["include_usage"] = True
        payload["stream_options"] = options
        timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_token)
        try:
            try:
                resp = await self.session().post(self.base_url + path, data=self._body(payload), timeout=timeout)
            except aiohttp.ServerDisconnectedError:  # stale pooled connection: retry once, see _post_json
                resp = await self.session().post(self.base_url + path, data=self._body(payload), timeout=timeout)
            async with resp:
                if resp.status >= 400:
                    raise error_from_response(resp.status, await resp.read(), resp.headers)
                events = sse.EventStream(resp.content)
                async for event in events:
                    chunk = event.data
                    if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                        err = chunk["error"]
                        msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                        raise UpstreamError(SERVER, f"upstream failed mid-stream: {msg}", status=502)
                    yield chunk
                if not events.done:
                    raise UpstreamError(CONNECTION, "upstream closed the stream before it finished", status=502)
        except sse.SSEError:
            raise UpstreamError(SERVER, "upstream sent a malformed stream event", status=502) from None
        except TimeoutError:
            raise UpstreamError(TIMEOUT, f"upstream {self.base_url} timed out", status=504) from None
        except aiohttp.ClientPayloadError:
            raise UpstreamError(CONNECTION, "upstream closed the stream before it finished", status=502) from None
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamError(CONNECTION, f"cannot reach upstream {self.base_url}: {exc}", status=502) from None

    async def chat(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        return await self._post_json("/chat/completions", {**body, "stream": False}, timeouts)

    def chat_stream(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/chat/completions", body, timeouts)

    async def complete(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        return await self._post_json("/completions", {**body, "stream": False}, timeouts)

    def complete_stream(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/completions", body, timeouts)

    async def embed(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        return await self._post_json("/embeddings", body, timeouts)

    async def count_tokens(self, body: dict[str, Any]) -> int:
        """Ask the upstream's `/tokenize` (vLLM, Podium workers); estimate if it has none."""
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        try:
            result = await self._post_abs(root + "/tokenize", body)
        except UpstreamError as exc:
            if exc.kind in (NOT_FOUND, BAD_REQUEST, AUTH):
                return estimate_tokens(body)
            raise
        return int(result.get("count", 0))

    async def _post_abs(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.timeouts.total, sock_connect=self.timeouts.connect)
        try:
            async with self.session().post(url, data=self._body(body), timeout=timeout) as resp:
                payload = await resp.read()
                if resp.status >= 400:
                    raise error_from_response(resp.status, payload, resp.headers)
                result: dict[str, Any] = orjson.loads(payload)
                return result
        except TimeoutError:
            raise UpstreamError(TIMEOUT, f"upstream {url} timed out", status=504) from None
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamError(CONNECTION, f"cannot reach upstream {url}: {exc}", status=502) from None
