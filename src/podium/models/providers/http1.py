"""A lean HTTP/1.1 client for the gateway's hot path: whole JSON answers from plain-HTTP upstreams.

Why not aiohttp here: a POST and its JSON answer through aiohttp cost about 205 µs of CPU on the machines
this project runs on, against 26 µs for an asyncio protocol feeding `httptools` (the parser uvicorn uses),
measured side by side (`bench/RESULTS.md`). The gateway makes one such call per request, so aiohttp was a
third of a call's CPU. This client does only what that call needs: keep-alive connections per upstream
(TCP or a unix socket), the request written in one buffer, the answer read whole, the three timeouts of a
call (connect, first byte, total) on one timer, the network guard checked on every new connection, and a
bounded answer. TLS upstreams, streams and everything else stay on aiohttp (`OpenAIProvider`).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections import deque
from collections.abc import Iterator

import httptools

from podium.core.netguard import Blocked, NetGuard

MAX_ANSWER = 64 * 1024 * 1024  # bytes: an answer larger than this is an upstream fault, not a reply
KEEPALIVE = 30.0  # seconds an idle connection is kept


class ServerDisconnected(ConnectionError):
    """The connection closed before any byte of the answer came: on a reused connection, safe to retry."""


class AnswerTooLarge(ConnectionError):
    """The upstream's answer passed `MAX_ANSWER`."""


class Headers:
    """Response headers, looked up without regard to case (read only for error answers)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        self._raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, or `default`."""
        wanted = name.lower().encode("latin-1")
        for key, value in self._raw:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default

    def __iter__(self) -> Iterator[str]:
        return (k.decode("latin-1") for k, _ in self._raw)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: feeds `httptools` and completes the waiting request's future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[bytes] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.received = False  # any byte of the current answer
        self.until_close = False  # the answer has neither a length nor chunks: its body ends when the socket does
        self.last_read = 0.0  # loop time of the latest bytes
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None  # the current request's timeout check
        self.closed = False
        self.reusable = True

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.last_read = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP answer from the upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.until_close:
                self.on_message_complete()
            elif self.received:
                self._fail(ConnectionResetError("the upstream closed the connection in the middle of its answer"))
            else:
                self._fail(ServerDisconnected("the upstream closed the connection before answering"))

    # --- httptools callbacks ---
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        framed = any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers)
        self.until_close = not framed and self.parser.get_status_code() not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_ANSWER:
            self._fail(AnswerTooLarge(f"the upstream's answer is larger than {MAX_ANSWER} bytes"))
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive() and not self.until_close
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(b"".join(self.chunks))

    # --- helpers ---
    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def start(self, waiter: asyncio.Future[bytes]) -> None:
        """Get ready for the next answer."""
        self.waiter = waiter
        self.chunks = []
        self.size = 0
        self.headers = []
        self.received = False
        self.until_close = False
        self.last_read = time.monotonic()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Answer:
    """A whole HTTP answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


class Http1Pool:
    """Keep-alive connections to one plain-HTTP upstream (`host:port`, or a unix socket), at most `limit` open."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        unix_socket: str | None = None,
        guard: NetGuard | None = None,
        limit: int = 1000,
        headers: dict[str, str] | None = None,
    ):
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        self.guard = guard
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()
        literal = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets
        host_header = literal if port == 80 else f"{literal}:{port}"
        lines = [f"Host: {host_header}", "Content-Type: application/json", "Accept: application/json"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items() if k.lower() not in ("host", "content-type")]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    async def post(self, path: str, body: bytes, *, connect: float, first_byte: float, total: float) -> Answer:
        """POST `body` (JSON) to `path` and read the whole answer. A stale pooled connection (closed by the
        upstream while idle) is retried once on a new one; other failures raise `ConnectionError` (or
        `OSError`), `TimeoutError` when a timeout passes."""
        request = b"POST %s HTTP/1.1\r\n%s%d\r\n\r\n%s" % (path.encode("latin-1"), self._head, len(body), body)
        async with self._slots:
            deadline = time.monotonic() + total
            conn, reused = await self._checkout(min(connect, total))
            try:
                return await self._exchange(conn, request, first_byte, deadline)
            except ServerDisconnected:
                if not reused:
                    raise
            conn, _ = await self._checkout(min(connect, max(deadline - time.monotonic(), 0.001)), fresh=True)
            return await self._exchange(conn, request, first_byte, deadline)

    async def _exchange(self, conn: _Connection, request: bytes, first_byte: float, deadline: float) -> Answer:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        conn.start(waiter)
        assert conn.transport is not None
        conn.transport.write(request)
        delay = min(first_byte, deadline - time.monotonic())
        conn.timer = loop.call_later(delay, self._check, conn, waiter, first_byte, deadline)
        try:
            data = await waiter
        except BaseException:
            conn.close()  # cancelled or failed mid-answer: the connection's state is unknown
            self._open.discard(conn)
            raise
        finally:
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None
        answer = Answer(conn.parser.get_status_code(), Headers(conn.headers), data)
        if conn.reusable and not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
            self._open.discard(conn)
        return answer

    def _check(self, conn: _Connection, waiter: asyncio.Future[bytes], first_byte: float, deadline: float) -> None:
        """The request's one timer: time out when no byte came for `first_byte` seconds or the deadline
        passed; otherwise look again when the earlier of the two could pass."""
        if conn.waiter is not waiter or waiter.done():  # answered (the connection may serve another request)
            return
        now = time.monotonic()
        quiet_until = conn.last_read + first_byte
        if now >= deadline or now >= quiet_until:
            conn._fail(TimeoutError("the upstream did not answer in time"))
            self._open.discard(conn)
            return
        delay = min(quiet_until, deadline) - now
        conn.timer = asyncio.get_running_loop().call_later(delay, self._check, conn, waiter, first_byte, deadline)

    async def _checkout(self, connect_timeout: float, fresh: bool = False) -> tuple[_Connection, bool]:
        """An idle live connection (reused) or a new one."""
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE:
                return conn, True
            conn.close()
            self._open.discard(conn)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            if self.unix_socket:
                _, conn = await loop.create_unix_connection(_Connection, self.unix_socket)
            else:
                address = await self._address()
                _, conn = await loop.create_connection(_Connection, address, self.port)
        self._open.add(conn)
        return conn, False

    async def _address(self) -> str:
        """The address to connect to; with a guard, every address of the host must be allowed (checked on
        each new connection, so a name that starts resolving to a refused address is refused)."""
        if self.guard is None:
            return self.host
        loop = asyncio.get_running_loop()
        try:
            self.guard.check_host(self.host)
            found = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            for *_, sockaddr in found:
                self.guard.check_address(str(sockaddr[0]), self.host)
        except Blocked as exc:
            raise OSError(errno.EACCES, exc.message) from None
        if not found:
            raise OSError(errno.EHOSTUNREACH, f"{self.host} has no address")
        return str(found[0][4][0])

    def close(self) -> None:
        """Close every connection."""
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
