"""Server-sent events, written and read in one place: the `data:` frames OpenAI-compatible streams use.

Writing: `frame(obj)` is one event, `named(...)` one with a name, `DONE` ends an OpenAI stream, `KEEPALIVE`
is a comment that keeps a connection open while the first token is awaited. Reading: an `EventStream` over
the lines of a response (synchronous or asynchronous) gives parsed `Event`s; a malformed one raises
`SSEError`, which a provider turns into its own error type.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


class SSEError(ValueError):
    """A stream event that is not valid JSON."""


@dataclass(frozen=True)
class Event:
    """One event: its name (`message` unless an `event:` line named it) and its JSON data."""

    name: str
    data: Any


def frame(obj: Any) -> bytes:
    """One `data:` event carrying `obj` as JSON."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def named(event: str, obj: Any) -> bytes:
    """One event with a name (`event: result`), for streams that carry more than OpenAI chunks."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class _Reader:
    """Reads the streams Podium speaks: every `data:` line is one whole JSON payload (as OpenAI-compatible
    servers send them), so an event is handed over as soon as its line arrives; an `event:` line names the
    next one; comments and blank lines are skipped; `[DONE]` ends the stream."""

    def __init__(self) -> None:
        self.name = "message"
        self.done = False

    def feed(self, raw: bytes | str) -> Event | None:
        line = (raw.encode() if isinstance(raw, str) else raw).strip()
        if line.startswith(b"event:"):
            self.name = line[6:].strip().decode("utf-8", "replace") or "message"
            return None
        if not line.startswith(b"data:"):
            return None
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return None
        if not payload:
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise SSEError(f"a stream event is not JSON: {payload[:80]!r}") from None
        event, self.name = Event(self.name, data), "message"
        return event


class EventStream:
    """The events of a stream read line by line (synchronous or asynchronous lines), until `[DONE]` or the
    end of the lines; `done` says afterwards whether the stream ended with `[DONE]` (an OpenAI stream that
    ends without it was cut short). A payload that is not JSON raises `SSEError`."""

    def __init__(self, lines: Iterable[bytes | str] | AsyncIterable[bytes]):
        self._lines = lines
        self._reader = _Reader()

    @property
    def done(self) -> bool:
        """True once `[DONE]` was read."""
        return self._reader.done

    def __iter__(self) -> Iterator[Event]:
        assert isinstance(self._lines, Iterable)
        for line in self._lines:
            event = self._reader.feed(line)
            if self._reader.done:
                return
            if event is not None:
                yield event

    async def __aiter__(self) -> AsyncIterator[Event]:
        assert isinstance(self._lines, AsyncIterable)
        async for line in self._lines:
            event = self._reader.feed(line)
            if self._reader.done:
                return
            if event is not None:
                yield event


def events(lines: Iterable[bytes | str]) -> Iterator[Event]:
    """The events of a synchronous stream of lines (see `EventStream`)."""
    return iter(EventStream(lines))
