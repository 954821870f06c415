"""The objects one server process builds once and shares: each domain's setup provides them, and the
server runs their start and stop hooks, background loops and flushers.

Objects are keyed by their type (`runtime.get(TraceWriter)`), so a domain asks for what it needs by the
class or protocol it imports from the domain that provides it, and type checkers see the real type.
Start hooks run in setup order; stop hooks in reverse, so a domain stops before the ones it builds on
(the gateway settles its last calls before the trace writer drains).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from podium.core.config import Settings
from podium.core.errors import ConfigError
from podium.core.platform import Platform

log = logging.getLogger("podium.runtime")
T = TypeVar("T")
Hook = Callable[[], Awaitable[None]]


class Runtime:
    """Process-wide objects by type, with their lifecycle hooks."""

    def __init__(self, settings: Settings, platform: Platform):
        self.settings = settings
        self.platform = platform
        self._objects: dict[type[Any], Any] = {}
        self._starts: list[tuple[str, Hook]] = []
        self._stops: list[tuple[str, Hook]] = []
        self._loops: list[tuple[str, Hook]] = []
        self._flushers: list[Callable[[], object]] = []
        self._tasks: list[asyncio.Task[None]] = []

    # --- objects ---------------------------------------------------------------------------------

    def provide(self, kind: type[T], value: T) -> T:
        """Register the process's `kind` object (once)."""
        if kind in self._objects:
            raise ConfigError(f"two domains provide {kind.__name__}")
        self._objects[kind] = value
        return value

    def get(self, kind: type[T]) -> T:
        """The process's `kind` object; a domain that needs it requires the domain providing it."""
        try:
            value: T = self._objects[kind]
        except KeyError:
            raise ConfigError(f"nothing provides {kind.__name__}; is the domain providing it installed?") from None
        return value

    def find(self, kind: type[T]) -> T | None:
        """The `kind` object if some domain provides it (for optional collaborations)."""
        value: T | None = self._objects.get(kind)
        return value

    # --- lifecycle -------------------------------------------------------------------------------

    def on_start(self, what: str, hook: Hook) -> None:
        """Run `hook` when the server starts; a failure is logged as `what` failing, and start goes on."""
        self._starts.append((what, hook))

    def on_stop(self, what: str, hook: Hook) -> None:
        """Run `hook` when the server stops (in reverse order of registration)."""
        self._stops.append((what, hook))

    def loop(self, what: str, run: Hook) -> None:
        """Run `run` as a background task from start until stop (it is cancelled at stop)."""
        self._loops.append((what, run))

    def flusher(self, fn: Callable[[], object]) -> None:
        """Call blocking `fn` every few seconds off the event loop, and once more at stop."""
        self._flushers.append(fn)

    async def start(self, flush_every: float = 5.0) -> None:
        """Run the start hooks in order, then start the loops and the flushers."""
        for what, hook in self._starts:
            try:
                await hook()
            except Exception:
                log.exception("%s failed at start; going on", what)
        for what, run in self._loops:
            self._tasks.append(asyncio.create_task(_logged(what, run), name=what))
        if self._flushers:
            self._tasks.append(asyncio.create_task(self._flush_periodically(flush_every), name="flushers"))

    async def stop(self) -> None:
        """Cancel the loops, flush one last time, then run the stop hooks in reverse order."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._flush_once()
        for what, hook in reversed(self._stops):
            try:
                await hook()
            except Exception:
                log.exception("%s failed at stop", what)

    async def _flush_once(self) -> None:
        for fn in self._flushers:
            try:
                await asyncio.to_thread(fn)
            except Exception:
                log.exception("flush at shutdown failed")

    async def _flush_periodically(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            for fn in self._flushers:
                try:
                    await asyncio.to_thread(fn)
                except Exception:
                    log.exception("periodic flush failed")


async def _logged(what: str, run: Hook) -> None:
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s stopped with an error", what)
