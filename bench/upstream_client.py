"""CPU per upstream call: aiohttp (as the lean proxy and Podium's streams use it) against Podium's lean HTTP/1.1
client (`podium.models.providers.http1`), POSTing a chat body to the same mock and reading its JSON answer.

    .venv/bin/python bench/upstream_client.py [--calls 4000] [--rounds 5]

Eight calls at a time on one event loop (uvloop), alternating the clients each round; the figure is the
process's CPU time per call (client and event loop), median of the rounds. The mock runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from gateway import MOCK, free_port

from podium.models.providers.http1 import Http1Pool

BODY = orjson.dumps({"model": "mock", "messages": [{"role": "user", "content": "Say hello in five words."}]})


async def cpu_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    await asyncio.gather(*(worker(50) for _ in range(8)))  # warm the pools
    start = time.process_time()
    await asyncio.gather(*(worker(calls // 8) for _ in range(8)))
    return 1e6 * (time.process_time() - start) / calls


async def main(port: int, calls: int, rounds: int) -> None:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30))
    timeout = aiohttp.ClientTimeout(total=600, sock_connect=10, sock_read=60)
    pool = Http1Pool("127.0.0.1", port)

    async def with_aiohttp() -> object:
        async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}, timeout=timeout) as r:
            return orjson.loads(await r.read())

    async def with_http1() -> object:
        answer = await pool.post("/v1/chat/completions", BODY, connect=10, first_byte=60, total=600)
        return orjson.loads(answer.body)

    results: dict[str, list[float]] = {"aiohttp": [], "http1": []}
    for _ in range(rounds):
        results["aiohttp"].append(await cpu_per_call(with_aiohttp, calls))
        results["http1"].append(await cpu_per_call(with_http1, calls))
    await session.close()
    pool.close()
    a, h = statistics.median(results["aiohttp"]), statistics.median(results["http1"])
    print(f"aiohttp: {a:.0f} us CPU per call; podium http1: {h:.0f} us ({a / h:.1f}x less); medians of {rounds}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    mock = subprocess.Popen([sys.executable, "-c", MOCK, str(port)])
    try:
        time.sleep(1.0)
        uvloop.run(main(port, args.calls, args.rounds))
    finally:
        mock.terminate()
