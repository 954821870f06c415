"""Tracing benchmark: span ingest through the batched writer, on SQLite and optionally PostgreSQL.

    .venv/bin/python bench/tracing.py [--spans 200000] [--postgres URL] [--record]

Measures, per database:
- writer: spans/s sustained when records (one trace of 10 spans, ~1 KB input and output each, as the SDK
  sends them) are queued as fast as one producer can, until everything is committed; with the writer
  inserting in its child process (the server's default) and in its thread; and gateway-shaped records (one
  trace and one span each, inserted rather than merged) through the child process;
- http: spans/s end to end through `POST /api/traces/ingest` of a live `podium serve` (one worker),
  two client threads posting batches of 500 spans;
- queries (`--stored`, default 1,000,000 spans): with that many spans stored, p50/p95 of the trace list's
  first page filtered by model and a time range, and of opening a trace of 10,000 spans (the first page
  of its span tree, 1,000 nodes, and the first 100 full spans), over HTTP against `podium serve`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from gateway import free_port, wait_http  # noqa: E402

from podium.core.blobs import BlobStore  # noqa: E402
from podium.core.config import load_settings  # noqa: E402
from podium.server.serve import prepare  # noqa: E402
from podium.tracing.ingest import SpanIn, to_records  # noqa: E402
from podium.tracing.writer import Record, TraceWriter  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog. " * 23)[:1000]  # ~1 KB
SPANS_PER_TRACE = 10
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def span_dicts(n_traces: int, offset: int = 0) -> list[dict[str, Any]]:
    """SDK-shaped spans: per trace a root agent span and 9 llm children, each with ~1 KB in and out."""
    out = []
    for t in range(offset, offset + n_traces):
        tid = uuid.uuid4().hex
        start = T0 + timedelta(seconds=t)
        root = f"{tid[:16]}r"
        for i in range(SPANS_PER_TRACE):
            out.append(
                {
                    "id": root if i == 0 else f"{tid[:16]}{i}",
                    "trace_id": tid,
                    "parent_id": None if i == 0 else root,
                    "kind": "agent" if i == 0 else "llm",
                    "name": "answer" if i == 0 else f"call {i}",
                    "start_time": (start + timedelta(milliseconds=i)).isoformat(),
                    "end_time": (start + timedelta(milliseconds=i + 5)).isoformat(),
                    "model": None if i == 0 else ("gpt-4o-mini" if i % 2 else "smollm2-135m-instruct"),
                    "prompt_tokens": 0 if i == 0 else 250,
                    "completion_tokens": 0 if i == 0 else 120,
                    "input": TEXT,
                    "output": TEXT,
                    "user_id": f"user-{t % 100}",
                    "attributes": {"step": i},
                }
            )
    return out


def gateway_records(n: int) -> list[Record]:
    """Gateway-shaped records (a trace and its one span, inserted, not merged), 1 ms apart as at 1,000
    requests a second, over 8 models, 4 routes and 25 keys, ~1 KB input and output on the trace."""
    out = []
    for t in range(n):
        tid = f"trc_{uuid.uuid4().hex[:24]}"
        start = T0 + timedelta(milliseconds=t)
        trace = {
            "id": tid,
            "project_id": "prj_bench",
            "name": "chat.completions",
            "source": "gateway",
            "status": "error" if t % 50 == 0 else "ok",
            "start_time": start,
            "end_time": start + timedelta(milliseconds=300),
            "latency_ms": 300.0 + t % 700,
            "model": f"model-{t % 8}",
            "route": f"route-{t % 4}",
            "key_id": f"key_{t % 25:02d}",
            "user_id": f"user-{t % 1000}",
            "attempts": 1,
            "span_count": 1,
            "prompt_tokens": 250,
            "completion_tokens": 120,
            "cost_micros": 1700,
            "input": TEXT,
            "output": TEXT,
        }
        span = {"id": f"spn_{tid[4:]}", "trace_id": tid, "kind": "llm", "name": "upstream", "start_time": start}
        out.append(Record(trace=trace, spans=[span]))
    return out


def bench_writer(url: str, spans: int, process: bool, blobs: BlobStore, gateway: bool = False) -> float:
    from podium.core.db import get_database

    db = get_database(url)
    writer = TraceWriter(db, Path(tempfile.mkdtemp()) / "spill", process=process)
    writer.start()
    per_trace = 1 if gateway else SPANS_PER_TRACE
    n_traces = spans // per_trace
    # build the records first: the measurement is the writer's, not pydantic's
    records = []
    chunk = 1000
    if gateway:
        records = gateway_records(n_traces)
    for off in range(0, 0 if gateway else n_traces, chunk):
        parsed = [SpanIn.model_validate(d) for d in span_dicts(min(chunk, n_traces - off), off)]
        records += to_records(parsed, project_id="prj_bench", key_id=None, blobs=blobs)
    writer.put(records[0])  # warm up: the writer (and its child process) is running and connected
    writer.flush(60)
    start = time.perf_counter()
    for r in records[1:]:
        writer.put(r)
    writer.close(600)
    elapsed = time.perf_counter() - start
    assert writer.dropped == 0 and writer.spilled == 0
    return (n_traces - 1) * per_trace / elapsed


def serve(home: Path, url: str, log: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `podium serve` (one worker, no local models) on `url`; its process and base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    port = free_port()
    env.update(
        {
            "PODIUM_HOME": str(home),
            "PODIUM_DATABASE_URL": url,
            "PODIUM_SERVE_MODELS": "",
            "PODIUM_JOB_WORKERS": "0",
            "PODIUM_LOG_LEVEL": "warning",
            "PODIUM_PORT": str(port),
        }
    )
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "podium"), "serve"],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=open(home / log, "w"),  # noqa: SIM115
    )
    return proc, f"http://127.0.0.1:{port}"


def bench_http(home: Path, url: str, spans: int) -> float:
    proc, base = serve(home, url, "serve.log")
    try:
        wait_http(base + "/healthz", 60, proc, home / "serve.log")
        key = (home / "admin.key").read_text().strip()
        per_batch = 500
        batches = [span_dicts(per_batch // SPANS_PER_TRACE, i * 100) for i in range(spans // per_batch)]
        lock = threading.Lock()

        def post_all() -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
                while True:
                    with lock:
                        if not batches:
                            return
                        batch = batches.pop()
                    r = c.post("/api/traces/ingest", json={"spans": batch})
                    r.raise_for_status()

        total = spans // per_batch * per_batch
        start = time.perf_counter()
        threads = [threading.Thread(target=post_all) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        proc.terminate()  # SIGTERM drains the writer: the clock stops when everything is committed
        proc.wait(600)
        return total / (time.perf_counter() - start)
    finally:
        if proc.poll() is None:
            proc.kill()


def fill(url: str, stored: int, blobs: BlobStore) -> str:
    """Store `stored` spans (plus one trace of 10,000 spans, whose id is returned) through the writer."""
    from podium.core.db import get_database

    writer = TraceWriter(get_database(url), Path(tempfile.mkdtemp()) / "spill", max_queue=20_000)
    writer.start()
    chunk = 1000
    for off in range(0, stored // SPANS_PER_TRACE, chunk):
        parsed = [SpanIn.model_validate(d) for d in span_dicts(chunk, off)]
        for r in to_records(parsed, project_id="prj_bench", key_id=None, blobs=blobs):
            writer.put(r)
    big = uuid.uuid4().hex
    spans = [
        SpanIn(
            id=f"{big[:16]}-{i}",
            trace_id=big,
            parent_id=None if i == 0 else f"{big[:16]}-{(i - 1) // 10}",
            kind="chain" if i == 0 else "tool",
            name=f"step {i}",
            start_time=T0 + timedelta(milliseconds=i),
            end_time=T0 + timedelta(milliseconds=i + 1),
            input=TEXT,
            output=TEXT,
        )
        for i in range(10_000)
    ]
    for r in to_records(spans, project_id="prj_bench", key_id=None, blobs=blobs):
        writer.put(r)
    writer.close(1200)
    return big


def bench_queries(home: Path, url: str, big: str, n: int = 50) -> dict[str, tuple[float, float]]:
    """p50 and p95 milliseconds of the trace list (model + time filter, first page) and of a 10k-span trace."""
    proc, base = serve(home, url, "serve-q.log")
    out: dict[str, tuple[float, float]] = {}
    try:
        wait_http(base + "/healthz", 120, proc, home / "serve-q.log")
        key = (home / "admin.key").read_text().strip()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            window = {"from": (T0 + timedelta(hours=6)).isoformat(), "to": (T0 + timedelta(hours=30)).isoformat()}
            calls = {
                "trace list, model + time filter, first page": lambda: c.get(
                    "/api/traces", params={"model": "gpt-4o-mini", "limit": 50, **window}
                ),
                "open a trace of 10,000 spans": lambda: (
                    c.get(f"/api/traces/{big}"),
                    c.get(f"/api/traces/{big}/spans", params={"offset": 0, "limit": 100}),
                ),
            }
            for name, call in calls.items():
                times = []
                for i in range(n + 3):
                    t = time.perf_counter()
                    result = call()
                    for r in result if isinstance(result, tuple) else (result,):
                        r.raise_for_status()
                    if i >= 3:  # warm-up
                        times.append((time.perf_counter() - t) * 1000)
                times.sort()
                out[name] = (times[len(times) // 2], times[int(len(times) * 0.95) - 1])
                print(name, out[name], file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--postgres", default=None, help="A PostgreSQL URL (a database this run may fill).")
    parser.add_argument("--stored", type=int, default=1_000_000, help="Spans stored for the query part (0: skip).")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podium-bench-tr-"))
    rows = []
    queries: list[tuple[str, str, float, float]] = []
    backends = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    keys: dict[str, str] = {}

    def ready(home: Path, url: str) -> None:
        """Migrate and bootstrap; a PostgreSQL database shared by several homes keeps its first admin key."""
        made = prepare(load_settings(home=str(home), database_url=url), register_builtins=False)
        if made:
            keys[url] = made
        elif url in keys:
            (home / "admin.key").write_text(keys[url])

    for label, pg in backends:
        for mode in ("process", "thread", "gateway", "http"):
            home = work / f"{label}-{mode}"
            home.mkdir()
            url = pg or f"sqlite:///{home / 'podium.db'}"
            ready(home, url)
            blobs = BlobStore(str(home / "artifacts"))
            if mode == "http":
                rate = bench_http(home, url, args.spans)
            else:
                rate = bench_writer(url, args.spans, mode != "thread", blobs, gateway=mode == "gateway")
            rows.append((label, mode, rate))
            print(label, mode, f"{rate:,.0f} spans/s", file=sys.stderr)
        if args.stored:
            home = work / f"{label}-queries"
            home.mkdir()
            url = pg or f"sqlite:///{home / 'podium.db'}"
            ready(home, url)
            if pg:  # the ingest runs above filled this database: start the query part from empty tables
                from sqlalchemy import text

                from podium.core.db import get_database

                with get_database(url).session() as s:
                    s.execute(text("TRUNCATE spans, traces"))
            big = fill(url, args.stored, BlobStore(str(home / "artifacts")))
            for name, (p50, p95) in bench_queries(home, url, big).items():
                queries.append((label, name, p50, p95))
    shutil.rmtree(work, ignore_errors=True)
    names = {
        "process": "writer, inserts in its child process",
        "thread": "writer, inserts in its thread",
        "gateway": "writer, gateway-shaped records (1 span each, 1 ms apart), child process",
        "http": "POST /api/traces/ingest, end to end",
    }
    lines = [
        f"### bench/tracing.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" {args.spans:,} spans per row (traces of {SPANS_PER_TRACE} spans, ~1 KB input and output each).",
        "",
        "| database | path | spans/s |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {label} | {names[mode]} | {rate:,.0f} |" for label, mode, rate in rows]
    if queries:
        lines += [
            "",
            f"With {args.stored:,} spans stored (+ one trace of 10,000 spans), over HTTP, 50 calls each:",
            "",
            "| database | query | p50 | p95 |",
            "| --- | --- | --- | --- |",
        ]
        lines += [f"| {label} | {name} | {p50:.1f} ms | {p95:.1f} ms |" for label, name, p50, p95 in queries]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
