"""How eval jobs, which run on job threads, reach the server's event loop and its gateway: eval model calls
go through the same `Gateway` request service as `/v1` (routing, limits, budgets, guardrails, a trace per
call), and that service lives on the server's loop. The evals domain attaches them when the server starts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from podium.core.errors import ConfigError
from podium.core.runtime import Runtime
from podium.gateway.service import Gateway

T = TypeVar("T")


@dataclass(frozen=True)
class Attached:
    """The running server's loop and gateway."""

    loop: asyncio.AbstractEventLoop
    gateway: Gateway


_attached: Attached | None = None  # one server per process: set at its start, cleared at its stop


def attach(runtime: Runtime) -> None:
    """Remember the running loop and the gateway (called on the loop, at server start)."""
    global _attached
    _attached = Attached(asyncio.get_running_loop(), runtime.get(Gateway))


def detach() -> None:
    """Forget them at server stop."""
    global _attached
    _attached = None


def current() -> Attached:
    """The attached server; eval jobs run only inside `podium serve`."""
    if _attached is None:
        raise ConfigError("eval runs need a running server (podium serve): no gateway is attached in this process")
    return _attached


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Run `coro` on the server's loop from another thread."""
    return asyncio.run_coroutine_threadsafe(coro, current().loop)
