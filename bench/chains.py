"""Chain engine benchmark (issue 18): the engine's own overhead per step, and a `map` of model calls against the
same calls made by hand with asyncio, in one run, on `podium serve` and a mock upstream.

    .venv/bin/python bench/chains.py [--runs 30] [--rounds 5] [--items 64] [--concurrency 16] [--delay-ms 20]
                                     [--record]

Processes, all on 127.0.0.1: the mock upstream of bench/evals.py (raw asyncio, OpenAI chat completions; a
deterministic rewording of the prompt), here answering after `--delay-ms` (an upstream takes time; 0 makes
the gateway's own cost the whole call), and `podium serve` as `make run` starts it but without local models
(one worker), with a route `m` to the mock.

1. Per-step overhead. A chain of ten `llm` steps, each reading the previous one's answer, run `--runs` times.
   From each run's trace: a step's span minus the span of the model call it made (the gateway's span, its
   child) is what the engine spent on that step (rendering its template, events, recording); the chain's span
   minus its steps' spans is the rest (binding the inputs, the output expression, and the hand-offs between
   one step's end and the next one's start). Beside it, the client makes the same ten calls by hand
   through `/v1/chat/completions`, one after another, and the run's latency is compared with theirs.
2. Map. A chain whose `map` step makes `--items` model calls at `--concurrency`, against the same calls made
   by hand with asyncio (an `asyncio.Semaphore` of the same size, one pooled aiohttp session) through the
   gateway's `/v1`, and directly to the mock (no gateway: the floor of the calls themselves). The three
   take turns `--rounds` times; medians.

`--record` inserts the section at the top of bench/RESULTS.md's chains part (before the first `### bench/`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from evals import MOCK, add_route, start_podium
from gateway import free_port, machine, wait_http

RESULTS = Path(__file__).with_name("RESULTS.md")
STEPS = 10


def slow_mock(delay_ms: float) -> str:
    """bench/evals.py's mock, answering each chat completion after `delay_ms`."""
    if delay_ms <= 0:
        return MOCK
    patched = MOCK.replace(
        "self.t.write(",
        f"asyncio.get_running_loop().call_later({delay_ms / 1000!r}, self.t.write, ",
        1,
    )
    if patched == MOCK:
        raise RuntimeError("bench/evals.py's mock changed: cannot add a delay to it")
    return patched


def sequence_chain() -> str:
    lines = ["inputs: {text: string}", "steps:"]
    for i in range(STEPS):
        source = "inputs.text" if i == 0 else f"steps.s{i - 1}"
        lines.append(f'  - {{id: s{i}, type: llm, model: m, input: "step {i}: {{{{ {source} }}}}"}}')
    return "\n".join(lines) + "\n"


MAP_CHAIN = """
inputs: {n: integer, concurrency: integer}
steps:
  - {id: numbers, type: transform, expression: "range(inputs.n) | list"}
  - id: calls
    type: map
    over: steps.numbers
    concurrency: CONCURRENCY
    max_items: 10000
    step: {id: call, type: llm, model: m, input: "item {{ item }}: tell me about number {{ item }}"}
output: "steps.calls | length"
"""


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def spans_of(c: httpx.Client, trace_id: str, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        r = c.get(f"/api/traces/{trace_id}/spans")
        if r.status_code == 200 and len(r.json()["spans"]) >= expected:
            return list(r.json()["spans"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"trace {trace_id} has not got its {expected} spans: {r.text[:300]}")
        time.sleep(0.05)


def step_overheads(spans: list[dict[str, Any]]) -> tuple[list[float], float]:
    """Per step: its span minus its model call's span (ms); and the chain span minus its steps' spans (ms)."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        by_parent.setdefault(s["parent_id"], []).append(s)
    root = by_parent[None][0]
    steps = by_parent[root["id"]]
    per_step = []
    for step in steps:
        (call,) = by_parent[step["id"]]
        per_step.append(
            (ts(step["end_time"]) - ts(step["start_time"]) - (ts(call["end_time"]) - ts(call["start_time"]))) * 1000
        )
    covered = sum(ts(s["end_time"]) - ts(s["start_time"]) for s in steps)
    return per_step, (ts(root["end_time"]) - ts(root["start_time"]) - covered) * 1000


def by_hand_sequence(c: httpx.Client, text: str) -> float:
    started = time.perf_counter()
    previous = text
    for i in range(STEPS):
        body = {"model": "m", "messages": [{"role": "user", "content": f"step {i}: {previous}"}]}
        r = c.post("/v1/chat/completions", json=body)
        r.raise_for_status()
        previous = r.json()["choices"][0]["message"]["content"]
    return time.perf_counter() - started


async def by_hand_map(url: str, key: str | None, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(i: int) -> str:
            body = {"model": "m", "messages": [{"role": "user", "content": f"item {i}: tell me about number {i}"}]}
            async with gate, session.post(url + "/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                data = await r.json()
                return str(data["choices"][0]["message"]["content"])

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - started
    assert len(answers) == n
    return elapsed


def pct(values: list[float], q: float) -> float:
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]) if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="Runs of the ten-step chain (after 3 warm-ups).")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds of the map comparison.")
    parser.add_argument("--items", type=int, default=64, help="Model calls the map makes.")
    parser.add_argument("--concurrency", type=int, default=16, help="The map's (and by hand's) concurrency.")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="The mock's answer delay.")
    parser.add_argument("--record", action="store_true", help="Insert the section into bench/RESULTS.md.")
    args = parser.parse_args()

    procs: list[subprocess.Popen[bytes]] = []
    work = Path(tempfile.mkdtemp(prefix="podium-chains-bench-"))
    try:
        mock_port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", slow_mock(args.delay_ms), str(mock_port)]))
        mock_url = f"http://127.0.0.1:{mock_port}"
        wait_http(mock_url + "/count", 30, procs[-1])
        proc, url, key = start_podium(work, "")
        procs.append(proc)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=300) as c:
            add_route(c, "m", mock_url)
            time.sleep(1.5)  # the route table refreshes every second
            r = c.post("/api/chains/ten-steps/versions", json={"source": sequence_chain()})
            r.raise_for_status()
            map_source = MAP_CHAIN.replace("CONCURRENCY", str(args.concurrency))
            c.post("/api/chains/fan-out/versions", json={"source": map_source}).raise_for_status()

            # 1. per-step overhead, and the ten steps by hand
            per_step: list[float] = []
            rest: list[float] = []
            chain_s: list[float] = []
            hand_s: list[float] = []
            for i in range(args.runs + 3):
                text = f"run {i}: the quick brown fox jumps over the lazy dog"
                started = time.perf_counter()
                run = c.post("/api/chains/ten-steps/run", json={"inputs": {"text": text}}).json()
                elapsed = time.perf_counter() - started
                assert run["status"] == "ok", run
                hand = by_hand_sequence(c, text)
                if i < 3:
                    continue
                chain_s.append(elapsed)
                hand_s.append(hand)
                steps, other = step_overheads(spans_of(c, run["trace_id"], 1 + 2 * STEPS))
                per_step += steps
                rest.append(other)
            print(f"  per step p50 {statistics.median(per_step):.3f} ms", file=sys.stderr, flush=True)

            # 2. the map against asyncio by hand
            rounds: dict[str, list[float]] = {"chain": [], "by hand via /v1": [], "by hand to the mock": []}
            body = {"inputs": {"n": args.items, "concurrency": args.concurrency}}
            c.post("/api/chains/fan-out/run", json=body).raise_for_status()  # warm-up
            asyncio.run(by_hand_map(url, key, args.items, args.concurrency))
            for _ in range(args.rounds):
                started = time.perf_counter()
                result = c.post("/api/chains/fan-out/run", json=body).json()
                rounds["chain"].append(time.perf_counter() - started)
                assert result["status"] == "ok" and result["output"] == args.items, result
                rounds["by hand via /v1"].append(asyncio.run(by_hand_map(url, key, args.items, args.concurrency)))
                rounds["by hand to the mock"].append(
                    asyncio.run(by_hand_map(mock_url, None, args.items, args.concurrency))
                )
                print(f"  map round: {', '.join(f'{k} {v[-1]:.3f}s' for k, v in rounds.items())}", file=sys.stderr)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    med = {k: statistics.median(v) for k, v in rounds.items()}
    lines = [
        f"### bench/chains.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (issue 18: the chain engine's overhead)",
        "",
        f"Machine: {machine()}. Mock upstream answering after {args.delay_ms:g} ms; `podium serve`, one worker,"
        " no local models.",
        "",
        f"Per-step overhead: a chain of {STEPS} `llm` steps (each reading the previous answer), {args.runs} runs"
        f" after 3 warm-ups, {len(per_step)} steps. A step's span minus its model call's span:",
        "",
        "| engine overhead | p50 | p95 | max |",
        "| --- | --- | --- | --- |",
        f"| per step | {statistics.median(per_step):.3f} ms | {pct(per_step, 95):.3f} ms | {max(per_step):.3f} ms |",
        f"| per run, outside the steps | {statistics.median(rest):.3f} ms | {pct(rest, 95):.3f} ms | {max(rest):.3f} ms |",
        "",
        f"The same {STEPS} calls by hand through `/v1` (one HTTP request each, from this client): run"
        f" {statistics.median(chain_s) * 1000:.1f} ms against {statistics.median(hand_s) * 1000:.1f} ms by hand"
        f" (×{statistics.median(chain_s) / statistics.median(hand_s):.2f}; medians).",
        "",
        f"Map: {args.items} model calls at concurrency {args.concurrency}, {args.rounds} rounds taking turns, medians:",
        "",
        "| contender | seconds | × by hand via /v1 |",
        "| --- | --- | --- |",
    ]
    for name, seconds in med.items():
        lines.append(f"| {name} | {seconds:.3f} | ×{seconds / med['by hand via /v1']:.2f} |")
    lines += [
        "",
        f"Targets: per-step overhead p50 {statistics.median(per_step):.3f} ms (≤ 1 ms); map ×"
        f"{med['chain'] / med['by hand via /v1']:.2f} of the same calls by hand with asyncio through the gateway"
        f" (≤ ×1.1); ×{med['chain'] / med['by hand to the mock']:.2f} of the calls straight to the mock.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        current = RESULTS.read_text()
        at = current.find("### bench/")
        RESULTS.write_text(current[:at] + text + "\n\n" + current[at:] if at >= 0 else current + "\n" + text + "\n")


if __name__ == "__main__":
    main()
