"""Run a blocking function every few seconds from the event loop, off its thread, until cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("podium.periodic")


async def run_every(every: float, fn: Callable[[], object], failure: str) -> None:
    """Call `fn` in a worker thread every `every` seconds; a failure is logged (`failure`) and the loop goes on."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(fn)
        except Exception:
            log.exception(failure)
