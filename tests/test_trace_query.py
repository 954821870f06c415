"""Trace queries over HTTP and the CLI on SQLite and PostgreSQL: every filter, keyset pagination that covers
each row once under every sort, project scoping, the span skeleton (depth, orphans) and span pages, payloads
from the artifact store, aggregates with percentiles, purge, retention, user erasure (audited), invalid
filters named in the 400, and exports to JSON lines and Parquet read back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from podium.core.db import utcnow
from podium.tracing import service
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, project_key, run_cli, serve_for_module

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WINDOW = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
N = 20


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    serving = serve_for_module(backend, tmp_path_factory.mktemp(f"tq-{backend}"))
    live = next(serving)
    send(live, [s for i in range(N) for s in known_trace(i)])
    send(live, tree_trace())
    yield live
    next(serving, None)


def span(trace: str, sid: str, parent: str | None, start: datetime, ms: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "trace_id": trace,
        "parent_id": parent,
        "name": sid,
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(milliseconds=ms)).isoformat(),
        **extra,
    }


def known_trace(i: int) -> list[dict[str, Any]]:
    """Trace q-NN, one minute apart in the first hour after T0, with figures that filters can tell apart."""
    tid = f"q-{i:02d}"
    start = T0 + timedelta(minutes=i)
    root = span(
        tid,
        f"{tid}-root",
        None,
        start,
        (i + 1) * 100,
        kind="agent",
        trace_name="flow-x" if i < 10 else "flow-y",
        model="model-a" if i % 2 == 0 else "model-b",
        user_id=f"u-{i % 3}",
        session_id=f"s-{i % 4}",
        tags=["even" if i % 2 == 0 else "odd", *(["vip"] if i == 7 else [])],
        status="error" if i % 5 == 0 else "ok",
        error="boom" if i % 5 == 0 else None,
        prompt_tokens=10 * (i + 1),
        completion_tokens=5 * (i + 1),
        cost_usd=(i + 1) / 1000,
        input="The Needle in a haystack" if i == 3 else {"question": f"question number {i}"},
        output=f"answer {i}",
    )
    child = span(tid, f"{tid}-llm", f"{tid}-root", start + timedelta(milliseconds=1), 50, kind="llm")
    return [root, child]


def ids_where(pred: Callable[[int], bool]) -> set[str]:
    return {f"q-{i:02d}" for i in range(N) if pred(i)}


BIG = "large document " * 10_000  # 150 KB: kept in the artifact store
TREE = "q-tree"
TREE_AT = T0 - timedelta(days=1)


def tree_trace() -> list[dict[str, Any]]:
    """root → c1 → g1, root → c2 (artifact-stored input); o1 → o2 whose parent never arrives."""

    def at(seconds: float) -> datetime:
        return TREE_AT + timedelta(seconds=seconds)

    return [
        span(TREE, "t-c2", "t-root", at(2), 500, kind="retriever", input=BIG, attributes={"k": 4}),
        span(TREE, "t-o1", "t-missing", at(0.5), 100, kind="tool"),
        span(TREE, "t-o2", "t-o1", at(0.6), 10, kind="tool"),
        span(TREE, "t-root", None, at(0), 5000, kind="chain", trace_name="tree", input={"q": "tree?"}, output="ok"),
        span(TREE, "t-g1", "t-c1", at(1.5), 100, kind="llm", model="m", prompt_tokens=3, completion_tokens=2),
        span(TREE, "t-c1", "t-root", at(1), 1000, kind="agent"),
    ]


def send(live: LiveServer, spans: list[dict[str, Any]], key: str | None = None) -> None:
    with live.client(key) as c:
        r = c.post("/api/traces/ingest", json={"spans": spans})
    assert r.status_code == 202, r.text
    assert live.app.state.runtime.get(TraceWriter).flush(10)


def get(live: LiveServer, path: str, as_key: str | None = None, **params: Any) -> Any:
    with live.client(as_key) as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def listed(live: LiveServer, as_key: str | None = None, **params: Any) -> list[str]:
    page = get(live, "/api/traces", as_key, limit=500, **params)
    assert page["next_cursor"] is None
    return [t["id"] for t in page["traces"]]


def cli_env(live: LiveServer, key: str | None = None) -> dict[str, str]:
    return {"PODIUM_URL": live.url, "PODIUM_API_KEY": key or live.admin_key}


# --- filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "pred"),
    [
        ({}, lambda i: True),
        ({"model": "model-a"}, lambda i: i % 2 == 0),
        ({"user": "u-1"}, lambda i: i % 3 == 1),
        ({"session": "s-2"}, lambda i: i % 4 == 2),
        ({"tag": "vip"}, lambda i: i == 7),
        ({"tag": "odd"}, lambda i: i % 2 == 1),
        ({"tag": "od"}, lambda i: False),  # a tag matches whole, not as a substring
        ({"status": "error"}, lambda i: i % 5 == 0),
        ({"status": "ok"}, lambda i: i % 5 != 0),
        ({"name": "flow-y"}, lambda i: i >= 10),
        ({"name": "flow"}, lambda i: False),
        ({"source": "sdk"}, lambda i: True),
        ({"source": "gateway"}, lambda i: False),
        ({"route": "anything"}, lambda i: False),
        ({"min_latency_ms": "1000"}, lambda i: i >= 9),
        ({"max_latency_ms": "500"}, lambda i: i <= 4),
        ({"min_latency_ms": "300", "max_latency_ms": "400"}, lambda i: i in (2, 3)),
        ({"min_cost_usd": "0.015"}, lambda i: i >= 14),
        ({"max_cost_usd": "0.002"}, lambda i: i <= 1),
        ({"q": "needle"}, lambda i: i == 3),
        ({"q": "ANSWER 1"}, lambda i: i == 1 or i >= 10),
        ({"q": "question number 1"}, lambda i: i == 1 or i >= 10),
        ({"q": "_"}, lambda i: False),  # pattern characters are literal
        ({"q": "%"}, lambda i: False),
        ({"from": (T0 + timedelta(minutes=5)).isoformat(), "to": (T0 + timedelta(minutes=10)).isoformat()}, None),
        ({"model": "model-b", "status": "error", "user": "u-2"}, lambda i: i % 2 == 1 and i % 5 == 0 and i % 3 == 2),
    ],
)
def test_each_filter(live: LiveServer, params: dict[str, str], pred: Callable[[int], bool] | None) -> None:
    if pred is None:  # the time window itself
        assert set(listed(live, **params)) == ids_where(lambda i: 5 <= i < 10)
        return
    assert set(listed(live, **{**WINDOW, **params})) == ids_where(pred)


def test_key_filter_and_previews(live: LiveServer) -> None:
    me = get(live, "/api/whoami")
    every = ids_where(lambda i: True)
    assert set(listed(live, **WINDOW, key=me["key_prefix"])) == every  # prefix or id
    assert set(listed(live, **WINDOW, key=me["key_id"])) == every
    assert listed(live, **WINDOW, key="pk-nobody") == []
    page = get(live, "/api/traces", **WINDOW, limit=1)
    t = page["traces"][0]
    assert t["id"] == "q-19" and t["input_preview"] == '{"question":"question number 19"}'
    assert t["output_preview"] == "answer 19" and "input" not in t and "output" not in t
    assert t["cost_usd"] == "0.02" and t["cost_micros"] == 20_000 and t["tags"] == ["odd"]
    assert t["latency_ms"] == pytest.approx(2000) and t["span_count"] == 2


# --- pagination ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "order", "key"),
    [
        ("start_time", "desc", lambda t: (t["start_time"], t["id"])),
        ("start_time", "asc", lambda t: (t["start_time"], t["id"])),
        ("latency_ms", "desc", lambda t: (t["latency_ms"] or -1, t["id"])),
        ("cost", "desc", lambda t: (t["cost_micros"], t["id"])),
        ("cost", "asc", lambda t: (t["cost_micros"], t["id"])),
        ("tokens", "desc", lambda t: (t["prompt_tokens"] + t["completion_tokens"], t["id"])),
    ],
)
def test_cursor_pages_cover_every_row_once(
    live: LiveServer, sort: str, order: str, key: Callable[[dict[str, Any]], Any]
) -> None:
    # five traces with the same start, latency and cost: the id breaks the ties
    at = T0 + timedelta(hours=3)
    ties = [f"tie-{n}" for n in range(5)]
    send(live, [span(t, f"{t}-r", None, at, 100, cost_usd=0.001) for t in ties])
    window = {"from": at.isoformat(), "to": (at + timedelta(minutes=1)).isoformat()}
    everything = sorted(
        get(live, "/api/traces", limit=500, **WINDOW)["traces"] + get(live, "/api/traces", **window)["traces"],
        key=key,
        reverse=order == "desc",
    )
    assert len(everything) == N + 5
    seen: list[dict[str, Any]] = []
    cursors = []
    for params in (WINDOW, window):
        cursor = None
        while True:
            page = get(live, "/api/traces", sort=sort, order=order, limit=3, cursor=cursor, **params)
            seen += page["traces"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            cursors.append(cursor)
    assert len(seen) == N + 5 and len({t["id"] for t in seen}) == N + 5
    window_ids = [t["id"] for t in seen if t["id"].startswith("q-")]
    assert window_ids == [t["id"] for t in everything if t["id"].startswith("q-")]
    tie_ids = [t["id"] for t in seen if t["id"].startswith("tie-")]
    assert tie_ids == (sorted(ties, reverse=order == "desc"))
    # a cursor is bound to its sort
    other = "cost" if sort != "cost" else "start_time"
    with live.client() as c:
        r = c.get("/api/traces", params={"sort": other, "cursor": cursors[0]})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "cursor"


# --- scoping ---------------------------------------------------------------------------------------


def test_a_project_key_sees_its_own_traces_only(live: LiveServer) -> None:
    key = project_key(live, "scoped")
    at = T0 + timedelta(hours=2)
    send(live, [span("scoped-1", "sc1", None, at, 10), span("scoped-2", "sc2", None, at, 20)], key)
    assert set(listed(live, key)) == {"scoped-1", "scoped-2"}
    assert set(listed(live, project="scoped")) == {"scoped-1", "scoped-2"}
    assert {"scoped-1", "q-00", TREE} <= set(listed(live))
    assert get(live, "/api/traces/scoped-1", key)["id"] == "scoped-1"
    with live.client(key) as c:
        assert c.get("/api/traces/q-00").status_code == 404
        assert c.get("/api/traces/q-00/spans").status_code == 404
        assert c.get("/api/traces/q-00/payload").status_code == 404
        assert c.get("/api/traces", params={"project": "default"}).status_code == 403
        agg = c.get("/api/traces/aggregate", params={"bucket": "day"}).json()
        assert sum(r["count"] for r in agg["rows"]) == 2


# --- one trace -------------------------------------------------------------------------------------


def test_span_skeleton_in_tree_order_with_orphans(live: LiveServer) -> None:
    data = get(live, f"/api/traces/{TREE}")
    assert data["name"] == "tree" and data["span_count"] == 6 and json.loads(data["input"]) == {"q": "tree?"}
    shape = [(s["id"], s["depth"], s["orphan"]) for s in data["spans"]]
    assert shape == [
        ("t-root", 0, False),
        ("t-c1", 1, False),
        ("t-g1", 2, False),
        ("t-c2", 1, False),
        ("t-o1", 0, True),
        ("t-o2", 1, False),
    ]
    g1 = data["spans"][2]
    assert g1["kind"] == "llm" and g1["model"] == "m" and g1["prompt_tokens"] == 3 and g1["duration_ms"] == 100
    for s in data["spans"]:
        assert not {"input", "output", "attributes"} & set(s)
    assert data["spans_total"] == 6 and data["next_offset"] is None
    # a large trace's skeleton comes a page at a time, in the same tree order
    page = get(live, f"/api/traces/{TREE}", offset=2, limit=3)
    assert [(s["id"], s["depth"], s["orphan"]) for s in page["spans"]] == shape[2:5]
    assert page["spans_total"] == 6 and page["spans_offset"] == 2 and page["next_offset"] == 5
    with live.client() as c:
        assert c.get("/api/traces/no-such-trace").status_code == 404
        r = c.get(f"/api/traces/{TREE}", params={"limit": "0"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "limit"


def test_span_pages_and_artifact_payloads(live: LiveServer) -> None:
    first = get(live, f"/api/traces/{TREE}/spans", offset=0, limit=2)
    assert [s["id"] for s in first["spans"]] == ["t-root", "t-c1"]
    assert first["total"] == 6 and first["next_offset"] == 2
    last = get(live, f"/api/traces/{TREE}/spans", offset=4, limit=2)
    assert [s["id"] for s in last["spans"]] == ["t-o1", "t-o2"] and last["next_offset"] is None
    assert last["spans"][0]["orphan"] is True
    by_id = get(live, f"/api/traces/{TREE}/spans", ids="t-c2,t-root")
    assert [s["id"] for s in by_id["spans"]] == ["t-root", "t-c2"]
    c2 = by_id["spans"][1]
    assert c2["attributes"] == {"k": 4} and c2["depth"] == 1
    ref = c2["input_artifact"]
    assert ref["bytes"] == len(BIG) and ref["preview"] == BIG[:1000] and c2["input"] is None  # fetched on demand
    with live.client() as c:
        r = c.get(f"/api/traces/{TREE}/payload", params={"span": "t-c2", "field": "input"})
        assert r.status_code == 200 and r.text == BIG and r.headers["x-podium-artifact"] == ref["sha256"]
        r = c.get(f"/api/traces/{TREE}/payload", params={"field": "input"})  # the trace's own, stored inline
        assert r.status_code == 200 and r.json() == {"q": "tree?"} and "x-podium-artifact" not in r.headers
        r = c.get(f"/api/traces/{TREE}/payload", params={"span": "t-c1", "field": "output"})
        assert r.status_code == 404
        r = c.get(f"/api/traces/{TREE}/payload", params={"span": "t-c2", "field": "attributes"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "field"
        r = c.get(f"/api/traces/{TREE}/spans", params={"ids": "t-root,nope"})
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
        r = c.get(f"/api/traces/{TREE}/spans", params={"limit": "501"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "limit"


# --- aggregates ------------------------------------------------------------------------------------


def test_aggregates_by_model_with_percentiles(live: LiveServer) -> None:
    data = get(live, "/api/traces/aggregate", bucket="hour", by="model", **WINDOW)
    assert data["bucket"] == "hour" and data["by"] == "model"
    rows = {r["group"]: r for r in data["rows"]}
    assert set(rows) == {"model-a", "model-b"}
    for model, parity in (("model-a", 0), ("model-b", 1)):
        r = rows[model]
        members = [i for i in range(N) if i % 2 == parity]
        assert datetime.fromisoformat(r["bucket"]) == T0
        assert r["count"] == 10 and r["errors"] == 2 and r["error_rate"] == pytest.approx(0.2)
        assert r["prompt_tokens"] == sum(10 * (i + 1) for i in members)
        assert r["completion_tokens"] == sum(5 * (i + 1) for i in members)
        assert r["cost_micros"] == sum(1000 * (i + 1) for i in members)
        assert Decimal(r["cost_usd"]) == Decimal(r["cost_micros"]) / 1_000_000
    # model-a latencies: 100, 300, …, 1900 ms; linear interpolation between ranks
    a = rows["model-a"]
    assert a["latency_p50_ms"] == pytest.approx(1000)
    assert a["latency_p95_ms"] == pytest.approx(1700 + 200 * 0.55)
    assert a["latency_p99_ms"] == pytest.approx(1700 + 200 * 0.91)


def test_aggregates_by_minute_and_user(live: LiveServer) -> None:
    minutes = get(live, "/api/traces/aggregate", bucket="minute", by="none", **WINDOW)["rows"]
    assert [datetime.fromisoformat(r["bucket"]) for r in minutes] == [T0 + timedelta(minutes=i) for i in range(N)]
    assert all(r["count"] == 1 and r["group"] is None for r in minutes)
    assert [r["latency_p99_ms"] for r in minutes] == pytest.approx([(i + 1) * 100 for i in range(N)])
    users = get(live, "/api/traces/aggregate", bucket="day", by="user", status="error", **WINDOW)["rows"]
    # errors are i = 0, 5, 10, 15: users u-0, u-2, u-1, u-0
    assert {r["group"]: r["count"] for r in users} == {"u-0": 2, "u-1": 1, "u-2": 1}
    assert all(r["error_rate"] == 1.0 for r in users)


# --- invalid input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/traces", {"from": "last tuesday"}, "from"),
        ("/api/traces", {"to": "2026-13-01"}, "to"),
        ("/api/traces", {"from": "2026-11-25T00:00:00Z", "to": "2026-11-24T00:00:00Z"}, "from"),
        ("/api/traces", {"status": "maybe"}, "status"),
        ("/api/traces", {"min_latency_ms": "fast"}, "min_latency_ms"),
        ("/api/traces", {"max_latency_ms": "-1"}, "max_latency_ms"),
        ("/api/traces", {"min_latency_ms": "5", "max_latency_ms": "1"}, "min_latency_ms"),
        ("/api/traces", {"min_cost_usd": "lots"}, "min_cost_usd"),
        ("/api/traces", {"max_cost_usd": "NaN"}, "max_cost_usd"),
        ("/api/traces", {"limit": "0"}, "limit"),
        ("/api/traces", {"limit": "501"}, "limit"),
        ("/api/traces", {"limit": "ten"}, "limit"),
        ("/api/traces", {"cursor": "not-a-cursor"}, "cursor"),
        ("/api/traces", {"sort": "name"}, "sort"),
        ("/api/traces", {"order": "sideways"}, "order"),
        ("/api/traces", {"project": "no-such-project"}, "project"),
        ("/api/traces/aggregate", {"bucket": "week"}, "bucket"),
        ("/api/traces/aggregate", {"by": "colour"}, "by"),
        ("/api/traces/aggregate", {"status": "meh"}, "status"),
        ("/api/traces/aggregate", {"bucket": "minute", "from": "2020-01-01T00:00:00Z"}, "bucket"),
    ],
)
def test_invalid_filters_are_named(live: LiveServer, path: str, params: dict[str, str], field: str) -> None:
    with live.client() as c:
        r = c.get(path, params=params)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input" and error["details"]["field"] == field
    assert field in error["message"] or field == "cursor"


# --- deletion --------------------------------------------------------------------------------------


def audit_rows(live: LiveServer, action: str) -> list[dict[str, Any]]:
    return list(get(live, "/api/audit", action=action)["items"])


def test_purge_by_project_and_everywhere(live: LiveServer) -> None:
    key = project_key(live, "purge-p")
    old, new = T0 - timedelta(days=40), T0 - timedelta(days=2)
    send(live, [span(f"pp-old-{n}", f"pp-old-{n}-{m}", None, old, 10) for n in range(3) for m in range(2)], key)
    send(live, [span("pp-new", "pp-new-r", None, new, 10)], key)
    send(live, [span("dp-old", "dp-old-r", None, old, 10)])  # the admin's project: out of this purge's scope
    with live.client(key) as c:
        r = c.post("/api/traces/purge", json={"before": (T0 - timedelta(days=10)).isoformat()})
        assert r.status_code == 403
    with live.client() as c:
        r = c.post("/api/traces/purge", json={"before": "soon"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "before"
        body = {"before": (T0 - timedelta(days=10)).isoformat(), "project": "purge-p"}
        r = c.post("/api/traces/purge", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"traces": 3, "spans": 6, "artifacts": 0}
    assert listed(live, project="purge-p") == ["pp-new"]
    assert "dp-old" in listed(live, to=(T0 - timedelta(days=30)).isoformat())
    row = audit_rows(live, "traces.purge")[0]
    assert row["details"]["traces"] == 3 and row["details"]["project"] == "purge-p"
    # everywhere, through the CLI: only what is older than anything else in this module
    ancient = T0 - timedelta(days=400)
    send(live, [span("anc", "anc-r", None, ancient, 10)], key)
    out = run_cli("traces", "purge", "--before", (ancient + timedelta(days=1)).isoformat(), "--yes", env=cli_env(live))
    assert out.returncode == 0, out.stderr
    assert "Deleted 1 traces and 1 spans" in out.stdout
    assert "anc" not in listed(live, project="purge-p")
    assert "dp-old" in listed(live, to=(T0 - timedelta(days=30)).isoformat())


def test_retention_job(live: LiveServer) -> None:
    key = project_key(live, "ret-p")
    now = utcnow()
    send(live, [span("ret-old", "ret-old-r", None, now - timedelta(days=10), 10)], key)
    send(live, [span("ret-new", "ret-new-r", None, now - timedelta(days=1), 10)], key)
    send(live, [span("ret-other", "ret-other-r", None, now - timedelta(days=10), 10)])  # default: no retention
    assert get(live, "/api/traces/retention/ret-p")["days"] is None
    with live.client(key) as c:
        assert c.put("/api/traces/retention/ret-p", json={"days": 5}).status_code == 403
        assert c.get("/api/traces/retention/ret-p").json()["days"] is None
        assert c.get("/api/traces/retention/default").status_code == 403
    with live.client() as c:
        r = c.put("/api/traces/retention/ret-p", json={"days": 0})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "days"
    out = run_cli("traces", "retention", "ret-p", "--days", "5", env=cli_env(live))
    assert out.returncode == 0 and "5 days" in out.stdout, out.stderr
    assert get(live, "/api/traces/retention/ret-p", key)["days"] == 5
    results = service.apply_retention(live.platform.db, now=now)
    project_id = get(live, "/api/traces/retention/ret-p")["project_id"]
    assert results[project_id].traces == 1
    assert listed(live, project="ret-p") == ["ret-new"]
    assert "ret-other" in listed(live, name="ret-other-r")
    assert audit_rows(live, "traces.retention.apply")[0]["details"]["traces"] == 1
    out = run_cli("traces", "retention", "ret-p", "--forever", env=cli_env(live))
    assert out.returncode == 0 and "forever" in out.stdout, out.stderr
    assert service.apply_retention(live.platform.db, now=now + timedelta(days=30)).get(project_id) is None


def test_erasing_a_user_deletes_their_traces_everywhere_and_is_audited(live: LiveServer) -> None:
    key = project_key(live, "gdpr-p")
    at = T0 + timedelta(hours=4)
    mine = [span(f"g-{n}", f"g-{n}-r", None, at, 10, user_id="gdpr-user") for n in range(2)]
    send(live, [*mine, span("g-0", "g-0-child", "g-0-r", at, 5)])
    send(live, [span("g-2", "g-2-r", None, at, 10, user_id="gdpr-user")], key)
    send(live, [span("g-keep", "g-keep-r", None, at, 10, user_id="someone-else")])
    assert set(listed(live, user="gdpr-user")) == {"g-0", "g-1", "g-2"}
    with live.client(key) as c:
        assert c.delete("/api/traces/users/gdpr-user").status_code == 403
    with live.client() as c:
        r = c.delete("/api/traces/users/gdpr-user")
    assert r.status_code == 200 and r.json() == {"traces": 3, "spans": 4, "artifacts": 0}
    assert listed(live, user="gdpr-user") == []
    assert listed(live, user="someone-else") == ["g-keep"]
    row = audit_rows(live, "traces.erase_user")[0]
    assert row["object_id"] == "gdpr-user" and row["details"] == {"traces": 3, "spans": 4}
    out = run_cli("traces", "erase-user", "someone-else", "--yes", env=cli_env(live))
    assert out.returncode == 0 and "1 traces" in out.stdout, out.stderr
    assert listed(live, user="someone-else") == []


def test_erasure_frees_payloads_only_the_erased_traces_held(live: LiveServer) -> None:
    """Large payloads live in the artifact store, shared by content: erasing a user deletes the blobs only
    their traces referred to, and keeps a blob another user's trace still refers to."""
    at = T0 + timedelta(hours=5)
    private, shared = "p" * 40_000, "s" * 40_000
    send(live, [span("gp-a", "gp-a-r", None, at, 10, user_id="blob-user", input=private, output=shared)])
    send(live, [span("gp-b", "gp-b-r", None, at, 10, user_id="blob-other", output=shared)])
    blobs = live.platform.blobs
    refs = {
        field: get(live, "/api/traces/gp-a/spans", ids="gp-a-r")["spans"][0][f"{field}_artifact"]["sha256"]
        for field in ("input", "output")
    }
    assert all(blobs.exists(d) for d in refs.values())
    with live.client() as c:  # feedback on the trace is about the user too
        score = {"trace_id": "gp-a", "name": "helpful", "value": 0, "comment": "my order 123 never came"}
        assert c.post("/api/scores", json=score).status_code == 201
        assert len(c.get("/api/scores", params={"trace_id": "gp-a"}).json()["scores"]) == 1
        r = c.delete("/api/traces/users/blob-user")
    assert r.status_code == 200 and r.json()["artifacts"] == 1, r.text
    assert not blobs.exists(refs["input"])  # only that user's trace held it
    assert get(live, "/api/scores", trace_id="gp-a")["scores"] == []
    assert blobs.exists(refs["output"])  # the other user's trace still does
    with live.client() as c:
        r = c.get("/api/traces/gp-b/payload", params={"span": "gp-b-r", "field": "output"})
    assert r.status_code == 200 and r.text == shared
    with live.client() as c:
        assert c.delete("/api/traces/users/blob-other").json()["artifacts"] == 1
    assert not blobs.exists(refs["output"])


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_ls_and_show(live: LiveServer) -> None:
    env = cli_env(live)
    out = run_cli(
        "traces", "ls", "--from", WINDOW["from"], "--to", WINDOW["to"], "--model", "model-a", "--json", env=env
    )
    assert out.returncode == 0, out.stderr
    assert {t["id"] for t in json.loads(out.stdout)["traces"]} == ids_where(lambda i: i % 2 == 0)
    out = run_cli("traces", "ls", "--from", WINDOW["from"], "--to", WINDOW["to"], "-q", "needle", env=env)
    assert out.returncode == 0 and "q-03" in out.stdout and "q-04" not in out.stdout, out.stderr
    out = run_cli("traces", "ls", "--status", "maybe", env=env)
    assert out.returncode != 0 and "status" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("traces", "show", TREE, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    tree = lines[next(i for i, line in enumerate(lines) if line.startswith("spans")) + 1 :]
    assert [line.split(" [")[0] for line in tree] == [
        "chain t-root",
        "  agent t-c1",
        "    llm t-g1",
        "  retriever t-c2",
        "tool t-o1",
        "  tool t-o2",
    ]
    assert "orphan: parent t-missing missing" in tree[4]
    out = run_cli("traces", "show", "nope", env=env)
    assert out.returncode != 0 and "not found" in out.stderr


def test_export_jsonl_and_parquet(live: LiveServer, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    env = cli_env(live)
    window = ["--from", WINDOW["from"], "--to", WINDOW["to"]]
    jsonl = tmp_path / "traces.jsonl"
    out = run_cli("traces", "export", "--format", "jsonl", "--output", str(jsonl), "--page-size", "7", *window, env=env)
    assert out.returncode == 0 and "Exported 20 traces" in out.stdout, out.stderr
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"q-{i:02d}" for i in reversed(range(N))]
    q3 = next(r for r in rows if r["id"] == "q-03")
    assert q3["input"] == "The Needle in a haystack" and q3["output"] == "answer 3" and q3["user_id"] == "u-0"

    parquet = tmp_path / "traces.parquet"
    out = run_cli(
        "traces", "export", "--format", "parquet", "-o", str(parquet), "--page-size", "7", "--status", "error",
        *window, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    table = pq.read_table(parquet)
    assert table.num_rows == 4
    got = {r["id"]: r for r in table.to_pylist()}
    assert set(got) == ids_where(lambda i: i % 5 == 0)
    r = got["q-10"]
    assert r["start_time"] == T0 + timedelta(minutes=10) and r["cost_usd"] == Decimal("0.011")
    assert r["cost_micros"] == 11_000 and r["tags"] == ["even"] and r["error"] == "boom"
    assert json.loads(r["input"]) == {"question": "question number 10"} and json.loads(r["metadata"]) == {}
    out = run_cli("traces", "export", "--format", "csv", "-o", str(tmp_path / "x"), env=env)
    assert out.returncode != 0 and "jsonl or parquet" in out.stderr
