"""How jobs, which run on job threads, reach the server's event loop and its gateway: the model calls of an
eval run or a knowledge-base build go through the same `Gateway` request service as `/v1` (routing, limits,
budgets, guardrails, a trace per call), and that service lives on the server's loop. The gateway domain
attaches them when the server starts and detaches them when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from podium.core.errors import ConfigError
from podium.core.platform import Platform
from podium.core.runtime import Runtime
from podium.gateway.service import Gateway

T = TypeVar("T")


@dataclass(frozen=True)
class Attached:
    """The running server's loop and gateway."""

    loop: asyncio.AbstractEventLoop
    gateway: Gateway


_attached: dict[int, Attached] = {}  # by the id of the server's Platform: set at its start, cleared at its stop


def attach(runtime: Runtime) -> None:
    """Remember the running loop and the gateway of this server (called on its loop, at its start)."""
    _attached[id(runtime.platform)] = Attached(asyncio.get_running_loop(), runtime.get(Gateway))


def detach(runtime: Runtime) -> None:
    """Forget them at the server's stop."""
    _attached.pop(id(runtime.platform), None)


def current(platform: Platform) -> Attached:
    """The server whose platform a job runs on; jobs that call models run only inside `podium serve`."""
    found = _attached.get(id(platform))
    if found is None:
        raise ConfigError(
            "model calls from jobs need a running server (podium serve): no gateway is attached in this process"
        )
    return found


def submit(platform: Platform, coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Run `coro` on the loop of the server of `platform`, from another thread."""
    try:
        loop = current(platform).loop
    except ConfigError:
        coro.close()  # never awaited: say so quietly rather than with a "was never awaited" warning
        raise
    return asyncio.run_coroutine_threadsafe(coro, loop)


def run(platform: Platform, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the server's loop and wait for its result, from another thread (a job's, or a request
    handler's worker thread); the coroutine is cancelled if the wait times out or is interrupted."""
    future = submit(platform, coro)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise
