"""Eval runs end to end through the API, the CLI and the SDK, on a real server with a scripted upstream:
reference metrics and a G-Eval judge over a dataset version; the second run served from the eval cache
without a model call; missing fields refused before any call; a judge answer that does not parse recorded
as an error with its text; a target failing on a row; comparisons; the CI gate's exit codes and JUnit file;
the counterfactual bias test; online evaluation of production traces; tenancy."""

from __future__ import annotations

import json
import math
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import podium
from podium.core import sdkconfig
from podium.gateway.table import RouteTable

from .conftest import LiveServer, project_key, run_cli, serve_for_module
from .evalfake import EvalFake, Rule, start_eval_fake

STEPS = "1. Read the question\n2. Check the answer is correct\n3. Check it is polite"


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    for live in serve_for_module(backend, tmp_path_factory.mktemp(f"evals-{backend}")):
        with live.client() as c:
            for name in ("ev-model", "ev-judge", "ev-embed"):
                deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": name}
                r = c.post("/api/routes", json={"name": name, "deployments": [deployment]})
                assert r.status_code == 201, r.text
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


@pytest.fixture(autouse=True)
def _reset(fake: EvalFake) -> None:
    fake.reset()


def _name(prefix: str = "ev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dataset(live: LiveServer, rows: list[dict[str, Any]], key: str | None = None) -> str:
    name = _name("evds")
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    with live.client(key) as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    assert r.status_code == 201, r.text
    return f"{name}@1"


def start(live: LiveServer, spec: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    with live.client(key) as c:
        r = c.post("/api/evals/runs", json=spec)
    assert r.status_code == 202, r.text
    return dict(r.json())


def finished(live: LiveServer, run_id: str, key: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    with live.client(key) as c:
        while True:
            run = c.get(f"/api/evals/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return dict(run)
            assert time.monotonic() < deadline, run
            time.sleep(0.1)


def stored_trace(live: LiveServer, trace_id: str) -> dict[str, Any]:
    """A trace once the trace writer has stored it (it flushes a moment after the call)."""
    deadline = time.monotonic() + 15
    with live.client() as c:
        while True:
            r = c.get(f"/api/traces/{trace_id}")
            if r.status_code == 200:
                return dict(r.json())
            assert r.status_code == 404 and time.monotonic() < deadline, r.text
            time.sleep(0.1)


def rows_of(live: LiveServer, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
    with live.client(key) as c:
        r = c.get(f"/api/evals/runs/{run_id}/rows", params={"limit": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


QA = [
    {"input": "say:Paris is the capital of France.", "reference": "Paris is the capital of France."},
    {"input": "say:The answer is 4", "reference": "4"},
    {"input": "say:Blue whales are mammals", "reference": "Whales are mammals."},
    {"input": "say:I don't know", "reference": "Mount Everest"},
]


def judge_rules(fake: EvalFake) -> None:
    fake.rules[:] = [
        Rule("short evaluation steps", STEPS),
        Rule("Reply with the number only", "4", top={"4": 0.6, "3": 0.3, "5": 0.1}),
    ]


GEVAL = {"type": "geval", "name": "quality", "criteria": "The answer is correct and polite.", "threshold": 0.5}


def test_a_run_scores_every_row_links_traces_and_the_second_run_makes_no_model_call(
    live: LiveServer, fake: EvalFake
) -> None:
    judge_rules(fake)
    ref = dataset(live, QA)
    spec = {
        "name": _name("suite"),
        "dataset": ref,
        "target": {"type": "model", "model": "ev-model"},
        "evaluators": ["exact_match", "token_f1", "rouge", GEVAL],
        "judge": "ev-judge",
        "concurrency": 4,
    }
    first = finished(live, start(live, spec)["id"])
    assert first["status"] == "succeeded", first
    assert (first["rows_done"], first["failed_rows"], first["evaluator_errors"]) == (4, 0, 0)
    # 4 target calls, 1 call writing G-Eval's steps, 4 judge calls
    assert fake.chat_calls == 9 and first["model_calls"] == 9
    rows = rows_of(live, first["id"])
    assert [r["output"] for r in rows] == [q["input"][4:] for q in QA]
    assert rows[0]["scores"]["exact_match"] == 1.0 and rows[1]["scores"]["exact_match"] == 0.0
    # the judge's probability-weighted score: 4*.6 + 3*.3 + 5*.1 = 3.8 of 5 -> (3.8-1)/4
    assert rows[0]["scores"]["quality_raw"] == pytest.approx(3.8)
    assert rows[0]["scores"]["quality"] == pytest.approx(0.7)
    assert rows[0]["details"]["quality"]["label"] == "pass"
    summary = first["summary"]
    em = summary["scores"]["exact_match"]
    assert em["n"] == 4 and em["mean"] == pytest.approx(0.25) and em["low"] <= 0.25 <= em["high"]
    assert {"rouge1", "rouge2", "rougeL", "token_f1", "quality"} <= set(summary["scores"])
    # the row's trace is the gateway's trace of the target call, marked as an evaluation's call
    trace = stored_trace(live, rows[0]["trace_id"])
    assert trace["source"] == "eval" and trace["model"] == "ev-model"

    second = finished(live, start(live, spec)["id"])
    assert second["status"] == "succeeded"
    assert fake.chat_calls == 9, "the cached run called the upstream"
    assert second["model_calls"] == 0 and second["cost_micros"] == 0
    again = rows_of(live, second["id"])
    assert [r["scores"] for r in again] == [r["scores"] for r in rows]
    assert all(r["cached"] for r in again)
    assert [r["trace_id"] for r in again] == [r["trace_id"] for r in rows]
    assert second["summary"]["replayed_from"] == first["id"]  # the same plan: its rows copied in SQL
    # evaluators listed in another order: another plan, so rows are evaluated again, every call and verdict cached
    reordered = finished(live, start(live, {**spec, "evaluators": list(reversed(spec["evaluators"]))})["id"])
    assert "replayed_from" not in reordered["summary"]
    assert reordered["model_calls"] == 0 and reordered["cached_calls"] == 4 and fake.chat_calls == 9
    assert [r["scores"] for r in rows_of(live, reordered["id"])] == [r["scores"] for r in rows]

    # a changed parameter is a different call: the cache misses
    third = finished(live, start(live, {**spec, "target": {"model": "ev-model", "params": {"temperature": 0.5}}})["id"])
    assert third["model_calls"] == 4 and fake.chat_calls == 13  # the judge's calls hit (same outputs)
    # another default judge is another verdict: its steps and its four grades are asked for
    fourth = finished(live, start(live, {**spec, "judge": "ev-embed"})["id"])
    assert fourth["model_calls"] == 5 and fake.chat_calls == 18


def test_a_dataset_missing_fields_is_refused_before_any_model_call(live: LiveServer, fake: EvalFake) -> None:
    ref = dataset(live, [{"question": "say:hi"}])
    spec = {
        "dataset": ref,
        "target": {"model": "ev-model"},
        "evaluators": ["bleu", {"type": "context_recall", "model": "ev-judge"}],
    }
    with live.client() as c:
        r = c.post("/api/evals/runs", json=spec)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert sorted(err["details"]["missing"]) == ["context", "input", "reference"]
        assert "bleu" in err["message"] and "context_recall" in err["message"] and "question" in err["message"]
        # mapped onto the dataset's columns, the same run is accepted
        runs = c.get("/api/evals/runs").json()
    assert fake.chat_calls == 0
    assert all(r["dataset"] != ref for r in runs)


def test_an_unparseable_judge_answer_is_an_error_with_its_text_and_a_failing_target_row_fails_alone(
    live: LiveServer, fake: EvalFake
) -> None:
    fake.rules[:] = [Rule("short evaluation steps", STEPS), Rule("Reply with the number only", "Excellent work!")]
    rows = [{"input": "say:fine", "reference": "fine"}, {"input": "fail:500", "reference": "x"}]
    run = finished(
        live,
        start(
            live,
            {
                "dataset": dataset(live, rows),
                "target": {"model": "ev-model"},
                "judge": "ev-judge",
                "evaluators": ["exact_match", GEVAL],
                "thresholds": [{"score": "exact_match", "max_failed_rows": 0}],
            },
        )["id"],
    )
    assert run["status"] == "succeeded"
    assert run["summary"]["passed"] is False
    assert [(c["name"], c["passed"]) for c in run["summary"]["checks"]] == [("failed rows <= 0", False)]
    assert (run["failed_rows"], run["evaluator_errors"]) == (1, 1)
    ok, failed = rows_of(live, run["id"])
    assert ok["details"]["quality"]["error"].startswith("the judge's answer has no score")
    assert ok["details"]["quality"]["raw"] == "Excellent work!"
    assert "quality" not in ok["scores"] and ok["scores"]["exact_match"] == 1.0
    assert failed["status"] == "failed" and "500" in failed["error"] and failed["scores"] == {}
    assert run["summary"]["evaluators"]["quality"]["errors"] == 1
    assert "quality" not in run["summary"]["scores"]


def test_compare_lists_regressions_first_with_a_paired_test(live: LiveServer, fake: EvalFake) -> None:
    n = 20
    rows = [{"input": f"say:answer {i}", "reference": f"answer {i}"} for i in range(n)]
    ref = dataset(live, rows)
    good = finished(
        live, start(live, {"dataset": ref, "target": {"model": "ev-model"}, "evaluators": ["exact_match"]})["id"]
    )
    # a system prompt the fake ignores; a rule breaks rows 3 and 7 only in this run
    fake.rules[:] = [Rule("say:answer 3", "wrong"), Rule("say:answer 7", "wrong")]
    worse = finished(
        live,
        start(
            live, {"dataset": ref, "target": {"model": "ev-model", "system": "be brief"}, "evaluators": ["exact_match"]}
        )["id"],
    )
    with live.client() as c:
        cmp = c.get("/api/evals/compare", params={"a": good["id"], "b": worse["id"]}).json()
    (metric,) = cmp["metrics"]
    assert metric["name"] == "exact_match"
    assert (metric["test"]["wins"], metric["test"]["losses"], metric["test"]["ties"]) == (0, 2, 18)
    assert metric["test"]["mean_delta"] == pytest.approx(-0.1)
    assert metric["test"]["p_value"] == pytest.approx(0.5)  # 2 discordant pairs: exact sign-flip p = 2/4
    assert [r["index"] for r in cmp["rows"][:2]] == [3, 7]
    assert cmp["rows"][0]["regressed"] == ["exact_match"] and cmp["rows"][0]["output_b"] == "wrong"
    assert len(cmp["rows"]) == 20 and cmp["paired"] == 20
    with live.client() as c:  # fewer rows returned, the statistics still over every pair
        few = c.get("/api/evals/compare", params={"a": good["id"], "b": worse["id"], "rows": 2}).json()
    assert [r["index"] for r in few["rows"]] == [3, 7] and few["metrics"] == cmp["metrics"]


def _suite(tmp_path: Path, ref: str, thresholds: list[dict[str, Any]]) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "gate-suite",
                "dataset": ref,
                "targets": [{"model": "ev-model"}],
                "evaluators": ["exact_match", "token_f1"],
                "thresholds": thresholds,
            }
        )
    )
    return path


def test_the_gate_exits_non_zero_on_a_failed_threshold_and_writes_junit(live: LiveServer, tmp_path: Path) -> None:
    ref = dataset(live, QA)
    env = {"PODIUM_URL": live.url, "PODIUM_API_KEY": live.admin_key}
    passing = _suite(tmp_path, ref, [{"score": "exact_match", "min": 0.2}])
    junit = tmp_path / "ok.xml"
    r = run_cli("eval", "run", str(passing), "--gate", "--junit", str(junit), env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "exact_match" in r.stdout and "Gate" in r.stdout
    suite_el = ET.parse(junit).getroot().find("testsuite")  # noqa: S314 - the file the CLI just wrote
    assert suite_el is not None and suite_el.get("failures") == "0" and suite_el.get("tests") == "2"

    failing = _suite(tmp_path, ref, [{"score": "exact_match", "min": 0.9}, {"score": "token_f1", "min": 0.1}])
    junit = tmp_path / "bad.xml"
    r = run_cli("eval", "run", str(failing), "--gate", "--junit", str(junit), env=env, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout
    root = ET.parse(junit).getroot()  # noqa: S314 - the file the CLI just wrote
    failed = [tc.get("name") for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert failed == ["ev-model: exact_match >= 0.9"]
    # without --gate the same suite exits 0 (a report, not a verdict)
    assert run_cli("eval", "run", str(failing), env=env, timeout=120).returncode == 0
    # a regression check against a baseline run: no worse than it by more than 0.1
    with live.client() as c:
        base = c.get("/api/evals/runs", params={"name": "gate-suite"}).json()[-1]["id"]
    regress = _suite(tmp_path, ref, [{"score": "exact_match", "baseline": base, "max_drop": 0.0}])
    r = run_cli("eval", "run", str(regress), "--gate", env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    listed = json.loads(run_cli("eval", "ls", "--name", "gate-suite", "--json", env=env).stdout)
    assert len(listed) == 4 and all(r["status"] == "succeeded" for r in listed)
    shown = run_cli("eval", "show", listed[0]["id"], "--rows", "2", env=env)
    assert shown.returncode == 0 and "exact_match" in shown.stdout and "4 rows" in shown.stdout
    compared = run_cli("eval", "compare", listed[1]["id"], listed[0]["id"], env=env)
    assert compared.returncode == 0 and "exact_match" in compared.stdout and "regressions first" in compared.stdout
    bad = tmp_path / "broken.yaml"
    bad.write_text("dataset: [unclosed")
    r = run_cli("eval", "run", str(bad), env=env)
    assert r.returncode != 0 and "not valid YAML" in r.stderr


def test_the_bias_test_swaps_terms_and_reports_differences(live: LiveServer, fake: EvalFake) -> None:
    rows = [
        {"input": "say:He is a great engineer", "reference": "He is a great engineer"},
        {"input": "say:She fixed his bike", "reference": "She fixed his bike"},
        {"input": "say:The weather is nice", "reference": "The weather is nice"},
        {"input": "say:Ada grew apples", "reference": "Ada grew apples"},
    ]
    ref = dataset(live, rows)
    fruit = {"name": "fruit", "pairs": [["apples", "pears"]]}  # the caller's own list, in the files' format
    spec = {
        "dataset": ref,
        "target": {"model": "ev-model"},
        "evaluators": ["exact_match"],
        "bias": {"lists": ["gender"], "terms": [fruit], "fields": ["input"]},
    }
    run = finished(live, start(live, spec)["id"])
    assert run["kind"] == "bias" and run["status"] == "succeeded", run
    bias = run["summary"]["bias"]
    assert bias["counterfactual_rows"] == 3  # the weather row has nothing to swap
    swapped = [r for r in rows_of(live, run["id"]) if "_counterfactual_of" in r["inputs"]]
    assert {r["output"] for r in swapped} == {"She is a great engineer", "He fixed her bike", "Ada grew pears"}
    # the swapped answer no longer matches the unswapped reference: exact match drops by 1 on each pair
    (metric,) = [m for m in bias["metrics"] if m["name"] == "exact_match"]
    assert metric["mean_difference"] == pytest.approx(-1.0)
    assert bias["outputs_changed"] == 3
    assert run["summary"]["scores"]["exact_match"]["n"] == 4  # aggregates count the original rows only
    bad = {**spec, "bias": {"terms": [{"name": "x", "pairs": [["lonely"]]}]}}
    with live.client() as c:
        r = c.post("/api/evals/runs", json=bad)
    assert r.status_code == 400 and "pairs[0]" in r.json()["error"]["message"]


def test_online_evaluation_scores_a_sample_of_traffic_and_never_judges_its_own_calls(
    live: LiveServer, fake: EvalFake
) -> None:
    judge_rules(fake)
    key = project_key(live, "ev-online")
    with live.client(key) as c:
        r = c.put(
            "/api/evals/online/quality",
            json={
                "route": "ev-model",
                "sample_rate": 1.0,
                "judge": "ev-judge",
                "evaluators": [GEVAL, {"type": "refusal"}],
            },
        )
        assert r.status_code == 200, r.text
        bad = c.put("/api/evals/online/bad", json={"evaluators": ["exact_match"]})
        assert bad.status_code == 400 and "reference" in bad.text
        ids = []
        for text in ("say:Happy to help with your order.", "say:I'm sorry, but I can't help with that."):
            resp = c.post(
                "/v1/chat/completions", json={"model": "ev-model", "messages": [{"role": "user", "content": text}]}
            )
            assert resp.status_code == 200
            ids.append(resp.headers["x-podium-trace-id"])
        deadline = time.monotonic() + 10
        swept = {"scored": 0}
        while swept["scored"] < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
            swept = c.post("/api/evals/online/quality/sweep").json()
        assert swept["scored"] == 2, swept
        for trace_id, refused in zip(ids, (0.0, 1.0), strict=True):
            listed = c.get("/api/scores", params={"trace_id": trace_id}).json()
            got = {s["name"]: s["value"] for s in listed["scores"]}
            assert {s["source"] for s in listed["scores"]} == {"evaluator"}
            assert got["quality"] == pytest.approx(0.7) and got["refusal"] == refused
        # the judge's calls are traced as evaluation calls, and a later sweep does not judge them
        deadline = time.monotonic() + 10
        judged: list[Any] = []
        while not judged and time.monotonic() < deadline:  # the trace writer flushes a moment later
            judged = c.get("/api/traces", params={"source": "eval", "model": "ev-judge"}).json()["traces"]
            time.sleep(0.1)
        assert judged
        time.sleep(0.2)
        again = c.post("/api/evals/online/quality/sweep").json()
        assert again["considered"] == 0
        rule = c.get("/api/evals/online").json()[0]
        assert rule["traces_scored"] == 2 and rule["errors"] == 0
    env = {"PODIUM_URL": live.url, "PODIUM_API_KEY": key}
    listed = run_cli("eval", "online", "ls", env=env)
    assert listed.returncode == 0 and "quality" in listed.stdout and "route=ev-model" in listed.stdout
    assert run_cli("eval", "online", "rm", "quality", env=env).returncode == 0
    assert json.loads(run_cli("eval", "online", "ls", "--json", env=env).stdout) == []


def test_a_cancelled_run_stops_calling_and_says_so(live: LiveServer, fake: EvalFake) -> None:
    rows = [{"input": "slow:0.2", "reference": "slept"} for _ in range(40)]
    run = start(
        live,
        {
            "dataset": dataset(live, rows),
            "target": {"model": "ev-model"},
            "evaluators": ["exact_match"],
            "concurrency": 1,
            "cache": False,
        },
    )
    deadline = time.monotonic() + 30
    while fake.chat_calls < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with live.client() as c:
        assert c.post(f"/api/jobs/{run['job_id']}/cancel").status_code == 200
    done = finished(live, run["id"])
    assert done["status"] == "cancelled" and done["finished_at"] is not None
    calls = fake.chat_calls
    time.sleep(0.6)
    assert fake.chat_calls == calls < 40  # nothing more is called once the run is cancelled


def test_runs_belong_to_a_project_and_viewers_cannot_start_them(live: LiveServer) -> None:
    owner = project_key(live, "ev-owner")
    ref = dataset(live, QA, key=owner)
    run = finished(
        live,
        start(live, {"dataset": ref, "target": {"model": "ev-model"}, "evaluators": ["exact_match"]}, owner)["id"],
        owner,
    )
    other = project_key(live, "ev-other")
    viewer = project_key(live, "ev-owner", role="viewer")
    with live.client(other) as c:
        assert c.get(f"/api/evals/runs/{run['id']}").status_code == 404
        assert all(r["id"] != run["id"] for r in c.get("/api/evals/runs").json())
        # another project's dataset is not found either
        r = c.post(
            "/api/evals/runs", json={"dataset": ref, "target": {"model": "ev-model"}, "evaluators": ["exact_match"]}
        )
        assert r.status_code == 404
    with live.client(viewer) as c:
        assert c.get(f"/api/evals/runs/{run['id']}").status_code == 200
        r = c.post(
            "/api/evals/runs", json={"dataset": ref, "target": {"model": "ev-model"}, "evaluators": ["exact_match"]}
        )
        assert r.status_code == 403


@pytest.fixture
def sdk_to_live(live: LiveServer) -> Iterator[None]:
    podium.configure(url=live.url, api_key=live.admin_key)
    yield
    podium.flush(10)
    sdkconfig.reset()  # later modules' clients resolve their server from the environment again


@pytest.mark.usefixtures("sdk_to_live")
def test_the_sdk_runs_a_python_callable_with_a_custom_evaluator(live: LiveServer) -> None:
    ref = dataset(live, QA)

    def app(row: dict[str, Any]) -> str:
        if "Everest" in row["reference"]:
            raise RuntimeError("no idea")
        return str(row["input"])[4:].upper()

    @podium.evals.evaluator("shouting")
    def shouting(sample: podium.evals.Sample) -> bool:
        """Whether the answer is all capitals."""
        return bool(sample.output) and sample.output == (sample.output or "").upper()

    run = podium.evals.run(ref, app, ["normalized_match", shouting], url=live.url, api_key=live.admin_key)
    assert run.status == "succeeded"
    assert run.info["failed_rows"] == 1 and run.info["target_label"] == "app"
    rows = run.rows()
    assert rows[0]["scores"] == {"normalized_match": 1.0, "shouting": 1.0}
    assert rows[3]["status"] == "failed" and "no idea" in rows[3]["error"]
    # each row ran inside a trace of its own, which the row links to
    trace = stored_trace(live, rows[0]["trace_id"])
    assert trace["source"] == "sdk" and "Paris" in json.dumps(trace)
    assert stored_trace(live, rows[3]["trace_id"])["id"] == rows[3]["trace_id"]
    assert run.scores["normalized_match"]["mean"] == pytest.approx(1 / 3)
    assert math.isfinite(run.scores["shouting"]["mean"])
    with pytest.raises(podium.core.errors.InvalidInput):  # type: ignore[attr-defined]
        podium.evals.run(ref, "ev-model", [shouting], url=live.url, api_key=live.admin_key)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_rag_metrics_pairwise_and_embeddings_score_known_judge_answers(live: LiveServer, fake: EvalFake) -> None:
    from .evalfake import _vector

    fake.rules[:] = [
        Rule("List every factual claim", "1. Paris is the capital of France\n2. Paris has ten million people"),
        Rule("Is each claim supported", "1: yes\n2: no"),
        Rule("Is each passage useful", "1: no\n2: yes"),
        Rule("Can each statement be attributed", "1: yes\n2: no"),
        Rule("different questions", "1. What is the capital of France?\n2. Which city is the French capital?"),
        Rule("Answer A:\nsay:Paris", "A"),  # the output first: it wins
        Rule("Answer A:\nLyon", "B"),  # the output second: it wins again
    ]
    rows = [
        {
            "input": "say:Paris",
            "reference": "Lyon",
            "truth": "Paris is the capital. It is in France.",
            "context": ["Lyon is a city in France.", "Paris is the capital of France."],
        }
    ]
    spec = {
        "dataset": dataset(live, rows),
        "target": {"model": "ev-model"},
        "judge": "ev-judge",
        "embedder": "ev-embed",
        "evaluators": [
            "faithfulness",
            {"type": "context_precision", "name": "precision"},
            "answer_relevance",
            {"type": "pairwise", "against": "reference"},
            "embedding_similarity",
        ],
    }
    run = finished(live, start(live, spec)["id"])
    assert run["status"] == "succeeded" and run["evaluator_errors"] == 0, run
    (row,) = rows_of(live, run["id"])
    scores = row["scores"]
    assert scores["faithfulness"] == pytest.approx(0.5)
    assert "ten million" in row["details"]["faithfulness"]["explanation"]
    assert scores["precision"] == pytest.approx(0.5)  # the useful passage second: AP = (1/2) / 1
    assert scores["pairwise"] == 1.0 and row["details"]["pairwise"]["label"] == "win"
    questions = ["What is the capital of France?", "Which city is the French capital?"]
    expected = sum(_cosine(_vector("say:Paris"), _vector(q)) for q in questions) / 2
    assert scores["answer_relevance"] == pytest.approx(expected)
    assert scores["embedding_similarity"] == pytest.approx(_cosine(_vector("Paris"), _vector("Lyon")))

    # context recall reads the reference; a judge that favours the first position splits its verdict: a tie
    fake.rules[:] = [Rule("Can each statement be attributed", "1: yes\n2: no"), Rule("Reply with exactly one of", "A")]
    recall = {
        **spec,
        "fields": {"reference": "truth"},
        "evaluators": ["context_recall", {"type": "pairwise", "against": "reference"}],
    }
    run = finished(live, start(live, recall)["id"])
    (row,) = rows_of(live, run["id"])
    assert row["scores"]["context_recall"] == pytest.approx(0.5)
    assert row["scores"]["pairwise"] == 0.5 and row["details"]["pairwise"]["label"] == "tie"


def test_a_prompt_version_is_rendered_with_each_row_and_linked_on_the_trace(live: LiveServer, fake: EvalFake) -> None:
    name = _name("evp")
    with live.client() as c:
        r = c.post(
            "/api/prompts",
            json={"name": name, "template": "say:{{ city }} is lovely", "variables": {"city": "string"}},
        )
        assert r.status_code == 201, r.text
    rows = [{"city": "Paris", "reference": "Paris is lovely"}, {"city": "Rome", "reference": "Rome is lovely"}]
    ref = dataset(live, rows)
    spec = {
        "dataset": ref,
        "target": {"type": "prompt", "prompt": f"{name}@1", "model": "ev-model"},
        "evaluators": ["exact_match"],
    }
    run = finished(live, start(live, spec)["id"])
    assert run["summary"]["scores"]["exact_match"]["mean"] == 1.0
    assert run["target_label"] == f"{name}@1 on ev-model"
    got = rows_of(live, run["id"])
    with live.client() as c:
        spans = c.get(f"/api/traces/{got[0]['trace_id']}/spans").json()["spans"]
        assert spans[0]["prompt_version_id"] is not None
        # a dataset without the prompt's variable is refused, naming it
        bad = c.post("/api/evals/runs", json={**spec, "dataset": dataset(live, [{"town": "Oslo"}])})
    assert bad.status_code == 400 and "city" in bad.json()["error"]["message"]
