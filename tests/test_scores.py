"""Scores over HTTP on SQLite and PostgreSQL: numbers and booleans, spans, batches stored all or none, bad
input named by field, unknown traces (404 after a short wait; a trace still in the writer's queue is waited
for), project scoping and roles, listing, and the `podium scores` commands."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from podium.core.db import utcnow
from podium.tracing.scores import service as score_service
from podium.tracing.scores.cli import scores_app
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, project_key, serve_for_module


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_for_module(backend, tmp_path_factory.mktemp(f"scores-{backend}"))


@pytest.fixture(autouse=True)
def _short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown traces are waited for 0.5 s here instead of 2 s (the server runs in this process)."""
    monkeypatch.setattr(score_service, "TRACE_WAIT_SECONDS", 0.5)


def new_trace(live: LiveServer, key: str | None = None, flush: bool = True) -> str:
    """Ingest a two-span trace; returns its id (its spans are `<id>-root` and `<id>-llm`)."""
    tid = "sc-" + uuid.uuid4().hex[:12]
    now = utcnow()
    spans = [
        {"id": f"{tid}-root", "trace_id": tid, "name": "root", "start_time": now.isoformat()},
        {
            "id": f"{tid}-llm",
            "trace_id": tid,
            "parent_id": f"{tid}-root",
            "kind": "llm",
            "start_time": (now + timedelta(milliseconds=1)).isoformat(),
        },
    ]
    with live.client(key) as c:
        r = c.post("/api/traces/ingest", json={"spans": spans})
    assert r.status_code == 202, r.text
    if flush:
        assert live.app.state.runtime.get(TraceWriter).flush(10)
    return tid


def post(live: LiveServer, body: Any, key: str | None = None) -> Any:
    with live.client(key) as c:
        return c.post("/api/scores", json=body)


def scores_of(live: LiveServer, key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    with live.client(key) as c:
        r = c.get("/api/scores", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["scores"])


def test_numbers_and_booleans(live: LiveServer) -> None:
    tid = new_trace(live)
    cases = [(True, 1.0), (False, 0.0), (0.75, 0.75), (3, 3.0), (-2.5, -2.5)]
    for sent, stored in cases:
        r = post(live, {"trace_id": tid, "name": "thumbs", "value": sent, "source": "user", "comment": "hi"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["value"] == stored and body["trace_id"] == tid and body["source"] == "user"
        assert body["id"].startswith("scr_") and body["comment"] == "hi" and body["span_id"] is None
    listed = scores_of(live, trace_id=tid)
    assert sorted(s["value"] for s in listed) == sorted(v for _, v in cases)
    assert all(s["project_id"] == listed[0]["project_id"] and s["project_id"] for s in listed)
    assert scores_of(live, trace_id=tid, name="other") == []
    assert len(scores_of(live, trace_id=tid, limit=2)) == 2
    assert post(live, {"trace_id": tid, "name": "x", "value": 1}).json()["source"] == "api"  # the default


def test_score_on_a_span(live: LiveServer) -> None:
    tid, other = new_trace(live), new_trace(live)
    r = post(live, {"trace_id": tid, "span_id": f"{tid}-llm", "name": "relevance", "value": 0.5})
    assert r.status_code == 201 and r.json()["span_id"] == f"{tid}-llm"
    r = post(live, {"trace_id": tid, "span_id": f"{other}-llm", "name": "relevance", "value": 0.5})
    assert r.status_code == 404 and r.json()["error"]["details"]["field"] == "span_id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "value": 1}, "trace_id"),
        ({"trace_id": "t", "value": 1}, "name"),
        ({"trace_id": "t", "name": "x"}, "value"),
        ({"trace_id": "t", "name": "x", "value": "high"}, "value"),
        ({"trace_id": "t", "name": "x", "value": "0.5"}, "value"),
        ({"trace_id": "t", "name": "x", "value": None}, "value"),
        ({"trace_id": "t", "name": "x", "value": [1]}, "value"),
        ({"trace_id": "t", "name": "x", "value": 1, "source": "robot"}, "source"),
        ({"trace_id": "t", "name": "x", "value": 1, "weight": 2}, "weight"),
        ({"trace_id": "bad id!", "name": "x", "value": 1}, "trace_id"),
        ({"trace_id": "t", "name": "", "value": 1}, "name"),
        ({"trace_id": "t", "name": "x" * 121, "value": 1}, "name"),
        ({"trace_id": "t", "name": "x", "value": 1, "comment": "c" * 2001}, "comment"),
        ([1, 2], "body"),
        ({"scores": []}, "scores"),
        ({"scores": "x"}, "scores"),
        ({"scores": [{"trace_id": "t", "name": "x", "value": 1}, {"trace_id": "t", "name": "x"}]}, "scores[1].value"),
        ({"scores": [{"trace_id": "t", "name": "x", "value": 1}, 7]}, "scores[1]"),
    ],
)
def test_bad_input_names_the_field(live: LiveServer, body: Any, field: str) -> None:
    r = post(live, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_input" and err["details"]["field"] == field
    assert field.split(".")[-1].split("[")[0] in err["message"]


def test_non_finite_and_oversized(live: LiveServer) -> None:
    tid = new_trace(live)
    with live.client() as c:
        raw = f'{{"trace_id": "{tid}", "name": "x", "value": 1e999}}'.encode()  # parsed as infinity
        r = c.post("/api/scores", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "value"
        r = c.post("/api/scores", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400
    big = {"scores": [{"trace_id": tid, "name": "x", "value": 1}] * (score_service.MAX_BATCH + 1)}
    assert post(live, big).json()["error"]["details"]["field"] == "scores"


def test_unknown_trace_is_404_after_a_short_wait(live: LiveServer) -> None:
    started = time.monotonic()
    r = post(live, {"trace_id": "no-such-trace", "name": "thumbs", "value": True})
    waited = time.monotonic() - started
    assert r.status_code == 404
    err = r.json()["error"]
    assert "no-such-trace" in err["message"] and "retry" in err["message"]
    assert err["details"]["field"] == "trace_id"
    assert waited >= 0.45  # it waited for the writer before giving up


def test_scores_waiting_for_unknown_traces_hold_no_worker_thread(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before, each waited in one of the server's 40 worker threads: 60 of them stalled every other route
    monkeypatch.setattr(score_service, "TRACE_WAIT_SECONDS", 5.0)
    body = {"trace_id": "still-unknown", "name": "thumbs", "value": True}
    with concurrent.futures.ThreadPoolExecutor(60) as pool:
        waiting = [pool.submit(post, live, body) for _ in range(60)]
        time.sleep(0.5)
        with live.client() as c:  # a route served from the worker threads answers meanwhile
            assert c.get("/api/scores", params={"limit": "1"}).status_code == 200
        # it answered before any score stopped waiting (before, it waited for a thread a score gave back)
        assert not any(f.done() for f in waiting)
        assert all(f.result().status_code == 404 for f in waiting)


def test_score_right_after_ingest_waits_for_the_writer(live: LiveServer) -> None:
    """The trace is still in the writer's queue (or batch) when the score arrives: accepted, not 404."""
    for _ in range(3):
        tid = new_trace(live, flush=False)
        r = post(live, {"trace_id": tid, "name": "thumbs", "value": True})
        assert r.status_code == 201, r.text


def test_batch_is_all_or_nothing(live: LiveServer) -> None:
    a, b = new_trace(live), new_trace(live)
    items = [{"trace_id": a, "name": "thumbs", "value": True}, {"trace_id": b, "name": "thumbs", "value": 0.2}]
    r = post(live, {"scores": items})
    assert r.status_code == 201, r.text
    created = r.json()["scores"]
    assert [(s["trace_id"], s["value"]) for s in created] == [(a, 1.0), (b, 0.2)]
    bad = [*items, {"trace_id": "missing-trace", "name": "thumbs", "value": 1}]
    r = post(live, {"scores": bad})
    assert r.status_code == 404 and r.json()["error"]["details"]["field"] == "scores[2].trace_id"
    r = post(live, {"scores": [*items, {"trace_id": a, "name": "thumbs", "value": "yes"}]})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "scores[2].value"
    assert len(scores_of(live, trace_id=a)) == 1 and len(scores_of(live, trace_id=b)) == 1  # nothing more stored


def test_project_scoping_and_roles(live: LiveServer) -> None:
    mine = project_key(live, "scores-a")
    theirs = project_key(live, "scores-b")
    viewer = project_key(live, "scores-a", role="viewer")
    tid = new_trace(live, key=mine)
    assert post(live, {"trace_id": tid, "name": "thumbs", "value": True}, key=mine).status_code == 201
    # another project's key neither scores nor sees the trace
    r = post(live, {"trace_id": tid, "name": "thumbs", "value": False}, key=theirs)
    assert r.status_code == 404
    assert scores_of(live, theirs, trace_id=tid) == []
    assert len(scores_of(live, mine, trace_id=tid)) == 1
    assert len(scores_of(live, viewer, trace_id=tid)) == 1  # viewers read
    r = post(live, {"trace_id": tid, "name": "thumbs", "value": True}, key=viewer)
    assert r.status_code == 403
    assert len(scores_of(live, trace_id=tid)) == 1  # admin sees every project


def test_list_bad_limit(live: LiveServer) -> None:
    with live.client() as c:
        for limit in ("0", "5000", "x"):
            r = c.get("/api/scores", params={"limit": limit})
            assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "limit"


def test_cli(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODIUM_URL", live.url)
    monkeypatch.setenv("PODIUM_API_KEY", live.admin_key)
    tid = new_trace(live)
    runner = CliRunner()
    result = runner.invoke(scores_app, ["add", tid, "thumbs", "true", "--source", "user"])
    assert result.exit_code == 0, result.output
    assert f"Scored trace {tid}: thumbs = 1" in result.output
    result = runner.invoke(scores_app, ["add", tid, "rating", "4.5", "--json"])
    assert result.exit_code == 0 and '"value": 4.5' in result.output
    result = runner.invoke(scores_app, ["add", tid, "rating", "lots"])
    assert result.exit_code != 0 and "not a number" in str(result.exception)
    result = runner.invoke(scores_app, ["ls", "--trace", tid, "--json"])
    assert result.exit_code == 0 and result.output.count('"trace_id"') == 2
