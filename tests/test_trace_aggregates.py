"""Trace aggregates computed in the database, on SQLite and PostgreSQL.

- The latency histogram: estimated percentiles stay within the stated bound of the exact ones, and the SQL
  binning (aggregates, the migration's backfill) puts every value, edges included, where Python does.
- The rollup stays equal to what the stored traces say, whatever writes them (the writer's thread or child
  process, traces in parts that move between rows, concurrent writers, spilled batches replayed) and
  whatever deletes them (purge, retention, erasure); the migration's backfill builds the same rollup.
- Over HTTP: the rollup's answers equal a scan of the traces for any window, bucket and grouping; small
  ranges get exact percentiles, large ones estimates within the bound; filters the rollup does not keep
  read the traces, bounded, with the filter named when the range is too large.
"""

from __future__ import annotations

import importlib.util
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, literal, select, text, union_all

from podium.core.db import Database
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.tracing import aggregates, latency, rollup, service
from podium.tracing.ingest import SpanIn, to_records
from podium.tracing.store import TraceLatency, TraceRetention, TraceRollup
from podium.tracing.writer import Record, TraceWriter
from podium.web.charts import nice_number, nice_step

from .conftest import LiveServer, make_settings, prepared_platform, serve_for_module, sign_in_http

T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
MIGRATION = Path(__file__).parent.parent / "src/podium/core/migrations/versions/0006_trace_rollup.py"


# --- the latency histogram -------------------------------------------------------------------------


def samples(rng: random.Random, kind: str, n: int) -> list[float]:
    if kind == "lognormal":
        return [rng.lognormvariate(6, 1.5) for _ in range(n)]
    if kind == "uniform":
        return [rng.uniform(1, 30_000) for _ in range(n)]
    if kind == "bimodal":  # cache hits and model calls
        return [rng.uniform(0.2, 2) if rng.random() < 0.3 else rng.gauss(2500, 400) for _ in range(n)]
    if kind == "few":
        return [rng.choice([120.0, 120.5, 3000.0, 45_000.0]) for _ in range(n)]
    return [round(rng.expovariate(1 / 800), 3) + 0.05 for _ in range(n)]


@pytest.mark.parametrize("kind", ["lognormal", "uniform", "bimodal", "few", "exponential"])
@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 5000])
def test_estimated_percentiles_are_within_the_stated_bound(kind: str, n: int) -> None:
    rng = random.Random(f"{kind}-{n}")
    values = sorted(max(latency.LOW, v) for v in samples(rng, kind, n))
    counts = latency.histogram(values)
    for p in (0, 1, 25, 50, 90, 95, 99, 99.9, 100):
        exact = latency.exact_percentile(values, p)
        estimate = latency.estimate(counts, p)
        assert exact is not None and estimate is not None
        assert abs(estimate - exact) <= latency.ERROR * exact * (1 + 1e-12), (p, exact, estimate)
    assert latency.estimate([0] * latency.BINS, 50) is None


def test_the_bound_is_tight_and_the_ends_are_clamped() -> None:
    lo, hi = latency.EDGES[60], latency.EDGES[61]
    for v in (lo, hi * (1 - 1e-12)):  # the worst case is a bin's edge: exactly the bound
        err = abs(latency.estimate(latency.histogram([v]), 50) - v) / v  # type: ignore[operator]
        assert err == pytest.approx(latency.ERROR, rel=1e-6)
    assert latency.ERROR < 0.058
    assert latency.bin_of(0.0) == 0 and latency.bin_of(latency.LOW) == 1
    assert latency.bin_of(latency.HIGH * 10) == latency.BINS - 1
    assert latency.estimate(latency.histogram([latency.HIGH * 10]), 50) == latency.HIGH
    assert latency.estimate(latency.histogram([0.001]), 50) == pytest.approx(latency.LOW / 2)


def test_the_migration_bins_latencies_as_the_code_does() -> None:
    spec = importlib.util.spec_from_file_location("m0006", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.EDGES == latency.EDGES and module.BINS == latency.BINS


def test_nice_axis_numbers() -> None:
    assert [nice_number(v) for v in (0, 0.3, 1, 1.01, 2.2, 2.6, 7, 999, 1000)] == [
        1.0, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 1000.0, 1000.0
    ]  # fmt: skip
    assert nice_step(10) == 2.5 and nice_step(0.004) == 0.001


# --- the rollup stays in step with the traces --------------------------------------------------------


Rollup = tuple[dict[tuple[Any, ...], tuple[int, ...]], dict[tuple[Any, ...], int]]


def stored_rollup(db: Database) -> Rollup:
    with db.read_session() as s:
        totals = {tuple(r[:9]): tuple(int(v) for v in r[9:]) for r in s.execute(select(TraceRollup.__table__))}
        latencies = {tuple(r[:5]): int(r[5]) for r in s.execute(select(TraceLatency.__table__))}
    return totals, latencies


def expected_rollup(db: Database) -> Rollup:
    """The rollup as the stored traces say it should be, computed afresh."""
    changes = rollup.Changes()
    with db.read_session() as s:
        for row in s.execute(select(*rollup.CONTRIBUTING)):
            rollup.contribute(changes, dict(row._mapping))
    totals = {key: tuple(values) for key, values in changes.totals.items() if any(values)}
    return totals, {key: n for key, n in changes.latency.items() if n}


def assert_in_step(db: Database) -> None:
    stored, expected = stored_rollup(db), expected_rollup(db)
    assert stored == expected
    assert all(values[0] > 0 for values in stored[0].values()) and all(n > 0 for n in stored[1].values())


def gateway_record(i: int, at: datetime, **extra: Any) -> Record:
    trace = {
        "id": new_id("trc"),
        "project_id": "prj_a" if i % 3 else None,
        "name": "chat",
        "source": "gateway",
        "status": "error" if i % 7 == 0 else "ok",
        "start_time": at,
        "end_time": at + timedelta(milliseconds=50 + i),
        "latency_ms": None if i % 11 == 0 else 50.0 + i * 13.7,
        "model": f"model-{i % 3}",
        "route": "route-x" if i % 2 else None,
        "key_id": f"key_{i % 4}",
        "user_id": f"user-{i % 5}",
        "prompt_tokens": i,
        "completion_tokens": 2 * i,
        "cost_micros": 10 * i,
        **extra,
    }
    return Record(trace=trace, spans=[{"id": new_id("spn"), "trace_id": trace["id"], "start_time": at}])


def sdk_parts(platform: Platform, trace_id: str, at: datetime, user: str = "sdk-user") -> list[list[Record]]:
    """Three requests' worth of one SDK trace, each moving it: a child first (model m1, its start), then
    an error child that started earlier (another minute), then the root (earlier still, with the latency,
    and model m2)."""

    def part(**span: Any) -> list[Record]:
        parsed = [SpanIn.model_validate({"trace_id": trace_id, "user_id": user, **span})]
        return to_records(parsed, project_id="prj_a", key_id="key_1", blobs=platform.blobs)

    return [
        part(id=f"{trace_id}-c1", parent_id=f"{trace_id}-r", start_time=at, model="m1", prompt_tokens=5),
        part(
            id=f"{trace_id}-c2",
            parent_id=f"{trace_id}-r",
            start_time=at - timedelta(minutes=2),
            status="error",
            completion_tokens=7,
            cost_usd=0.002,
        ),
        part(
            id=f"{trace_id}-r",
            start_time=at - timedelta(hours=1, minutes=3),
            end_time=at + timedelta(seconds=2),
            model="m2",
        ),
    ]


@pytest.fixture
def platform(backend_url: str, tmp_path: Path) -> Platform:
    platform, _ = prepared_platform(make_settings(tmp_path / "home", backend_url))
    return platform


@pytest.fixture(params=["thread", "process"])
def process(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "process")


def test_writes_in_parts_and_deletions_keep_the_rollup_in_step(
    platform: Platform, tmp_path: Path, process: bool
) -> None:
    db = platform.db
    writer = TraceWriter(db, tmp_path / "spill", batch_size=25, interval=0.01, process=process)
    writer.start()
    for i in range(120):  # gateway traces over three days, some at a minute's very start
        at = T0 + timedelta(minutes=37 * i, seconds=0 if i % 5 == 0 else i % 60, microseconds=0 if i % 4 else 999_999)
        writer.put(gateway_record(i, at, user_id="leaver" if i % 10 == 0 else f"user-{i}"))
    for n in range(6):  # SDK traces in parts, each part in its own batch or all in one
        parts = sdk_parts(platform, f"sdk-{n}", T0 + timedelta(hours=5 * n, minutes=30), user=f"u{n % 2}")
        for records in parts:
            for r in records:
                writer.put(r)
            if n % 2:
                assert writer.flush(30)
    assert writer.flush(30)
    assert_in_step(db)
    with db.read_session() as s:
        moved = s.execute(select(TraceRollup.model, TraceRollup.status).where(TraceRollup.width == 60))
        assert ("m2", "error") in set(moved)  # the SDK traces ended up in the root's minute, as errors

    service.purge(platform, Actor.system(), T0 + timedelta(days=1, hours=3, seconds=17))
    assert_in_step(db)
    service.erase_user(platform, Actor.system(), "leaver")
    assert_in_step(db)
    with db.session() as s:  # prj_a keeps a day
        s.add(TraceRetention(project_id="prj_a", days=1, updated_by="test", updated_at=T0))
    service.apply_retention(db, now=T0 + timedelta(days=3))
    assert_in_step(db)
    writer.close()
    assert writer.dropped == 0 and writer.spilled == 0
    with db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(TraceRollup)) > 0  # the default project's traces are left


def test_concurrent_writers_merging_parts_of_the_same_new_traces(platform: Platform, tmp_path: Path) -> None:
    """Two writers (as two server processes would be) each get a part of the same new traces at once: the
    trace is counted once, in the rows its merged parts put it in."""
    db = platform.db
    writers = [TraceWriter(db, tmp_path / f"spill-{w}", batch_size=10, interval=0.005) for w in range(2)]
    for w in writers:
        w.start()
    traces = [sdk_parts(platform, f"race-{n}", T0 + timedelta(minutes=n)) for n in range(40)]
    barrier = threading.Barrier(2)

    def feed(w: int) -> None:
        barrier.wait()
        for parts in traces:
            for records in parts[w::2]:  # writer 0: parts 1 and 3; writer 1: part 2
                for r in records:
                    writers[w].put(r)

    threads = [threading.Thread(target=feed, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()
        assert w.dropped == 0 and w.spilled == 0
    assert_in_step(db)
    with db.read_session() as s:
        day_rows = (TraceRollup.view == 1, TraceRollup.width == 86400)
        assert s.scalar(select(func.sum(TraceRollup.traces)).where(*day_rows)) == 40


def test_a_spilled_batch_reaches_the_rollup_when_it_is_replayed(platform: Platform, tmp_path: Path) -> None:
    db = platform.db
    with db.session() as s:
        s.execute(text("ALTER TABLE spans RENAME TO spans_away"))
    writer = TraceWriter(db, tmp_path / "spill", retries=0)
    writer.start()
    for i in range(10):
        writer.put(gateway_record(i, T0 + timedelta(minutes=i)))
    writer.close()
    assert writer.spilled == 20
    assert stored_rollup(db) == ({}, {})  # rolled back with the traces
    with db.session() as s:
        s.execute(text("ALTER TABLE spans_away RENAME TO spans"))
    assert TraceWriter(db, tmp_path / "spill").replay_spill() == 10
    assert_in_step(db)
    assert sum(v[0] for k, v in stored_rollup(db)[0].items() if k[:2] == (1, 60)) == 10


def test_the_migration_backfills_what_the_writer_keeps(platform: Platform, tmp_path: Path) -> None:
    db = platform.db
    writer = TraceWriter(db, tmp_path / "spill", batch_size=50)
    writer.start()
    for i in range(200):
        at = T0 + timedelta(minutes=11 * i, seconds=i % 60, microseconds=i * 997)
        latency_ms = latency.EDGES[i % len(latency.EDGES)] if i % 3 == 0 else 0.01 + i * 31.3
        writer.put(gateway_record(i, at, latency_ms=latency_ms))
    writer.close()
    kept = stored_rollup(db)
    assert kept == expected_rollup(db)
    spec = importlib.util.spec_from_file_location("m0006", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with db.engine.begin() as conn:
        conn.execute(delete(TraceRollup))
        conn.execute(delete(TraceLatency))
        module.backfill(conn)
    assert stored_rollup(db) == kept


def test_sql_bins_latencies_as_python_does(platform: Platform) -> None:
    values = [0.0, 0.001, *latency.EDGES, *(e * (1 - 1e-15) for e in latency.EDGES), 1e9, 0.3, 123.456]
    rows = union_all(*(select(literal(v).label("v")) for v in values)).subquery()
    q = select(rows.c.v, aggregates.bin_expression(rows.c.v))
    with platform.db.read_session() as s:
        got = {float(v): int(b) for v, b in s.execute(q)}
    assert got == {v: latency.bin_of(v) for v in values}


# --- over HTTP ---------------------------------------------------------------------------------------

N_TRACES = 600
DAY = T0.replace(hour=0)


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    serving = serve_for_module(backend, tmp_path_factory.mktemp(f"agg-{backend}"))
    live = next(serving)
    writer = live.app.state.runtime.get(TraceWriter)
    rng = random.Random(7)
    for i in range(N_TRACES):  # three days, every 7 minutes and some seconds, latencies spread wide
        at = DAY + timedelta(minutes=7 * i, seconds=rng.randrange(60), microseconds=rng.randrange(1_000_000))
        writer.put(
            gateway_record(i, at, project_id=None, latency_ms=None if i % 11 == 0 else rng.lognormvariate(6, 1.2))
        )
    for n in range(4):
        for records in sdk_parts(live.platform, f"http-sdk-{n}", DAY + timedelta(hours=9 * n + 2)):
            for r in records:
                writer.put(r)
    assert writer.flush(30)
    yield live
    next(serving, None)


def get(live: LiveServer, **params: Any) -> Any:
    with live.client() as c:
        r = c.get("/api/traces/aggregate", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def totals(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], tuple[int, ...]]:
    keys = ("count", "errors", "prompt_tokens", "completion_tokens", "cost_micros")
    return {(r["bucket"], r["group"]): tuple(r[k] for k in keys) for r in rows}


WINDOWS = [
    {},
    {"from": DAY.isoformat()},
    {"to": (DAY + timedelta(days=1, hours=5)).isoformat()},
    {
        "from": (DAY + timedelta(hours=3, minutes=7, seconds=13)).isoformat(),
        "to": (DAY + timedelta(days=2, hours=1, minutes=2, seconds=59, microseconds=1)).isoformat(),
    },
    {
        "from": (DAY + timedelta(hours=26, seconds=1)).isoformat(),
        "to": (DAY + timedelta(hours=26, seconds=50)).isoformat(),
    },
    {"from": (DAY + timedelta(hours=5)).isoformat(), "to": (DAY + timedelta(hours=6, minutes=30)).isoformat()},
]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(("bucket", "by"), [("day", "none"), ("hour", "model"), ("minute", "key"), ("day", "route")])
def test_the_rollup_answers_what_a_scan_of_the_traces_does(
    live: LiveServer, window: dict[str, str], bucket: str, by: str
) -> None:
    if bucket == "minute":  # at most 10,000 buckets: ten hours
        end = datetime.fromisoformat(window["to"]) if "to" in window else DAY + timedelta(hours=40)
        start = datetime.fromisoformat(window["from"]) if "from" in window else end - timedelta(hours=10)
        window = {"from": start.isoformat(), "to": min(end, start + timedelta(hours=10)).isoformat()}
    fast = get(live, bucket=bucket, by=by, **window)
    scan = get(live, bucket=bucket, by=by, min_cost_usd="0", **window)  # a filter the rollup does not keep
    assert (fast["source"], scan["source"]) == ("rollup", "traces")
    assert fast["percentiles"] == scan["percentiles"] == "exact"
    assert totals(fast["rows"]) == totals(scan["rows"])
    assert [r["latency_p95_ms"] for r in fast["rows"]] == pytest.approx([r["latency_p95_ms"] for r in scan["rows"]])
    if not window:
        assert sum(r["count"] for r in fast["rows"]) == N_TRACES + 4


def test_large_ranges_estimate_percentiles_within_the_bound(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    exact = get(live, bucket="day", by="model")
    monkeypatch.setattr(aggregates, "EXACT_LIMIT", 100)  # the three days hold 604 traces
    estimated = get(live, bucket="day", by="model")
    assert (estimated["source"], estimated["percentiles"]) == ("rollup", "estimated")
    assert totals(estimated["rows"]) == totals(exact["rows"])
    for e, x in zip(estimated["rows"], exact["rows"], strict=True):
        for p in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            assert abs(e[p] - x[p]) <= latency.ERROR * x[p] * (1 + 1e-9), (e["bucket"], e["group"], p)
    narrow = {"from": (DAY + timedelta(hours=2)).isoformat(), "to": (DAY + timedelta(hours=3)).isoformat()}
    assert get(live, bucket="minute", **narrow)["percentiles"] == "exact"  # 9 traces: read exactly


@pytest.mark.parametrize("exact_limit", [10_000, 100])
def test_the_pages_single_read_gives_what_two_aggregates_do(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, exact_limit: int
) -> None:
    monkeypatch.setattr(aggregates, "EXACT_LIMIT", exact_limit)
    window = service.TraceFilters(start=DAY + timedelta(hours=1, seconds=30), end=DAY + timedelta(days=2, hours=5))
    grouped, total = service.aggregate_with_total(live.platform, Actor.system(), window, bucket="hour", by="model")
    assert grouped == service.aggregate(live.platform, Actor.system(), window, bucket="hour", by="model")
    alone = service.aggregate(live.platform, Actor.system(), window, bucket="hour", by="none")
    assert total.percentiles == alone.percentiles == ("exact" if exact_limit > 1000 else "estimated")
    assert totals([r.model_dump(mode="json") for r in total.rows]) == totals(
        [r.model_dump(mode="json") for r in alone.rows]
    )
    for a, b in zip(total.rows, alone.rows, strict=True):
        assert (a.latency_p50_ms, a.latency_p99_ms) == pytest.approx((b.latency_p50_ms, b.latency_p99_ms))


def test_percentiles_the_histograms_cannot_give_are_read_from_the_traces_or_left_out(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The histograms are per model: grouped by route (or filtered by status), percentiles come from the
    traces while few enough match, and are left out (totals still given) when too many do."""
    exact = get(live, bucket="day", by="route")
    monkeypatch.setattr(aggregates, "EXACT_LIMIT", 100)
    read = get(live, bucket="day", by="route")
    assert (read["source"], read["percentiles"]) == ("rollup", "exact")
    assert read["rows"] == exact["rows"]
    monkeypatch.setattr(aggregates, "MAX_SCAN", 150)  # 604 traces
    left_out = get(live, bucket="day", by="route")
    assert (left_out["source"], left_out["percentiles"]) == ("rollup", "unavailable")
    assert totals(left_out["rows"]) == totals(exact["rows"])
    assert all(r["latency_p50_ms"] is None for r in left_out["rows"])
    errors = get(live, bucket="day", status="error", model="model-0")  # 29 traces: read
    assert errors["percentiles"] == "exact" and errors["rows"]


def test_the_metrics_page_says_when_percentiles_are_estimated(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = {"range": "custom", "from": DAY.isoformat(), "to": (DAY + timedelta(days=3)).isoformat()}
    with httpx.Client(base_url=live.url, timeout=30) as c:
        r = sign_in_http(c, live.admin_key)
        assert r.status_code == 303, r.text
        assert "percentiles-note" not in c.get("/trace-metrics", params=window).text
        monkeypatch.setattr(aggregates, "EXACT_LIMIT", 0)
        page = c.get("/trace-metrics", params=window).text
        assert 'data-percentiles="estimated"' in page and f"within {latency.ERROR:.1%} of the exact" in page
        monkeypatch.setattr(aggregates, "MAX_SCAN", 10)
        page = c.get("/trace-metrics", params={**window, "route": "route-x"}).text
    assert 'data-percentiles="unavailable"' in page and "Latency percentiles are not shown" in page


def test_scans_are_bounded_and_name_the_filter(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregates, "MAX_SCAN", 150)  # the three days hold 604 traces, a user 120
    with live.client() as c:
        for params, field in (
            ({"q": "hello"}, "q"),
            ({"by": "user"}, "by"),
            ({"min_latency_ms": "5"}, "min_latency_ms"),
            ({"by": "key", "model": "model-1"}, "by"),  # the rollup keeps keys apart from models and routes
        ):
            r = c.get("/api/traces/aggregate", params={"bucket": "day", **params})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["details"]["field"] == field and "narrow the time range" in error["message"]
        # a day of one model holds fewer traces than the bound: read
        one_day = {"from": DAY.isoformat(), "to": (DAY + timedelta(hours=9)).isoformat(), "model": "model-1"}
        r = c.get("/api/traces/aggregate", params={"bucket": "hour", "by": "user", **one_day})
        assert r.status_code == 200 and r.json()["source"] == "traces"
        # a user's traces are counted through their index, whatever the range
        r = c.get("/api/traces/aggregate", params={"bucket": "day", "user": "user-1"})
        assert r.status_code == 200, r.text
        assert sum(row["count"] for row in r.json()["rows"]) == N_TRACES // 5


def test_a_score_source_must_be_known(live: LiveServer) -> None:
    with live.client() as c:
        r = c.get("/api/scores", params={"source": "robot"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "source"
        assert "user, evaluator, api" in r.json()["error"]["message"]
        assert c.get("/api/scores", params={"source": "evaluator"}).status_code == 200


@pytest.mark.parametrize("param", ["source", "q", "model", "user"])
def test_a_filter_with_nul_is_refused_naming_it(live: LiveServer, param: str) -> None:
    """PostgreSQL cannot compare text holding NUL: the filter is refused, not answered with a 500."""
    with live.client() as c:
        for path in ("/api/traces/aggregate", "/api/traces"):
            r = c.get(path, params={param: "gate\x00way"})
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["details"]["field"] == param and "NUL" in r.json()["error"]["message"]
