"""Prompt experiments on SQLite and PostgreSQL: sticky assignment (same key, same arm; shares respected; a
shift moves only the users in the moved slice), creation rules (arms of this prompt, shares, one running
experiment per prompt, roles), manual shares logged, results checked against a hand computation (means,
t and Wilson intervals, percentiles, latest score per trace, probability of best), and the bandit on a
simulated reward (no shift before min_samples, steps capped at max_shift, floor kept, every shift logged
with its reason, the multi-process guard, the periodic loop), plus the `podium prompts experiment` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from podium.core.db import utcnow
from podium.prompts.experiments import assign
from podium.prompts.experiments import service as experiments
from podium.prompts.experiments.cli import experiment_app
from podium.tracing.writer import Record, TraceWriter

from .conftest import LiveServer, serve_for_module

# --- pure parts: statistics and share steps --------------------------------------------------------


def test_t_quantiles() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 10, 29, 30, 31, 40, 60, 120, 1000):
        assert experiments.t95(df) == pytest.approx(stats.t.ppf(0.975, df), rel=2e-4), df


def test_wilson_and_mean_intervals() -> None:
    est = experiments.wilson(3, 4)
    assert (est.mean, est.low, est.high) == pytest.approx((0.75, 0.30064, 0.95441), abs=1e-5)
    est = experiments.wilson(0, 10)
    assert est.low == 0 and est.high == pytest.approx(0.27753, abs=1e-5)
    assert experiments.wilson(0, 0).mean is None
    est = experiments.mean_interval([100, 200, 300, 400])
    half = 3.182446 * math.sqrt(50_000 / 3) / 2
    assert (est.mean, est.low, est.high) == pytest.approx((250, 250 - half, 250 + half))
    one = experiments.mean_interval([5.0])
    assert one.mean == 5 and one.low is None and one.high is None


def test_step_shares_respects_cap_sum_and_direction() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        k = rng.randint(2, 5)
        current = np.random.default_rng(rng.randint(0, 10**6)).dirichlet(np.ones(k)).tolist()
        target = np.random.default_rng(rng.randint(0, 10**6)).dirichlet(np.ones(k)).tolist()
        cap = rng.choice([0.01, 0.05, 0.1, 0.3, 1.0])
        after = experiments.step_shares(current, target, cap)
        assert sum(after) == pytest.approx(1, abs=1e-12)
        for c, t, a in zip(current, target, after, strict=True):
            assert abs(a - c) <= cap + 1e-12
            assert min(c, t) - 1e-12 <= a <= max(c, t) + 1e-12  # never overshoots its target
    assert experiments.step_shares([0.5, 0.5], [0.05, 0.95], 0.1) == pytest.approx([0.4, 0.6])
    assert experiments.step_shares([0.5, 0.5], [0.45, 0.55], 0.1) == pytest.approx([0.45, 0.55])
    assert experiments.with_floor([0.0, 1.0], 0.05) == pytest.approx([0.05, 0.95])


# --- sticky assignment -----------------------------------------------------------------------------


def test_assignment_is_sticky_and_follows_shares() -> None:
    exp = "exp_sticky"
    arms = [("prv_a", 0.2), ("prv_b", 0.5), ("prv_c", 0.3)]
    keys = [f"user-{i}" for i in range(1000)]
    first = {k: assign.pick(exp, arms, k) for k in keys}
    for _ in range(3):
        assert {k: assign.pick(exp, arms, k) for k in keys} == first
    counts = {v: sum(1 for a in first.values() if a == v) / len(keys) for v, _ in arms}
    for version, share in arms:
        assert abs(counts[version] - share) < 0.05, counts
    # another experiment hashes the same users differently
    other = {k: assign.pick("exp_other", arms, k) for k in keys}
    assert sum(other[k] != first[k] for k in keys) > 300


def test_a_shift_moves_only_the_moved_slice() -> None:
    exp = "exp_shift"
    before = [("prv_a", 0.5), ("prv_b", 0.5)]
    after = [("prv_a", 0.4), ("prv_b", 0.6)]
    keys = [f"u{i}" for i in range(4000)]
    moved = [(assign.pick(exp, before, k), assign.pick(exp, after, k)) for k in keys]
    changed = [m for m in moved if m[0] != m[1]]
    assert all(m == ("prv_a", "prv_b") for m in changed)  # nobody moves from B to A
    assert abs(len(changed) / len(keys) - 0.1) < 0.02
    # exactly the users whose point fell in [0.4, 0.5)
    assert {k for k, m in zip(keys, moved, strict=True) if m[0] != m[1]} == {
        k for k in keys if 0.4 <= assign.point(exp, k) < 0.5
    }


# --- the API ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose own bandit loop runs hourly, so it cannot step an experiment between a test's steps
    (the loop itself is tested directly)."""
    yield from serve_for_module(backend, tmp_path_factory.mktemp(f"exp-{backend}"), experiment_rebalance_seconds=3600)


def call(live: LiveServer, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    with live.client(key) as c:
        return c.request(method, path, json=body)


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def make_prompt(live: LiveServer, versions: int = 2) -> tuple[str, list[str]]:
    """A new prompt with `versions` versions; returns its name and version ids (v1 first)."""
    name = "p-" + uuid.uuid4().hex[:10]
    ids = []
    for i in range(versions):
        body = {"name": name, "template": f"Variant {i + 1}: answer {{{{ question }}}}"}
        ids.append(ok(call(live, "POST", "/api/prompts", body), 201)["version"]["id"])
    return name, ids


def create(live: LiveServer, prompt: str, body: dict[str, Any], key: str | None = None) -> Any:
    return call(live, "POST", f"/api/prompts/{prompt}/experiments", body, key)


def project_key(live: LiveServer, role: str) -> str:
    with live.client() as c:
        r = c.post("/api/keys", json={"name": "k-" + uuid.uuid4().hex[:6], "role": role})
    return str(ok(r, 201)["key"])


def send_traces(live: LiveServer, traces: list[dict[str, Any]], experiment: str | None = None) -> None:
    """Traces of prompt versions: each {id, version_id, latency_ms, error?, cost_usd?, tokens?, start?}. With
    `experiment`, written as the gateway writes a call that experiment assigned (source `gateway`, the
    experiment in the trace's metadata, one llm span with the version); without, ingested as an application's
    own traces (a root span and an llm span carrying the version), which pin the version themselves."""
    if experiment is None:
        ingest_traces(live, traces)
        return
    writer = live.app.state.runtime.get(TraceWriter)
    with live.client() as c:
        project_id = c.get("/api/whoami").json().get("project_id")
    for t in traces:
        start = t.get("start") or utcnow()
        latency = t.get("latency_ms", 10)
        trace = {
            "id": t["id"],
            "project_id": project_id,
            "name": "chat.completions",
            "source": "gateway",
            "status": "error" if t.get("error") else "ok",
            "start_time": start,
            "end_time": start + timedelta(milliseconds=latency),
            "latency_ms": float(latency),
            "user_id": t.get("user"),
            "span_count": 1,
            "prompt_tokens": t.get("tokens", 0),
            "cost_micros": round(t.get("cost_usd", 0) * 1_000_000),
            "meta": {"experiment": experiment},
        }
        span = {
            "id": f"{t['id']}-llm",
            "trace_id": t["id"],
            "kind": "llm",
            "name": "upstream",
            "start_time": start,
            "end_time": start + timedelta(milliseconds=latency),
            "prompt_version_id": t["version_id"],
        }
        writer.put(Record(trace=trace, spans=[span]))
    assert writer.flush(10)


def ingest_traces(live: LiveServer, traces: list[dict[str, Any]], metadata: dict[str, Any] | None = None) -> None:
    """Traces sent by an application through `POST /api/traces/ingest` (see `send_traces`)."""
    spans = []
    for t in traces:
        start = t.get("start") or utcnow()
        end = start + timedelta(milliseconds=t.get("latency_ms", 10))
        spans.append(
            {
                "id": f"{t['id']}-root",
                "trace_id": t["id"],
                "name": "answer",
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "user_id": t.get("user"),
                "metadata": metadata,
            }
        )
        spans.append(
            {
                "id": f"{t['id']}-llm",
                "trace_id": t["id"],
                "parent_id": f"{t['id']}-root",
                "kind": "llm",
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "prompt_version_id": t["version_id"],
                "status": "error" if t.get("error") else "ok",
                "prompt_tokens": t.get("tokens", 0),
                "cost_usd": t.get("cost_usd", 0),
            }
        )
    with live.client() as c:
        r = c.post("/api/traces/ingest", json={"spans": spans})
    assert r.status_code == 202, r.text
    assert live.app.state.runtime.get(TraceWriter).flush(10)


def send_scores(live: LiveServer, items: list[tuple[str, str, float | bool]]) -> None:
    body = {"scores": [{"trace_id": t, "name": n, "value": v, "source": "user"} for t, n, v in items]}
    ok(call(live, "POST", "/api/scores", body), 201)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"arms": [{"version": 1}]}, "arms"),
        ({"arms": []}, "arms"),
        ({"arms": [{"version": 1, "share": 0.5}, {"version": 2, "share": 0.4}]}, "arms"),
        ({"arms": [{"version": 1, "share": 0.5}, {"version": 2}]}, "arms[1].share"),
        ({"arms": [{"version": 1, "share": -0.5}, {"version": 2, "share": 1.5}]}, "arms[0].share"),
        ({"arms": [{"version": 1}, {"version": 99}]}, "arms[1].version"),
        ({"arms": [{"version": 1}, {"version": "no-such-label"}]}, "arms[1].version"),
        ({"arms": [{"version": 1}, {"version": "v1"}]}, "arms[1].version"),
        ({"arms": [{"version": 1}, {"version": 2, "weight": 1}]}, "arms[1].weight"),
        ({"mode": "auto"}, "score"),
        ({"mode": "greedy"}, "mode"),
        ({"sticky_by": "ip"}, "sticky_by"),
        ({"name": "Bad Name"}, "name"),
        ({"max_shift": 0}, "max_shift"),
        ({"min_samples": 0}, "min_samples"),
        ({"floor": 0.49, "arms": [{"version": 1}, {"version": 2}, {"version": 1}]}, "floor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(live: LiveServer, change: dict[str, Any], field: str) -> None:
    prompt, _ = make_prompt(live)
    body = {"name": "e1", "arms": [{"version": 1}, {"version": 2}], **change}
    r = create(live, prompt, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"]["field"] == field
    assert ok(call(live, "GET", f"/api/prompts/{prompt}/experiments")) == []


def test_arms_must_be_versions_of_this_prompt(live: LiveServer) -> None:
    prompt, _ = make_prompt(live)
    _, other_ids = make_prompt(live, 1)
    r = create(live, prompt, {"name": "cross", "arms": [{"version": 1}, {"version": other_ids[0]}]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["details"]["field"] == "arms[1].version" and "belongs to prompt" in err["message"]
    assert create(live, "no-such-prompt", {"name": "x", "arms": [{"version": 1}, {"version": 2}]}).status_code == 404


def test_create_get_list_and_one_running_per_prompt(live: LiveServer) -> None:
    prompt, ids = make_prompt(live, 3)
    ok(call(live, "PUT", f"/api/prompts/{prompt}/labels/production", {"version": 2}))
    body = {"name": "first", "arms": [{"version": "production", "share": 0.25}, {"version": ids[2], "share": 0.75}]}
    first = ok(create(live, prompt, body), 201)
    assert first["id"].startswith("exp_") and first["status"] == "running" and first["prompt"] == prompt
    assert [(a["version"], a["version_id"], a["share"]) for a in first["arms"]] == [
        (2, ids[1], 0.25),
        (3, ids[2], 0.75),
    ]
    assert first["mode"] == "fixed" and first["sticky_by"] == "user" and first["floor"] == 0.01
    assert first["shifts"][0]["reason"] == "start" and first["shifts"][0]["after"] == {"2": 0.25, "3": 0.75}
    # a second running experiment on the same prompt is refused, naming the running one
    r = create(live, prompt, {"name": "second", "arms": [{"version": 1}, {"version": 2}]})
    assert r.status_code == 409
    assert "first" in r.json()["error"]["message"] and r.json()["error"]["details"]["experiment"] == first["id"]
    # another prompt is not affected; equal split when no shares are given
    other, _ = make_prompt(live, 3)
    three = ok(create(live, other, {"name": "three", "arms": [{"version": v} for v in (1, 2, 3)]}), 201)
    assert [a["share"] for a in three["arms"]] == pytest.approx([1 / 3] * 3)
    stopped = ok(call(live, "POST", f"/api/experiments/{first['id']}/stop"))
    assert stopped["status"] == "stopped" and stopped["stopped_at"] is not None
    assert call(live, "POST", f"/api/experiments/{first['id']}/stop").status_code == 409
    # the name stays taken; a new name starts
    assert create(live, prompt, {"name": "first", "arms": [{"version": 1}, {"version": 2}]}).status_code == 409
    second = ok(create(live, prompt, {"name": "second", "arms": [{"version": 1}, {"version": 2}]}), 201)
    listed = ok(call(live, "GET", f"/api/prompts/{prompt}/experiments"))
    assert [e["name"] for e in listed] == ["second", "first"]
    got = ok(call(live, "GET", f"/api/experiments/{second['id']}"))
    assert got["arms"] == second["arms"] and len(got["shifts"]) == 1
    assert call(live, "GET", "/api/experiments/exp_nope").status_code == 404


def test_roles(live: LiveServer) -> None:
    prompt, _ = make_prompt(live)
    viewer = project_key(live, "viewer")
    body = {"name": "r", "arms": [{"version": 1}, {"version": 2}]}
    assert create(live, prompt, body, key=viewer).status_code == 403
    exp = ok(create(live, prompt, body), 201)
    shares = {"shares": {"1": 0.9, "2": 0.1}}
    assert call(live, "PUT", f"/api/experiments/{exp['id']}/shares", shares, key=viewer).status_code == 403
    assert call(live, "POST", f"/api/experiments/{exp['id']}/stop", key=viewer).status_code == 403
    assert call(live, "POST", f"/api/experiments/{exp['id']}/rebalance", key=viewer).status_code == 403
    assert ok(call(live, "GET", f"/api/experiments/{exp['id']}/results", key=viewer))["arms"]  # viewers read


def test_manual_shares_are_logged(live: LiveServer) -> None:
    prompt, _ = make_prompt(live)
    exp = ok(create(live, prompt, {"name": "m", "arms": [{"version": 1}, {"version": 2}]}), 201)
    path = f"/api/experiments/{exp['id']}/shares"
    for body, field in [
        ({"shares": {"1": 0.9, "2": 0.2}}, "shares"),
        ({"shares": {"1": 1.0}}, "shares"),
        ({"shares": {"1": 0.5, "2": 0.25, "7": 0.25}}, "shares.7"),
        ({"shares": {"1": "half", "2": 0.5}}, "shares.1"),
        ({"shares": {"1": 0.5, "2": 0.5}, "why": "x"}, "why"),
        ({"1": 0.5}, "shares"),
    ]:
        r = call(live, "PUT", path, body)
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == field, (body, r.text)
    got = ok(call(live, "PUT", path, {"shares": {"1": 0.3, "v2": 0.7}, "reason": "v2 reads better"}))
    assert [a["share"] for a in got["arms"]] == pytest.approx([0.3, 0.7])
    shift = got["shifts"][0]
    assert shift["before"] == {"1": 0.5, "2": 0.5} and shift["after"] == pytest.approx({"1": 0.3, "2": 0.7})
    assert shift["reason"] == "v2 reads better" and shift["actor"] != "bandit"
    r = call(live, "POST", f"/api/experiments/{exp['id']}/rebalance")
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "mode"  # fixed mode
    ok(call(live, "POST", f"/api/experiments/{exp['id']}/stop"))
    assert call(live, "PUT", path, {"shares": {"1": 0.5, "2": 0.5}}).status_code == 409


def beta_prob_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X > Y) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2), by integrating on a fine grid."""
    x = np.linspace(0, 1, 200_001)
    fx = x ** (a1 - 1) * (1 - x) ** (b1 - 1)
    fy = x ** (a2 - 1) * (1 - x) ** (b2 - 1)
    fx /= np.trapezoid(fx, x)
    fy /= np.trapezoid(fy, x)
    cdf_y = np.concatenate([[0], np.cumsum((fy[1:] + fy[:-1]) / 2 * np.diff(x))])
    return float(np.trapezoid(fx * cdf_y, x))


def test_results_match_a_hand_computation(live: LiveServer) -> None:
    prompt, (v1, v2, v3) = make_prompt(live, 3)
    send_traces(live, [{"id": "early-" + uuid.uuid4().hex[:8], "version_id": v1, "latency_ms": 9999}])  # before
    exp = ok(create(live, prompt, {"name": "r", "arms": [{"version": 1}, {"version": 2}], "score": "thumbs"}), 201)
    tag = uuid.uuid4().hex[:8]
    a = [f"a{i}-{tag}" for i in range(4)]
    b = [f"b{i}-{tag}" for i in range(3)]
    traces = [
        {"id": a[i], "version_id": v1, "latency_ms": 100 * (i + 1), "error": i == 3, "cost_usd": (i + 1) / 1000,
         "tokens": 10 * (i + 1)}
        for i in range(4)
    ]  # fmt: skip
    traces += [{"id": b[i], "version_id": v2, "latency_ms": ms, "tokens": 7} for i, ms in enumerate((50, 50, 80))]
    traces.append({"id": f"c-{tag}", "version_id": v3, "latency_ms": 1})  # not an arm
    send_traces(live, traces, exp["id"])
    send_traces(live, [{"id": f"pinned-{tag}", "version_id": v1, "latency_ms": 7777}])  # not assigned by it
    # nor is an application's trace that claims the experiment in its metadata (before, it was counted)
    ingest_traces(live, [{"id": f"forged-{tag}", "version_id": v1, "latency_ms": 1}], {"experiment": exp["id"]})
    send_scores(
        live,
        [(a[0], "thumbs", True), (a[1], "thumbs", True), (a[2], "thumbs", True), (a[3], "thumbs", True)]
        + [(t, "rating", v) for t, v in zip(a, (4, 5, 3, 4), strict=True)]
        + [(b[0], "thumbs", False), (b[1], "thumbs", True), (b[2], "thumbs", 0)]
        + [(b[0], "rating", 2), (b[1], "rating", 3)],
    )
    send_scores(live, [(a[3], "thumbs", False)])  # the user changed their mind: the latest score counts

    res = ok(call(live, "GET", f"/api/experiments/{exp['id']}/results"))
    assert res["score_names"] == ["thumbs", "rating"] and res["truncated"] is False and res["end"] is None
    ra, rb = res["arms"]
    assert (ra["version"], ra["traces"], ra["errors"], rb["traces"], rb["errors"]) == (1, 4, 1, 3, 0)
    # error rate 1/4: Wilson
    z = 1.959964
    center, half = (0.25 + z * z / 8) / (1 + z * z / 4), z * math.sqrt(0.25 * 0.75 / 4 + z * z / 64) / (1 + z * z / 4)
    assert (ra["error_rate"]["low"], ra["error_rate"]["high"]) == pytest.approx(
        (center - half, center + half), abs=1e-5
    )
    # latency 100..400: mean 250 ± t(3) * sd / 2, p50 250, p95 385
    lat = ra["latency_ms"]
    half = 3.182446 * math.sqrt(50_000 / 3) / 2
    assert (lat["n"], lat["mean"], lat["p50"], lat["p95"]) == pytest.approx((4, 250, 250, 385))
    assert (lat["low"], lat["high"]) == pytest.approx((250 - half, 250 + half), rel=1e-5)
    assert rb["latency_ms"]["mean"] == pytest.approx(60) and rb["latency_ms"]["p50"] == pytest.approx(50)
    # cost 1..4 thousandths of a dollar, tokens 10..40
    assert ra["cost_usd"]["mean"] == pytest.approx(0.0025)
    assert ra["cost_usd"]["high"] - ra["cost_usd"]["mean"] == pytest.approx(half / 100_000, rel=1e-5)
    assert ra["tokens"]["mean"] == pytest.approx(25) and rb["tokens"]["mean"] == pytest.approx(7)
    assert rb["tokens"]["low"] == pytest.approx(7)  # no spread
    # thumbs: A 3 of 4 (the fourth changed to 0), B 1 of 3; Wilson intervals; Beta posteriors
    ta, tb = ra["scores"]["thumbs"], rb["scores"]["thumbs"]
    assert ta["binary"] and (ta["n"], ta["mean"]) == (4, 0.75) and (tb["n"], tb["mean"]) == pytest.approx((3, 1 / 3))
    assert (ta["low"], ta["high"]) == pytest.approx((0.30064, 0.95441), abs=1e-5)
    expected = beta_prob_greater(4, 2, 2, 3)
    assert ta["prob_best"] == pytest.approx(expected, abs=0.03)
    assert ta["prob_best"] + tb["prob_best"] == pytest.approx(1)
    # rating: A 4,5,3,4 (mean 4, t interval), B 2,3; normal posteriors
    sa, sb = ra["scores"]["rating"], rb["scores"]["rating"]
    assert not sa["binary"] and sa["mean"] == pytest.approx(4)
    half = 3.182446 * math.sqrt(2 / 3) / 2
    assert (sa["low"], sa["high"]) == pytest.approx((4 - half, 4 + half), rel=1e-5)
    assert (sb["n"], sb["mean"]) == (2, 2.5)
    se = math.sqrt(2 / 3 / 4 + 0.5 / 2)
    expected = 0.5 * (1 + math.erf(1.5 / se / math.sqrt(2)))
    assert sa["prob_best"] == pytest.approx(expected, abs=0.02)
    # the same figures on every read (fixed seed)
    assert ok(call(live, "GET", f"/api/experiments/{exp['id']}/results")) == res
    # a stopped experiment keeps its window: traces after the stop are not counted
    ok(call(live, "POST", f"/api/experiments/{exp['id']}/stop"))
    send_traces(live, [{"id": f"late-{tag}", "version_id": v1, "latency_ms": 5}], exp["id"])
    after = ok(call(live, "GET", f"/api/experiments/{exp['id']}/results"))
    assert after["arms"][0]["traces"] == 4 and after["end"] is not None


def test_bandit_shifts_toward_the_better_arm(live: LiveServer) -> None:
    prompt, (v1, v2) = make_prompt(live, 2)
    spec = {
        "name": "bandit",
        "arms": [{"version": 1}, {"version": 2}],
        "mode": "auto",
        "score": "converted",
        "min_samples": 30,
        "max_shift": 0.1,
        "floor": 0.05,
    }
    exp = ok(create(live, prompt, spec), 201)
    eid = exp["id"]
    rate = {v1: 0.3, v2: 0.6}
    seen = {v1: 0, v2: 0}
    db = live.platform.db

    def traffic(n: int) -> None:
        """n users: assigned as the gateway would (sticky on the user), converting at exactly their arm's rate
        (the k-th trace of an arm converts when k x rate passes a whole number: which users land on which arm
        depends on the experiment's random id, so random conversions made this test fail now and then)."""
        shares = [(a["version_id"], a["share"]) for a in ok(call(live, "GET", f"/api/experiments/{eid}"))["arms"]]
        traces, scores = [], []
        for _ in range(n):
            user = uuid.uuid4().hex
            version = assign.pick(eid, shares, user)
            tid = "bt-" + uuid.uuid4().hex[:16]
            k = seen[version] = seen[version] + 1
            traces.append({"id": tid, "version_id": version, "user": user})
            scores.append((tid, "converted", math.floor(k * rate[version]) > math.floor((k - 1) * rate[version])))
        send_traces(live, traces, eid)
        send_scores(live, scores)

    def bandit_shifts() -> list[dict[str, Any]]:
        return [s for s in ok(call(live, "GET", f"/api/experiments/{eid}"))["shifts"] if s["actor"] == "bandit"]

    # below min_samples: no shift, and the reason says why
    traffic(30)
    step = ok(call(live, "POST", f"/api/experiments/{eid}/rebalance"))
    assert step["shifted"] is False and "waiting for 30" in step["reason"] and step["before"] == step["after"]
    assert sum(step["samples"].values()) == 30
    assert bandit_shifts() == []

    steps = []
    for _ in range(7):
        traffic(60)
        step = ok(call(live, "POST", f"/api/experiments/{eid}/rebalance"))
        steps.append(step)
        if step["shifted"]:
            assert "Thompson sampling on 'converted'" in step["reason"] and "P(best)" in step["reason"]
            for k in ("1", "2"):
                assert abs(step["after"][k] - step["before"][k]) <= 0.1 + 1e-9  # the cap
                assert step["after"][k] >= 0.05 - 1e-9  # the floor
            assert sum(step["after"].values()) == pytest.approx(1)
            assert step["after"]["2"] > step["before"]["2"]  # toward the better arm
    shifted = [s for s in steps if s["shifted"]]
    assert len(shifted) >= 4
    assert shifted[0]["before"] == pytest.approx({"1": 0.5, "2": 0.5})
    assert shifted[0]["after"] == pytest.approx({"1": 0.4, "2": 0.6})  # capped at 0.1 though the target is 0.95
    final = ok(call(live, "GET", f"/api/experiments/{eid}"))
    b_share = next(a["share"] for a in final["arms"] if a["version"] == 2)
    assert b_share >= 0.85
    # every shift is logged with the shares before and after and its reason
    logged = bandit_shifts()
    for step in shifted:
        match = [s for s in logged if s["after"] == pytest.approx(step["after"]) and s["reason"] == step["reason"]]
        assert match and match[0]["before"] == pytest.approx(step["before"])

    # users who change arms after a shift are only those in the moved slice (two arms: A → B)
    last = shifted[-1]
    before = [(v1, last["before"]["1"]), (v2, last["before"]["2"])]
    after = [(v1, last["after"]["1"]), (v2, last["after"]["2"])]
    users = [f"user-{i}" for i in range(3000)]
    moves = [(assign.pick(eid, before, u), assign.pick(eid, after, u)) for u in users]
    changed = [m for m in moves if m[0] != m[1]]
    assert all(m == (v1, v2) for m in changed)
    assert abs(len(changed) / len(users) - (last["after"]["2"] - last["before"]["2"])) < 0.03

    # several server processes: a step sooner than min_interval after the last bandit shift is skipped
    skipped = experiments.rebalance_all(db, min_interval=3600)[eid]
    assert skipped.shifted is False and "under 3600s ago" in skipped.reason

    # the loop steps running auto experiments: set shares back by hand, and let it run
    ok(call(live, "PUT", f"/api/experiments/{eid}/shares", {"shares": {"1": 0.5, "2": 0.5}}))
    n_before = len(bandit_shifts())

    async def run_loop() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(experiments.bandit_loop(db, every=0.02), 1.5)

    asyncio.run(run_loop())
    logged = bandit_shifts()
    assert len(logged) > n_before
    newest = logged[0]
    assert newest["after"]["2"] > 0.5
    for s in logged[: len(logged) - n_before]:
        assert abs(s["after"]["2"] - s["before"]["2"]) <= 0.1 + 1e-9


def test_rebalance_is_seeded_and_direction_lower(live: LiveServer) -> None:
    """`direction: lower` favours the arm with the lower score; a seeded rng gives the same step."""
    prompt, (v1, v2) = make_prompt(live, 2)
    spec = {
        "name": "cost",
        "arms": [{"version": 1}, {"version": 2}],
        "mode": "auto",
        "score": "seconds",
        "direction": "lower",
        "min_samples": 5,
        "max_shift": 0.2,
    }
    exp = ok(create(live, prompt, spec), 201)
    tag = uuid.uuid4().hex[:8]
    traces = [{"id": f"d{i}-{tag}", "version_id": v1 if i % 2 else v2} for i in range(20)]
    send_traces(live, traces, exp["id"])
    send_scores(
        live, [(t["id"], "seconds", (9.0 if t["version_id"] == v1 else 3.0) + i % 3) for i, t in enumerate(traces)]
    )
    db = live.platform.db
    step = experiments.rebalance(db, exp["id"], rng=np.random.default_rng(1))
    assert step.shifted and step.allocation == {"1": 0.0, "2": 1.0}
    assert step.after == pytest.approx({"1": 0.3, "2": 0.7}) and "normal posteriors" in step.reason
    ok(call(live, "POST", f"/api/experiments/{exp['id']}/stop"))
    r = call(live, "POST", f"/api/experiments/{exp['id']}/rebalance")
    assert r.status_code == 409


def test_cli(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODIUM_URL", live.url)
    monkeypatch.setenv("PODIUM_API_KEY", live.admin_key)
    prompt, (v1, _) = make_prompt(live, 2)
    runner = CliRunner()
    result = runner.invoke(
        experiment_app,
        ["create", prompt, "--name", "cli", "--arm", "1=0.2", "--arm", "2=0.8", "--mode", "auto", "--score", "ok"],
    )
    assert result.exit_code == 0, result.output
    assert "Started experiment cli" in result.output and "v1 0.200, v2 0.800" in result.output
    eid = ok(call(live, "GET", f"/api/prompts/{prompt}/experiments"))[0]["id"]
    send_traces(live, [{"id": f"cli-{uuid.uuid4().hex[:8]}", "version_id": v1, "latency_ms": 42}], eid)
    result = runner.invoke(experiment_app, ["ls", prompt])
    assert result.exit_code == 0 and "running" in result.output
    result = runner.invoke(experiment_app, ["ls", prompt, "--json"])
    assert result.exit_code == 0 and f'"id": "{eid}"' in result.output
    result = runner.invoke(experiment_app, ["show", eid])
    assert result.exit_code == 0, result.output
    assert "arms (95% intervals)" in result.output and "share changes" in result.output and "42" in result.output
    result = runner.invoke(experiment_app, ["rebalance", eid])
    assert result.exit_code == 0 and "Unchanged" in result.output and "waiting for 100" in result.output
    result = runner.invoke(experiment_app, ["shares", eid, "1=0.5", "2=0.5", "--reason", "reset"])
    assert result.exit_code == 0 and "v1 0.500, v2 0.500" in result.output
    result = runner.invoke(experiment_app, ["shares", eid, "1=0.5", "2=0.6"])
    assert result.exit_code != 0 and "sum to 1.1" in str(result.exception)
    result = runner.invoke(experiment_app, ["stop", eid])
    assert result.exit_code == 0 and "Stopped experiment cli" in result.output
    result = runner.invoke(experiment_app, ["show", eid, "--json"])
    assert result.exit_code == 0 and '"status": "stopped"' in result.output and '"results"' in result.output


def test_an_experiment_can_be_scoped_to_a_label(live: LiveServer) -> None:
    prompt, _ = make_prompt(live, 2)
    bad = create(live, prompt, {"name": "s", "arms": [{"version": 1}, {"version": 2}], "label": "Not A Label"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "label"
    exp = ok(create(live, prompt, {"name": "s", "arms": [{"version": 1}, {"version": 2}], "label": "production"}), 201)
    assert exp["label"] == "production"
    assert ok(call(live, "GET", f"/api/experiments/{exp['id']}"))["label"] == "production"
    ok(call(live, "POST", f"/api/experiments/{exp['id']}/stop"))
