"""Gateway benchmark: Podium's /v1 in front of a mock OpenAI upstream on loopback, loaded by wrk.

    .venv/bin/python bench/gateway.py [--duration 10] [--workers 1,2] [--litellm PATH_TO_LITELLM] [--record]

Measures, in one run: the mock alone, Podium (key auth and recording on; one worker, then two), and
optionally LiteLLM's proxy on the same mock: requests/s at 8 and 64 connections (closed loop), latency
p50/p99 at one connection, and time to first byte of a streamed answer at one connection.
Needs `wrk` (Debian package). Every server binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

MOCK = textwrap.dedent(
    """
    import sys, orjson
    from aiohttp import web
    REPLY = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how can I help?"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}})
    def chunk(d, fin=None):
        return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "mock",
            "choices": [{"index": 0, "delta": d, "finish_reason": fin}]}) + b"\\n\\n"
    async def chat(request):
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=REPLY, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(chunk({"role": "assistant", "content": "Hello"}))
        await resp.write(chunk({"content": " there"}))
        await resp.write(chunk({}, "stop"))
        usage = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "mock", "choices": [],
                 "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}}
        await resp.write(b"data: " + orjson.dumps(usage) + b"\\n\\ndata: [DONE]\\n\\n")
        return resp
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
    """
)

BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16}
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout: float = 60, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: server exited with {proc.returncode} before coming up\n{tail}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


def wrk(url: str, key: str, connections: int, duration: int, work: Path) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(LUA.format(body=json.dumps(BODY), key=key))
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    # Timeouts (wrk's default is 2 s) and other socket errors are failed requests too; a slow server at 64
    # connections shows them here rather than as non-2xx.
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "errors": (int(errors.group(1)) if errors else 0)
        + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0),
    }


def ttfb(url: str, key: str, n: int = 200) -> float:
    """p50 milliseconds to the first byte of a streamed answer, one request at a time."""
    body = {**BODY, "stream": True}
    times = []
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        for _ in range(n):
            start = time.perf_counter()
            with c.stream("POST", url, json=body) as r:
                first = True
                for _ in r.iter_raw():
                    if first:
                        times.append((time.perf_counter() - start) * 1000)
                        first = False
    times.sort()
    return times[len(times) // 2]


def start_podium(home: Path, mock_url: str, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    # BENCH_PODIUM_X=... sets PODIUM_X for the server under test (A/B runs of a setting)
    env.update({k.removeprefix("BENCH_"): v for k, v in os.environ.items() if k.startswith("BENCH_PODIUM_")})
    env.update(
        {"PODIUM_HOME": str(home), "PODIUM_SERVE_MODELS": "", "PODIUM_JOB_WORKERS": "0", "PODIUM_LOG_LEVEL": "warning"}
    )
    (home / "podium.toml").write_text(
        f'[[routes]]\nname = "bench"\ndeployments = [{{provider = "openai", base_url = "{mock_url}/v1", model = "mock", price = {{input = 0.15, output = 0.6}}}}]\n'
    )
    env["PODIUM_CONFIG"] = str(home / "podium.toml")
    proc = subprocess.Popen(
        [str(BIN / "podium"), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=open(home / "serve.log", "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    deadline = time.monotonic() + 30
    while not (home / "admin.key").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    key = (home / "admin.key").read_text().strip()
    # Budget checks on: the bench key gets a daily and monthly budget and an RPM limit far above what the run
    # spends, so every request reserves its maximum cost before the call and settles the real cost after.
    prefix = key[: key.index("-") + 9]
    r = httpx.put(
        f"{url}/api/limits/key/{prefix}",
        json={"rpm": 10_000_000, "daily_budget_usd": "100000", "monthly_budget_usd": "1000000"},
        headers={"Authorization": f"Bearer {key}"},
    )
    r.raise_for_status()
    return proc, url, key


def measure(name: str, url: str, key: str, duration: int, work: Path, rows: dict[str, dict[str, float]]) -> None:
    chat = url + "/v1/chat/completions"
    wrk(chat, key, 8, 2, work)  # warm up
    one = wrk(chat, key, 1, duration, work)
    r8 = wrk(chat, key, 8, duration, work)
    r64 = wrk(chat, key, 64, duration, work)
    rows[name] = {
        "rps_1": one["rps"],
        "p50_1": one["p50_ms"],
        "p99_1": one["p99_ms"],
        "rps_8": r8["rps"],
        "rps_64": r64["rps"],
        "errors": one["errors"] + r8["errors"] + r64["errors"],
        "ttfb_p50": ttfb(chat, key),
    }
    print(name, rows[name], file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--litellm", default=None, help="Path of a `litellm` executable (litellm[proxy]<1.109).")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="podium-bench-gw-"))
    mock_port = free_port()
    mock = subprocess.Popen([sys.executable, "-c", MOCK, str(mock_port)])
    mock_url = f"http://127.0.0.1:{mock_port}"
    rows: dict[str, dict[str, float]] = {}
    procs = [mock]
    try:
        time.sleep(1.5)
        measure("mock upstream alone", mock_url, "none", args.duration, work, rows)
        for n in [int(w) for w in args.workers.split(",")]:
            home = work / f"podium-{n}"
            home.mkdir()
            proc, url, key = start_podium(home, mock_url, n)
            procs.append(proc)
            measure(f"podium, {n} worker{'s' if n > 1 else ''}", url, key, args.duration, work, rows)
            proc.terminate()
            proc.wait(30)
        if args.litellm:
            # LiteLLM (>= 1.108) refuses to start without a master key, so it gets a strong one in its config: the
            # proxy then checks every request's key against it. No database is set up, so it has no virtual keys,
            # budgets or spend logs; Podium above does look keys up and records every request.
            litellm_key = "sk-" + secrets.token_hex(32)
            cfg = work / "litellm.yaml"
            cfg.write_text(
                "model_list:\n  - model_name: bench\n    litellm_params:\n"
                f"      model: openai/mock\n      api_base: {mock_url}/v1\n      api_key: x\n"
                f"general_settings:\n  master_key: {litellm_key}\n"
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "DATABASE_URL"))}
            env.update(
                {
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map from the internet
                    "LITELLM_TELEMETRY_DISABLED": "true",
                    "LITELLM_TELEMETRY": "False",
                    "LITELLM_LOG": "ERROR",  # quiet, as in production; no --detailed_debug
                }
            )
            litellm_version = (
                subprocess.run(
                    [
                        str(Path(args.litellm).parent / "python"),
                        "-c",
                        "import importlib.metadata as m; print(m.version('litellm'))",
                    ],
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                or "?"
            )
            port = free_port()
            log = work / "litellm.log"
            proc = subprocess.Popen(
                [args.litellm, "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=open(log, "w"),  # noqa: SIM115
            )
            procs.append(proc)
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", 300, proc, log)  # a cold first start takes minutes
            measure(
                f"litellm {litellm_version} proxy, 1 worker",
                f"http://127.0.0.1:{port}",
                litellm_key,
                args.duration,
                work,
                rows,
            )
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
    base = rows["mock upstream alone"]
    lines = [
        f"### bench/gateway.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; wrk (1 thread),"
        f" {args.duration} s per level, mock and load generator on the same machine. Podium with key auth, a daily and"
        " monthly budget and an RPM limit on the key (reserve before, settle after each call), and recording of every"
        " request (trace + span rows through the batched writer)."
        + (
            " LiteLLM's proxy with master-key auth only (no database, so no virtual keys, budgets or spend logs),"
            " LITELLM_LOG=ERROR, one uvicorn worker."
            if args.litellm
            else ""
        ),
        "",
        "| server | req/s at 8 | req/s at 64 | p50 at 1 (added) | p99 at 1 (added) | stream TTFB p50 (added) | failed (non-2xx, socket errors) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        added = name != "mock upstream alone"

        def fmt(v: float, b: float, added: bool = added) -> str:
            return f"{v:.2f} ms" + (f" (+{v - b:.2f})" if added else "")

        lines.append(
            f"| {name} | {r['rps_8']:,.0f} | {r['rps_64']:,.0f} | {fmt(r['p50_1'], base['p50_1'])} |"
            f" {fmt(r['p99_1'], base['p99_1'])} | {fmt(r['ttfb_p50'], base['ttfb_p50'])} | {int(r['errors'])} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
