"""Gateway benchmark: Podium's /v1 against its floor, a lean proxy, on the same mock upstream, in one run.

    .venv/bin/python bench/gateway.py [--duration 10] [--rounds 1] [--workers 1] [--models DEFAULT]
                                      [--litellm PATH_TO_LITELLM] [--record]

Servers, all on 127.0.0.1 and all up at once:
- the mock: a raw-asyncio OpenAI chat endpoint (canned answer, or three chunks when streamed);
- the lean proxy (the floor): Starlette plus one pooled aiohttp `ClientSession` passing the body through to the
  mock, on uvicorn with uvloop and httptools, one worker; no auth, no routing, no recording;
- Podium started as `make run` starts it (`podium serve` with its defaults: the built-in models loaded in
  their worker processes, trace inserts in the writer's child process, log level info), one route to the mock,
  and the admin key given a daily and monthly budget and an RPM limit (reserve before, settle after each call);
- optionally LiteLLM's proxy (`--litellm`), one worker, master-key auth only.

Load: wrk (1 thread), closed loop, at 1, 8 and 64 connections; p50/p99 come from the 1-connection run, and a
streamed answer's time to first byte from 200 requests one at a time. With `--rounds N` every level is measured
N times, the servers taking turns, and each figure is the median: the machine is shared and noisy, so ratios
to the lean proxy measured side by side are what to compare. The model workers' derived files go to
`~/.cache/podium-bench` (`PODIUM_CACHE_DIR`), so only the first run converts the chat model.
Needs `wrk` (Debian package).
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
import statistics
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
MODEL_CACHE = Path(os.environ.get("BENCH_MODEL_CACHE", Path.home() / ".cache" / "podium-bench"))
DEFAULT_MODELS = "smollm2-135m-instruct,minilm-l6-v2"  # what `podium serve` loads by default

MOCK = textwrap.dedent(
    """
    import asyncio, sys, orjson, uvloop

    REPLY = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how can I help?"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}})
    def chunk(d, fin=None):
        return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "mock",
            "choices": [{"index": 0, "delta": d, "finish_reason": fin}]}) + b"\\n\\n"
    USAGE = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "mock", "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}}
    STREAM = (chunk({"role": "assistant", "content": "Hello"}) + chunk({"content": " there"}) + chunk({}, "stop")
              + b"data: " + orjson.dumps(USAGE) + b"\\n\\ndata: [DONE]\\n\\n")
    OK = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(REPLY) + REPLY
    EVENTS = (b"HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(STREAM)
              + STREAM)

    class Mock(asyncio.Protocol):
        # HTTP/1.1 keep-alive, Content-Length bodies only: enough for aiohttp, httpx and wrk
        def connection_made(self, transport):
            self.t, self.buf = transport, b""
        def data_received(self, data):
            self.buf += data
            while True:
                end = self.buf.find(b"\\r\\n\\r\\n")
                if end < 0:
                    return
                n = 0
                for line in self.buf[:end].split(b"\\r\\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        n = int(value)
                if len(self.buf) < end + 4 + n:
                    return
                body, self.buf = self.buf[end + 4:end + 4 + n], self.buf[end + 4 + n:]
                self.t.write(EVENTS if b'"stream":true' in body.replace(b" ", b"") else OK)

    async def main():
        server = await asyncio.get_running_loop().create_server(Mock, "127.0.0.1", int(sys.argv[1]), backlog=1024)
        await server.serve_forever()
    uvloop.run(main())
    """
)

LEAN = textwrap.dedent(
    """
    import sys, aiohttp, uvicorn
    from contextlib import asynccontextmanager
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    UPSTREAM = sys.argv[2] + "/v1/chat/completions"
    pool = {}

    @asynccontextmanager
    async def lifespan(app):
        pool["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30))
        yield
        await pool["s"].close()

    async def chat(request):
        body = await request.body()
        resp = await pool["s"].post(UPSTREAM, data=body, headers={"Content-Type": "application/json"})
        if resp.content_type == "text/event-stream":
            async def relay():
                async with resp:
                    async for piece in resp.content.iter_any():
                        yield piece
            return StreamingResponse(relay(), media_type="text/event-stream")
        async with resp:
            payload = await resp.read()
        return Response(payload, status_code=resp.status, media_type="application/json")

    async def health(request):
        return Response(b"ok")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/healthz", health)],
                    lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", workers=1,
                log_level="warning", access_log=False)
    """
)

BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16}
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
LEVELS = (1, 8, 64)


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


def start_lean(mock_url: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The floor: a minimal Starlette + pooled aiohttp pass-through on uvicorn (uvloop, httptools), one worker."""
    port = free_port()
    log = work / "lean.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", LEAN, str(port), mock_url],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", 30, proc, log)
    return proc, url


def start_podium(home: Path, mock_url: str, workers: int, models: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """`podium serve` as `make run` starts it (its defaults), one route to the mock; the admin key gets limits."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update({"PODIUM_HOME": str(home), "PODIUM_CACHE_DIR": str(MODEL_CACHE), "PODIUM_SERVE_MODELS": models})
    # BENCH_PODIUM_X=... sets PODIUM_X for the server under test (A/B runs of a setting)
    env.update({k.removeprefix("BENCH_"): v for k, v in os.environ.items() if k.startswith("BENCH_PODIUM_")})
    (home / "podium.toml").write_text(
        f'[[routes]]\nname = "bench"\ndeployments = [{{provider = "openai", base_url = "{mock_url}/v1", model = "mock", price = {{input = 0.15, output = 0.6}}}}]\n'
    )
    env["PODIUM_CONFIG"] = str(home / "podium.toml")
    log = home / "serve.log"
    proc = subprocess.Popen(
        [str(BIN / "podium"), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", 120, proc, log)
    expected = len([m for m in models.split(",") if m.strip()])
    states = home / "run" / "models"
    deadline = time.monotonic() + 600  # the first conversion of the chat model takes about a minute
    while time.monotonic() < deadline:
        ready = [p for p in states.glob("*.state") if p.read_text().startswith("ready")] if states.exists() else []
        if len(ready) >= expected and (home / "admin.key").exists():
            break
        if proc.poll() is not None:
            raise RuntimeError(f"podium serve exited with {proc.returncode}\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    else:
        raise RuntimeError(f"the model workers were not ready in time\n{log.read_text()[-3000:]}")
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
    time.sleep(2.5)  # the governor's snapshot picks the limits up within its 2 s refresh
    return proc, url, key


def start_litellm(path: str, mock_url: str, work: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """LiteLLM's proxy on the same mock, one worker. It refuses to start without a master key (>= 1.108), so it
    gets a strong one: the proxy then checks every request's key against it. No database is set up, so it has
    no virtual keys, budgets or spend logs; Podium does look keys up and records every request."""
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
    version = (
        subprocess.run(
            [str(Path(path).parent / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or "?"
    )
    port = free_port()
    log = work / "litellm.log"
    proc = subprocess.Popen(
        [path, "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/liveliness", 300, proc, log)  # a cold first start takes minutes
    return proc, url, litellm_key, version


def measure_all(
    servers: dict[str, tuple[str, str]], duration: int, rounds: int, work: Path
) -> dict[str, dict[str, float]]:
    """Every server at every level, the servers taking turns within each round; medians over the rounds."""
    runs: dict[str, dict[int, list[dict[str, float]]]] = {name: {c: [] for c in LEVELS} for name in servers}
    for url, key in servers.values():
        wrk(url + "/v1/chat/completions", key, 8, 2, work)  # warm up
    for r in range(rounds):
        for c in LEVELS:
            for name, (url, key) in servers.items():
                result = wrk(url + "/v1/chat/completions", key, c, duration, work)
                runs[name][c].append(result)
                print(f"round {r + 1}, {c} connections, {name}: {result}", file=sys.stderr)
    rows: dict[str, dict[str, float]] = {}
    for name, (url, key) in servers.items():

        def med(c: int, f: str, name: str = name) -> float:
            return statistics.median(x[f] for x in runs[name][c])

        rows[name] = {
            "rps_1": med(1, "rps"),
            "p50_1": med(1, "p50_ms"),
            "p99_1": med(1, "p99_ms"),
            "rps_8": med(8, "rps"),
            "rps_64": med(64, "rps"),
            "errors": sum(x["errors"] for c in LEVELS for x in runs[name][c]),
            "ttfb_p50": statistics.median(ttfb(url + "/v1/chat/completions", key) for _ in range(rounds)),
        }
        print(name, rows[name], file=sys.stderr)
    return rows


def machine() -> str:
    """`lscpu`'s model name and the vector instructions that matter, for comparing runs across machines."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"{platform.machine()}, {os.cpu_count()} cores"
    model = re.search(r"Model name:\s+(.+)", out)
    flags = set((re.search(r"Flags:\s+(.+)", out) or re.search(r"()", "")).group(1).split())  # type: ignore[union-attr]
    vec = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return (
        f"{model.group(1).strip() if model else platform.machine()}, {os.cpu_count()} cores"
        f" (flags: {' '.join(vec) or 'none of sse4_2/avx/avx2/avx512'})"
    )


def table(rows: dict[str, dict[str, float]], lean: str, args: argparse.Namespace, models: str) -> str:
    floor = rows[lean]
    lines = [
        f"### bench/gateway.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}, Python {platform.python_version()}; wrk (1 thread), {args.duration} s per level,"
        f" {args.rounds} round(s) (medians), mock, servers and load generator on the same machine. The lean proxy:"
        " Starlette + one pooled aiohttp session, pass-through, uvicorn (uvloop, httptools), one worker. Podium as"
        f" `make run` starts it (`podium serve`, models loaded: {models or 'none'}; trace inserts in the writer's"
        " child process) with key auth, a daily and monthly budget and an RPM limit on the key (reserve before,"
        " settle after each call), and recording of every request."
        + (
            " LiteLLM's proxy with master-key auth only (no database, so no virtual keys, budgets or spend logs),"
            " LITELLM_LOG=ERROR, one uvicorn worker."
            if args.litellm
            else ""
        ),
        "",
        "| server | req/s at 8 (× lean) | req/s at 64 (× lean) | p50 at 1 (vs lean) | p99 at 1 (vs lean) |"
        " stream TTFB p50 (vs lean) | failed (non-2xx, socket errors) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        compared = name not in (lean, "mock upstream alone")

        def ratio(key: str, r: dict[str, float] = r, compared: bool = compared) -> str:
            return f"{r[key]:,.0f}" + (f" (×{r[key] / floor[key]:.2f})" if compared else "")

        def ms(key: str, r: dict[str, float] = r, compared: bool = compared) -> str:
            return f"{r[key]:.2f} ms" + (f" ({r[key] - floor[key]:+.2f})" if compared else "")

        lines.append(
            f"| {name} | {ratio('rps_8')} | {ratio('rps_64')} | {ms('p50_1')} | {ms('p99_1')} | {ms('ttfb_p50')} |"
            f" {int(r['errors'])} |"
        )
    for name, r in rows.items():
        if name.startswith("podium, 1 worker"):
            r8, r64, p50 = r["rps_8"] / floor["rps_8"], r["rps_64"] / floor["rps_64"], r["p50_1"] - floor["p50_1"]
            ok = r8 >= 0.75 and r64 >= 0.75 and p50 <= 0.3
            lines += [
                "",
                f"Target (≥ 0.75 × the lean proxy at 8 and 64 connections, p50 at 1 within 0.3 ms of it): ×{r8:.2f},"
                f" ×{r64:.2f}, {p50:+.2f} ms: {'met' if ok else 'not met'}.",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="Seconds per wrk run.")
    parser.add_argument("--rounds", type=int, default=1, help="Measure every level this many times (medians).")
    parser.add_argument("--workers", default="1", help="Podium worker counts to run, comma-separated (1,2).")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="Local models Podium loads ('' for none).")
    parser.add_argument("--litellm", default=None, help="Path of a `litellm` executable (litellm[proxy]<1.109).")
    parser.add_argument("--record", action="store_true", help="Append the table to bench/RESULTS.md.")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="podium-bench-gw-"))
    mock_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-c", MOCK, str(mock_port)]))
        mock_url = f"http://127.0.0.1:{mock_port}"
        time.sleep(1.0)
        servers: dict[str, tuple[str, str]] = {"mock upstream alone": (mock_url, "none")}
        lean, lean_url = start_lean(mock_url, work)
        procs.append(lean)
        lean_name = "lean proxy (floor), 1 worker"
        servers[lean_name] = (lean_url, "none")
        for n in [int(w) for w in args.workers.split(",")]:
            home = work / f"podium-{n}"
            home.mkdir()
            proc, url, key = start_podium(home, mock_url, n, args.models)
            procs.append(proc)
            servers[f"podium, {n} worker{'s' if n > 1 else ''}"] = (url, key)
        if args.litellm:
            proc, url, key, version = start_litellm(args.litellm, mock_url, work)
            procs.append(proc)
            servers[f"litellm {version} proxy, 1 worker"] = (url, key)
        rows = measure_all(servers, args.duration, args.rounds, work)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
    text = table(rows, lean_name, args, args.models)
    print(text)
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
