"""Tracing benchmark: span ingest through the batched writer, on SQLite and optionally PostgreSQL.

    .venv/bin/python bench/tracing.py [--spans 200000] [--postgres URL] [--record]

Measures, per database:
- writer: spans/s sustained when records (one trace of 10 spans, ~1 KB input and output each, as the SDK
  sends them) are queued as fast as one producer can, until everything is committed; with the writer
  inserting in its child process (the server's default) and in its thread;
- http: spans/s end to end through `POST /api/traces/ingest` of a live `podium serve` (one worker),
  two client threads posting batches of 500 spans.
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
from podium.tracing.writer import TraceWriter  # noqa: E402

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


def bench_writer(url: str, spans: int, process: bool, blobs: BlobStore) -> float:
    from podium.core.db import get_database

    db = get_database(url)
    writer = TraceWriter(db, Path(tempfile.mkdtemp()) / "spill", process=process)
    writer.start()
    n_traces = spans // SPANS_PER_TRACE
    # build the records first: the measurement is the writer's, not pydantic's
    records = []
    chunk = 1000
    for off in range(0, n_traces, chunk):
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
    return (n_traces - 1) * SPANS_PER_TRACE / elapsed


def bench_http(home: Path, url: str, spans: int) -> float:
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
        stderr=open(home / "serve.log", "w"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--postgres", default=None, help="A PostgreSQL URL (a database this run may fill).")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podium-bench-tr-"))
    rows = []
    backends = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    for label, pg in backends:
        for mode in ("process", "thread", "http"):
            home = work / f"{label}-{mode}"
            home.mkdir()
            url = pg or f"sqlite:///{home / 'podium.db'}"
            settings = load_settings(home=str(home), database_url=url)
            prepare(settings, register_builtins=False)
            blobs = BlobStore(str(home / "artifacts"))
            if mode == "http":
                rate = bench_http(home, url, args.spans)
            else:
                rate = bench_writer(url, args.spans, mode == "process", blobs)
            rows.append((label, mode, rate))
            print(label, mode, f"{rate:,.0f} spans/s", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    names = {
        "process": "writer, inserts in its child process",
        "thread": "writer, inserts in its thread",
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
    table = "\n".join(lines) + "\n"
    print(table)
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
