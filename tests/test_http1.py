"""The lean HTTP/1.1 client behind whole JSON answers from plain-HTTP upstreams (`OpenAIProvider` uses it),
against real loopback servers that misbehave in the ways upstreams do: a keep-alive connection closed while
idle, no answer, an answer that trickles past the deadline, garbage, an answer too large, a 429."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from podium.core.netguard import NetGuard
from podium.models.providers import http1
from podium.models.providers.base import CONNECTION, RATE_LIMIT, TIMEOUT, Timeouts, UpstreamError
from podium.models.providers.openai import OpenAIProvider

OK = orjson.dumps({"object": "chat.completion", "choices": [{"message": {"content": "hi"}}]})
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


def answer(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        extra,
        len(body),
        body,
    )


def served(handler: Handler, test: Callable[[str, dict[str, int]], Awaitable[Any]]) -> Any:
    """Run `test(base_url, stats)` against a loopback server whose connections `handler` serves."""
    stats = {"connections": 0}

    async def main() -> Any:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stats["connections"] += 1
            try:
                await handler(reader, writer, stats["connections"])
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await test(f"http://127.0.0.1:{port}/v1", stats)
        finally:
            server.close()

    return asyncio.run(main())


def chat(url: str, timeouts: Timeouts | None = None) -> Awaitable[dict[str, Any]]:
    return OpenAIProvider(url, model="m", timeouts=timeouts).chat({"messages": [{"role": "user", "content": "x"}]})


def refusal(timeouts: Timeouts | None = None) -> Callable[[str, dict[str, int]], Awaitable[UpstreamError]]:
    """A `served` test: one chat call, which must fail; returns its `UpstreamError`."""

    async def test(url: str, stats: dict[str, int]) -> UpstreamError:
        with pytest.raises(UpstreamError) as caught:
            await chat(url, timeouts)
        return caught.value

    return test


def test_a_keep_alive_connection_closed_by_the_upstream_is_retried_once_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(OK))
        await writer.drain()
        if n == 1:  # the first connection takes a second request, then closes without answering it
            await read_request(reader)
            return
        while True:
            await read_request(reader)
            writer.write(answer(OK))
            await writer.drain()

    async def test(url: str, stats: dict[str, int]) -> list[Any]:
        provider = OpenAIProvider(url, model="m")
        body = {"messages": [{"role": "user", "content": "x"}]}
        results = [await provider.chat(body) for _ in range(3)]
        await provider.aclose()
        return [results, stats["connections"]]

    results, connections = served(handler, test)
    assert [r["choices"][0]["message"]["content"] for r in results] == ["hi"] * 3
    assert connections == 2


def test_no_answer_times_out_at_the_first_byte_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    err = served(handler, refusal(Timeouts(connect=1, first_token=0.3, total=30)))
    assert err.kind == TIMEOUT and err.status == 504


def test_an_answer_trickling_past_the_deadline_times_out() -> None:
    """Bytes keep coming (so the first-byte timeout never passes), but the whole call has a deadline."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    assert served(handler, refusal(Timeouts(connect=1, first_token=0.5, total=0.6))).kind == TIMEOUT


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed HTTP answer"),
        (answer(b"{not json"), "invalid JSON"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "in the middle of its answer"),
    ],
)
def test_garbage_and_cut_answers_are_upstream_errors(reply: bytes, words: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    err = served(handler, refusal())
    assert err.status == 502 and words in err.message, err.message


def test_an_answer_whose_body_ends_with_the_connection_is_read_whole() -> None:
    """No Content-Length and no chunks (an HTTP/1.0-style server): the body is whatever came before the close."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + OK)
        await writer.drain()

    async def test(url: str, stats: dict[str, int]) -> list[Any]:
        provider = OpenAIProvider(url, model="m")
        body = {"messages": [{"role": "user", "content": "x"}]}
        results = [await provider.chat(body), await provider.chat(body)]
        await provider.aclose()
        return [results, stats["connections"]]

    results, connections = served(handler, test)
    assert [r["choices"][0]["message"]["content"] for r in results] == ["hi", "hi"] and connections == 2


def test_an_answer_over_the_size_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_ANSWER", 1000)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b'"' + b"x" * 5000 + b'"'))
        await writer.drain()

    err = served(handler, refusal())
    assert err.kind == CONNECTION and "larger than 1000 bytes" in err.message


def test_an_error_answer_keeps_its_status_message_and_retry_after() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        body = await read_request(reader)
        assert orjson.loads(body)["model"] == "m"  # the upstream's model name is what goes out
        error = orjson.dumps({"error": {"message": "slow down", "type": "rate_limit"}})
        writer.write(answer(error, "429 Too Many Requests", b"retry-after: 7\r\n"))
        await writer.drain()

    err = served(handler, refusal())
    assert (err.kind, err.status, err.message, err.retry_after) == (RATE_LIMIT, 429, "slow down", 7)


def test_the_network_guard_is_checked_when_a_connection_opens() -> None:
    """A refused address is refused at connect time too (a name may start resolving elsewhere after
    registration): the lean client asks the guard on every new connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(OK))
        await writer.drain()

    async def test(url: str, stats: dict[str, int]) -> tuple[UpstreamError, int]:
        provider = OpenAIProvider(url, model="m", guard=NetGuard(allow_private=False))
        with pytest.raises(UpstreamError) as caught:
            await provider.chat({"messages": [{"role": "user", "content": "x"}]})
        return caught.value, stats["connections"]

    err, connections = served(handler, test)
    assert err.kind == CONNECTION and connections == 0


def test_a_reused_connection_keeps_no_timer_of_the_request_before() -> None:
    """The first answer trickles (so its timeout check re-arms itself); the second, on the same connection,
    comes after the first request's deadline but well within its own: it must not inherit the first's timer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        body = b" " * 5 + OK
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(5):  # 1.5 s in all, never 1 s without a byte
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.3)
        writer.write(body[5:])
        await writer.drain()
        await read_request(reader)
        await asyncio.sleep(0.7)  # the first request's deadline (2 s after it began) passes meanwhile
        writer.write(answer(OK))
        await writer.drain()
        await asyncio.sleep(1)

    async def test(url: str, stats: dict[str, int]) -> list[Any]:
        provider = OpenAIProvider(url, model="m", timeouts=Timeouts(connect=1, first_token=1.0, total=2.0))
        body = {"messages": [{"role": "user", "content": "x"}]}
        results = [await provider.chat(body), await provider.chat(body)]
        await provider.aclose()
        return [results, stats["connections"]]

    results, connections = served(handler, test)
    assert [r["object"] for r in results] == ["chat.completion"] * 2 and connections == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_host_header_names_the_upstream(host: str) -> None:
    seen: list[bytes] = []

    async def main() -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.extend(line for line in head.split(b"\r\n") if line.lower().startswith(b"host:"))
            writer.write(answer(OK))
            await writer.drain()
            writer.close()

        try:
            server = await asyncio.start_server(on_connect, host, 0)
        except OSError:
            pytest.skip(f"{host} is not available here")
        port = server.sockets[0].getsockname()[1]
        literal = f"[{host}]" if ":" in host else host
        provider = OpenAIProvider(f"http://{literal}:{port}/v1", model="m")
        await provider.chat({"messages": [{"role": "user", "content": "x"}]})
        await provider.aclose()
        server.close()
        assert seen == [f"Host: {literal}:{port}".encode()]

    asyncio.run(main())


def test_configured_headers_cannot_smuggle_a_second_request() -> None:
    """A key or header with a line break would end the request early and start another one chosen by whoever
    set it: the lean client refuses such headers, and the provider leaves them to aiohttp, which refuses them
    at call time. Either way the upstream sees no smuggled request."""
    with pytest.raises(ValueError, match="does not allow"):
        http1.header_block({"Authorization": "Bearer x\r\n\r\nGET /admin HTTP/1.1"})
    with pytest.raises(ValueError, match="does not allow"):
        http1.header_block({"X Bad Name": "v"})
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            requests.append(head.split(b"\r\n", 1)[0])
            writer.write(answer(OK))
            await writer.drain()

    async def test(url: str, stats: dict[str, int]) -> Exception | None:
        smuggler = "sk\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal"
        provider = OpenAIProvider(url, model="m", api_key=smuggler)
        try:
            await provider.chat({"messages": [{"role": "user", "content": "x"}]})
        except Exception as exc:
            return exc
        finally:
            await provider.aclose()
        return None

    assert served(handler, test) is not None
    assert not any(b"/admin" in r for r in requests), requests


def test_endless_headers_are_cut_off() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100))
            await writer.drain()

    err = served(handler, refusal())
    assert err.status == 502 and "bytes of headers" in err.message


def test_an_interim_answer_is_skipped_for_the_real_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await writer.drain()
        writer.write(answer(OK))
        await writer.drain()

    async def test(url: str, stats: dict[str, int]) -> dict[str, Any]:
        return await chat(url)

    assert served(handler, test)["choices"][0]["message"]["content"] == "hi"


def test_a_request_the_upstream_may_have_worked_on_is_never_sent_twice() -> None:
    """A reused connection that closes without answering long after the request went out (a crash mid-
    generation) is an error, not a retry: the retry is only for a close that crossed the request."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(OK))
        await writer.drain()
        await read_request(reader)
        await asyncio.sleep(0.6)  # works on it, then dies

    async def test(url: str, stats: dict[str, int]) -> list[Any]:
        provider = OpenAIProvider(url, model="m")
        body = {"messages": [{"role": "user", "content": "x"}]}
        await provider.chat(body)
        with pytest.raises(UpstreamError) as caught:
            await provider.chat(body)
        await provider.aclose()
        return [caught.value, stats["connections"]]

    err, connections = served(handler, test)
    assert err.kind == CONNECTION and "without answering" in err.message and connections == 1
