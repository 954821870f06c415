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
import re
import socket
import time
from collections import deque

import httptools

from podium.core.netguard import Blocked, NetGuard

MAX_ANSWER = 64 * 1024 * 1024  # bytes: an answer larger than this is an upstream fault, not a reply
MAX_HEAD = 64 * 1024  # bytes of status line and headers (aiohttp allows 8,190 per field)
KEEPALIVE = 30.0  # seconds an idle connection is kept
STALE_WINDOW = 0.25  # seconds: a reused connection closed this soon after the write was closed while idle
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name
_FRAMING = {"host", "content-type", "content-length", "transfer-encoding", "connection"}  # set by the client


def header_block(headers: dict[str, str]) -> bytes:
    """Configured headers as request lines; `ValueError` for a name that is not an HTTP token or a value
    with a line break, NUL or a character outside latin-1 (it could smuggle a second request)."""
    lines = []
    for name, value in headers.items():
        if not _TOKEN.match(name) or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"header {name!r} has a character HTTP does not allow")
        if name.lower() not in _FRAMING:
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))  # UnicodeEncodeError is a ValueError
    return b"".join(lines)


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
        self.head = 0  # bytes of the current answer's status line and headers
        self.written_at = 0.0  # when the current request was written (monotonic)
        self.reused = False  # the current request went out on a connection that served one before
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
            elif self.reused and time.monotonic() - self.written_at < STALE_WINDOW:
                # closed while idle, crossing our request: the upstream never saw it, a retry is safe
                self._fail(ServerDisconnected("the upstream closed the connection before answering"))
            else:  # it may have worked on the request: never sent twice
                self._fail(ConnectionResetError("the upstream closed the connection without answering"))

    # --- httptools callbacks ---
    def on_status(self, status: bytes) -> None:
        self._count_head(len(status) + 16)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        self.headers.append((name, value))

    def _count_head(self, n: int) -> None:
        self.head += n
        if self.head > MAX_HEAD:
            self._fail(AnswerTooLarge(f"the upstream's answer has more than {MAX_HEAD} bytes of headers"))

    def on_headers_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # an interim answer (102, 103): the real one follows
            return
        framed = any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers)
        self.until_close = not framed and self.parser.get_status_code() not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_ANSWER:
            self._fail(AnswerTooLarge(f"the upstream's answer is larger than {MAX_ANSWER} bytes"))
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            self.headers, self.head = [], 0
            return
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
        self.head = 0
        self.received = False
        self.until_close = False
        self.last_read = self.written_at = time.monotonic()

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
        self.closed = False
        name = host if host.isascii() else host.encode("idna").decode("ascii")  # an international name
        literal = f"[{name}]" if ":" in name else name  # an IPv6 address goes in brackets
        host_header = literal if port == 80 else f"{literal}:{port}"
        fixed = f"Host: {host_header}\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
        self._head = fixed.encode("latin-1") + header_block(headers or {}) + b"Content-Length: "

    async def post(self, path: str, body: bytes, *, connect: float, first_byte: float, total: float) -> Answer:
        """POST `body` (JSON) to `path` and read the whole answer. A stale pooled connection (closed by the
        upstream while idle) is retried once on a new one; other failures raise `ConnectionError` (or
        `OSError`), `TimeoutError` when a timeout passes."""
        if any(c in path for c in "\r\n\x00 "):
            raise ValueError(f"path {path!r} has a character HTTP does not allow")
        request = b"POST %s HTTP/1.1\r\n%s%d\r\n\r\n%s" % (path.encode("latin-1"), self._head, len(body), body)
        deadline = time.monotonic() + total
        if self._slots.locked():  # every connection busy: the wait counts against the call's deadline
            async with asyncio.timeout(total):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        try:
            conn = await self._checkout(min(connect, total))
            try:
                return await self._exchange(conn, request, first_byte, deadline)
            except ServerDisconnected:
                pass  # a reused connection the upstream had closed while idle: once more on a new one
            conn = await self._checkout(min(connect, max(deadline - time.monotonic(), 0.001)), fresh=True)
            return await self._exchange(conn, request, first_byte, deadline)
        finally:
            self._slots.release()

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

    async def _checkout(self, connect_timeout: float, fresh: bool = False) -> _Connection:
        """An idle live connection (marked reused) or a new one."""
        if self.closed:
            raise ConnectionError("the upstream client was closed")
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()
            transport = conn.transport
            live = not conn.closed and transport is not None and not transport.is_closing()
            if live and now - conn.idle_since < KEEPALIVE:
                conn.reused = True
                return conn
            conn.close()
            self._open.discard(conn)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            if self.unix_socket:
                _, conn = await loop.create_unix_connection(_Connection, self.unix_socket)
            else:
                conn = await self._connect(loop)
        conn.reused = False
        self._open.add(conn)
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A TCP connection to the first address that answers. With a guard, every address of the host must
        be allowed (checked on each new connection, so a name that starts resolving to a refused address is
        refused) and the connection goes to a checked address, never to a second lookup's answer."""
        if self.guard is None:
            _, conn = await loop.create_connection(_Connection, self.host, self.port)
            return conn
        try:
            self.guard.check_host(self.host)
            found = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            for *_, sockaddr in found:
                self.guard.check_address(str(sockaddr[0]), self.host)
        except Blocked as exc:
            raise OSError(errno.EACCES, exc.message) from None
        if not found:
            raise OSError(errno.EHOSTUNREACH, f"{self.host} has no address")
        failure: OSError | None = None
        for *_, sockaddr in found:  # as aiohttp does: each address in turn (a dual-stack name, one stack served)
            try:
                _, conn = await loop.create_connection(_Connection, str(sockaddr[0]), self.port)
                return conn
            except OSError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def close(self) -> None:
        """Close every connection; later calls are refused."""
        self.closed = True
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
