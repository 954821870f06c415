"""Trace aggregates benchmark: the metrics page's queries over 30 days of 10M spans, on SQLite and PostgreSQL.

    .venv/bin/python bench/aggregates.py [--spans 10000000] [--postgres URL] [--folder DIR] [--out FILE]

Loads, per database, `--spans` spans' worth of traces spread over the last 30 days, through the trace
writer's own insert function (`writer.insert_rows`: traces, spans and the rollup in the same transactions,
as the writer would have written them), batches of 2,000 traces:
- 70% gateway traces (one span, a route, 25 keys), 30% SDK agent traces (2-26 spans, no route, no key),
  so that 2,000,000 traces make 10,000,000 spans; 8 models, 3 projects, 10,000 end users, 3% errors,
  lognormal latencies by model; ~200 characters of input and output per trace, ~80 per span.

Then times, `--repeats` times each (median and p95):
- the metrics page's aggregates (per model and in total, the page's bucket) for each preset range (1h, 24h,
  7d, 30d), through `tracing.service.aggregate_with_total` as the page calls it;
- the whole page for 30 days (`GET /trace-metrics`, rendering included), in process;
- the floor, in the same run: the pre-rollup computation (every matching trace read into Python, percentiles
  there) for 30 days, and SQL over the traces: the exact scan path (`GROUP BY` plus percentiles in SQL) and,
  on PostgreSQL, one `percentile_cont` query over the traces (fewer repeats: they take seconds).

Prints a Markdown section (machine, date, figures); `--out` writes it to a file to append to RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from sqlalchemy import func, literal, select, text  # noqa: E402

from podium.core.config import load_settings  # noqa: E402
from podium.core.db import Database, get_database  # noqa: E402
from podium.core.identity import Actor  # noqa: E402
from podium.core.platform import Platform  # noqa: E402
from podium.server.serve import prepare  # noqa: E402
from podium.tracing import aggregates, latency, service  # noqa: E402
from podium.tracing.filters import conditions  # noqa: E402
from podium.tracing.store import Trace, TraceLatency, TraceRollup  # noqa: E402
from podium.tracing.writer import insert_rows  # noqa: E402

DAYS = 30
BATCH = 2_000
MODELS = [
    ("gpt-4o-mini", 900), ("gpt-4o", 2200), ("claude-3-5-sonnet", 2600), ("claude-3-haiku", 700),
    ("llama-3.1-70b", 1800), ("smollm2-135m-instruct", 350), ("mistral-large", 2000), ("text-embedding-3-small", 120),
]  # fmt: skip
ROUTES = ["chat", "chat-fast", "embed", "reasoning"]
PROJECTS = ["prj_bench_a"] * 6 + ["prj_bench_b"] * 3 + ["prj_bench_c"]
TEXT = ("The quick brown fox jumps over the lazy dog; " * 6)[:200]
SPAN_TEXT = TEXT[:80]
PRESETS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


# --- data --------------------------------------------------------------------------------------------


def batch(rng: random.Random, n: int, start: datetime, seconds: float, serial: int) -> tuple[list[Any], list[Any]]:
    """`n` traces (and their spans) starting uniformly within `seconds` after `start`."""
    traces: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    for i in range(n):
        at = start + timedelta(seconds=rng.random() * seconds)
        model, median = MODELS[rng.randrange(len(MODELS))]
        latency_ms = rng.lognormvariate(math.log(median), 0.6)
        gateway = rng.random() < 0.7
        tid = f"trc_b{serial + i:012d}"
        error = rng.random() < 0.03
        tokens_in, tokens_out = rng.randrange(20, 2000), rng.randrange(5, 800)
        n_spans = 1 if gateway else rng.randrange(2, 27)
        traces.append(
            {
                "id": tid,
                "project_id": PROJECTS[rng.randrange(len(PROJECTS))],
                "name": "chat.completions" if gateway else "agent.run",
                "user_id": f"user-{rng.randrange(10_000)}",
                "key_id": f"key_{rng.randrange(25):02d}" if gateway else None,
                "source": "gateway" if gateway else "sdk",
                "status": "error" if error else "ok",
                "start_time": at,
                "end_time": at + timedelta(milliseconds=latency_ms),
                "latency_ms": latency_ms,
                "model": model,
                "route": ROUTES[rng.randrange(len(ROUTES))] if gateway else None,
                "attempts": 1 if gateway else 0,
                "span_count": n_spans,
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "cost_micros": tokens_in * 3 + tokens_out * 12,
                "error": "upstream timed out" if error else None,
                "input": TEXT,
                "output": TEXT,
            }
        )
        step = latency_ms / max(n_spans, 1)
        for k in range(n_spans):
            spans.append(
                {
                    "id": f"{tid}s{k}",
                    "trace_id": tid,
                    "parent_id": None if k == 0 else f"{tid}s0",
                    "kind": "llm" if gateway or k else "agent",
                    "name": "call" if k else "root",
                    "start_time": at + timedelta(milliseconds=step * k),
                    "end_time": at + timedelta(milliseconds=step * (k + 1)),
                    "model": model if k or gateway else None,
                    "prompt_tokens": tokens_in // n_spans,
                    "completion_tokens": tokens_out // n_spans,
                    "input": SPAN_TEXT,
                    "output": SPAN_TEXT,
                }
            )
    return traces, spans


def load(db: Database, spans_wanted: int, end: datetime) -> tuple[int, int, float]:
    """Fill the database as the writer would have; returns (traces, spans, seconds)."""
    rng = random.Random(13)
    n_traces = round(spans_wanted / (0.7 * 1 + 0.3 * 14))  # 14 spans on average per agent trace
    batches = math.ceil(n_traces / BATCH)
    window = DAYS * 86400 / batches
    begin = end - timedelta(days=DAYS)
    traces_done = spans_done = 0
    t0 = time.perf_counter()
    for b in range(batches):
        n = min(BATCH, n_traces - traces_done)
        traces, spans = batch(rng, n, begin + timedelta(seconds=window * b), window, traces_done)
        insert_rows(db, {}, traces, spans, {}, share_gil=False)
        traces_done += n
        spans_done += len(spans)
        if b % 100 == 0:
            rate = spans_done / (time.perf_counter() - t0)
            print(f"  loaded {traces_done:,} traces, {spans_done:,} spans ({rate:,.0f} spans/s)", flush=True)
    return traces_done, spans_done, time.perf_counter() - t0


# --- timings -----------------------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def p95(self) -> float:
        ordered = sorted(self.runs)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def timed(label: str, fn: Callable[[], Any], repeats: int) -> Timing:
    fn()  # warm: caches, compiled statements
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    result = Timing(label, runs)
    print(f"  {label}: median {result.median:,.1f} ms, p95 {result.p95:,.1f} ms ({repeats} runs)", flush=True)
    return result


def page_pair(plat: Platform, seconds: int, shift: timedelta) -> Callable[[], Any]:
    """The metrics page's aggregates (per model and in total, one read) for a preset range (ending `shift`
    before now)."""
    from podium.tracing.metrics_page import _pick_bucket

    def run() -> Any:
        now = datetime.now(UTC) - shift
        filters = service.TraceFilters(start=now - timedelta(seconds=seconds), end=now)
        bucket = _pick_bucket("auto", filters.start, now)  # type: ignore[arg-type]
        return service.aggregate_with_total(plat, Actor.system(), filters, bucket=bucket, by="model")

    return run


def old_aggregate(db: Database, start: datetime, end: datetime, size: int, by: str) -> int:
    """The computation before the rollup (commit cf1c5bd's `aggregate`): every matching trace's figures read
    into Python, grouped there, percentiles from sorted lists."""
    from podium.tracing.filters import started_before, started_from

    group: Any = {"none": literal(None), "model": Trace.model}[by]
    totals: dict[tuple[int, Any], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0, []])
    with db.read_session() as s:
        q = select(
            Trace.start_time, group.label("grp"), Trace.status, Trace.prompt_tokens, Trace.completion_tokens,
            Trace.cost_micros, Trace.latency_ms,
        ).where(started_from(db.backend, start), started_before(db.backend, end))  # fmt: skip
        for at, grp, status, p_tok, c_tok, cost, lat in s.execute(q.execution_options(yield_per=10_000)):
            t = totals[(int(at.timestamp()) // size * size, grp)]
            t[0] += 1
            t[1] += status == "error"
            t[2] += p_tok
            t[3] += c_tok
            t[4] += cost
            if lat is not None:
                t[5].append(lat)
    for t in totals.values():
        values = sorted(t[5])
        for p in latency.PERCENTILES:
            latency.exact_percentile(values, p)
    return len(totals)


def sql_scan(db: Database, start: datetime, end: datetime, size: int, by: str) -> int:
    """The exact path over the traces (the one aggregates take for filters the rollup does not keep),
    without its bound: GROUP BY and percentiles in SQL."""
    group = {"none": None, "model": Trace.model}[by]
    f = service.TraceFilters(start=start, end=end)
    with db.read_session() as s:
        conds = conditions(s, Actor.system(), f)
        cells: dict[Any, Any] = {}
        aggregates._scan(s, conds, size, group, cells, False)
        aggregates._exact(s, conds, size, group)
    return len(cells)


def percentile_cont(db: Database, start: datetime, end: datetime) -> int:
    """PostgreSQL only: the totals and percentiles per day and model in one query over the traces."""
    sql = text(
        "SELECT date_trunc('day', start_time) AS d, model, count(*), sum(prompt_tokens), sum(completion_tokens),"
        " sum(cost_micros), sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END),"
        " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)"
        " FROM traces WHERE start_time >= :a AND start_time < :b GROUP BY 1, 2"
    )
    with db.read_session() as s:
        return len(s.execute(sql, {"a": start, "b": end}).all())


def bench_page(settings: Any, key: str, repeats: int, end: datetime) -> Timing:
    """The whole page for the 30 days before `end`, in process (session sign-in, the aggregates, charts,
    template); as `range=30d` when `end` is now."""
    from starlette.testclient import TestClient

    from podium.server.app import create_app

    with TestClient(create_app(settings)) as client:
        client.get("/login")  # the sign-in form's CSRF cookie
        form = {"api_key": key, "next": "/", "csrf": client.cookies.get("podium_login_csrf")}
        r = client.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 303, r.text

        window = {"range": "custom", "from": (end - timedelta(days=DAYS)).isoformat(), "to": end.isoformat()}

        def get() -> None:
            r = client.get("/trace-metrics", params=window)
            assert r.status_code == 200, r.text[:300]

        return timed("page GET /trace-metrics, 30 days", get, repeats)


def run(name: str, url: str, spans: int, repeats: int, home: Path) -> dict[str, Any]:
    print(f"{name}: {url.split('@')[-1]}", flush=True)
    settings = load_settings(home=str(home), database_url=url, serve_models="")
    key = prepare(settings, register_builtins=False) or (home / "admin-key").read_text()
    (home / "admin-key").write_text(key)
    db = get_database(url)
    with db.read_session() as s:
        last = s.scalar(select(func.max(Trace.start_time)))
    shift = timedelta(0)  # fresh data: ranges end now, as the page's
    if last is None:
        end = datetime.now(UTC)
        traces, stored, seconds = load(db, spans, end)
        print(f"  loaded {traces:,} traces and {stored:,} spans in {seconds:,.0f} s", flush=True)
    else:  # --reuse: loaded by an earlier run (its 30 days end at its last trace)
        end = last
        with db.read_session() as s:
            traces = s.scalar(select(func.count()).select_from(Trace)) or 0
            stored = s.scalar(text("SELECT count(*) FROM spans")) or 0
        seconds = math.nan
        shift = datetime.now(UTC) - end - timedelta(seconds=1)  # a reused database's ranges end at its data
        print(f"  reusing {traces:,} traces and {stored:,} spans ending {end}", flush=True)
    if db.backend == "sqlite":
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE traces")
            conn.exec_driver_sql("VACUUM ANALYZE trace_rollup")
    with db.read_session() as s:
        rollup_rows = s.scalar(select(func.count()).select_from(TraceRollup)) or 0
        latency_rows = s.scalar(select(func.count()).select_from(TraceLatency)) or 0
    plat = Platform.from_settings(settings)
    out: dict[str, Any] = {"traces": traces, "spans": stored, "load_s": seconds}
    out |= {"rollup_rows": rollup_rows, "latency_rows": latency_rows}
    out["presets"] = [timed(f"page's aggregates, {p}", page_pair(plat, s, shift), repeats) for p, s in PRESETS.items()]
    out["page"] = bench_page(settings, key, repeats, datetime.now(UTC) - shift)
    start, stop = end - timedelta(days=DAYS), end
    floor = max(2, repeats // 10)
    out["old"] = timed("before: Python over the traces, 30d", lambda: [old_aggregate(db, start, stop, 86400, by) for by in ("none", "model")], floor)  # fmt: skip
    out["scan"] = timed("SQL over the traces (exact path, unbounded), 30d", lambda: [sql_scan(db, start, stop, 86400, by) for by in ("none", "model")], floor)  # fmt: skip
    if db.backend == "postgresql":
        out["pct"] = timed("percentile_cont over the traces, 30d by day and model", lambda: percentile_cont(db, start, stop), floor)  # fmt: skip
    return out


def report(results: dict[str, dict[str, Any]], spans: int, repeats: int) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### bench/aggregates.py — {now} (issue 13: trace aggregates in the database)",
        "",
        f"Machine: {lscpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" SQLite {__import__('sqlite3').sqlite_version}. {spans:,} spans requested per database; median and p95"
        f" of {repeats} runs (the floor rows: fewer runs, they take seconds).",
        "",
        "| database | traces | spans | load (writer's insert_rows, with the rollup) | rollup rows (totals, latency) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        loaded = (
            "reused" if math.isnan(r["load_s"]) else f"{r['load_s']:,.0f} s ({r['spans'] / r['load_s']:,.0f} spans/s)"
        )
        lines.append(
            f"| {name} | {r['traces']:,} | {r['spans']:,} | {loaded} | {r['rollup_rows']:,}, {r['latency_rows']:,} |"
        )
    lines += ["", "| database | query | median | p95 |", "| --- | --- | --- | --- |"]
    for name, r in results.items():
        rows: list[Timing] = [*r["presets"], r["page"]]
        rows += [r["old"], r["scan"], *([r["pct"]] if "pct" in r else [])]
        for t in rows:
            lines.append(f"| {name} | {t.label} | {t.median:,.1f} ms | {t.p95:,.1f} ms |")
    for name, r in results.items():
        page, old = r["presets"][-1], r["old"]
        lines.append("")
        lines.append(
            f"{name}: the 30-day page's aggregates {page.median:,.1f} ms median against {old.median:,.0f} ms before"
            f" ({old.median / page.median:,.0f}x)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--postgres", default=None, help="A PostgreSQL server URL; a database is created on it.")
    parser.add_argument("--folder", default=None, help="Where the SQLite database goes (default: a temp folder).")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument(
        "--reuse", action="store_true", help="Query the SQLite database an earlier run left in --folder."
    )
    parser.add_argument(
        "--pg-database", default=None, help="Use (and keep) this PostgreSQL database, loading it if empty."
    )
    parser.add_argument("--out", default=None, help="Write the Markdown section here too.")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="podium-agg-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    if not args.skip_sqlite:
        db_file = folder / "podium.db"
        if db_file.exists() and not args.reuse:
            raise SystemExit(f"{db_file} exists: give an empty --folder, or --reuse it")
        results["SQLite"] = run("SQLite", f"sqlite:///{db_file}", args.spans, args.repeats, folder / "home-sqlite")
    if args.postgres:
        import sqlalchemy as sa

        name = args.pg_database or f"podium_bench_{int(time.time())}"
        admin = sa.create_engine(
            sa.make_url(args.postgres).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        try:
            results["PostgreSQL"] = run("PostgreSQL", url, args.spans, args.repeats, folder / "home-pg")
        finally:
            get_database(url).dispose()
            if not args.pg_database:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    section = report(results, args.spans, args.repeats)
    print()
    print(section)
    if args.out:
        Path(args.out).write_text(section)


if __name__ == "__main__":
    sys.exit(main())
