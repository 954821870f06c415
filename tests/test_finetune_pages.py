"""The fine-tuning pages in headless Chromium, on real runs of the built-in SmolLM2 (three training steps, two
eval rows answered in eight tokens: a run takes about a minute and a half): the list of blueprints and runs; a
run's stages all done with the gate's check, its loss, learning-rate and tokens/s charts with a point per logged
step, its log and lineage (dataset version, blueprint, eval runs, the registered version, the deployed alias) and
promotion from the page; a run whose gate failed saying why; a blueprint's YAML and plan report and the diff of
two; cancelling a running run from its page; another project's viewer getting a not-found page; and a
blueprint's hostile text (a regex evaluator's pattern) shown as text. The run's job runs inside the in-process
server and spawns the trainer child. SQLite alone: the pages read the same services the API tests cover on both
databases."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .browser import sign_in
from .conftest import (
    LiveServer,
    make_db_url,
    make_settings,
    prepared_platform,
    project_key,
    release_db_url,
    start_server,
)
from .models_fixtures import MODEL_CACHE
from .test_finetune_plan import converted_builtin

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

BASE = "smollm2-135m-instruct"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
NEVER = {"type": "regex", "name": "style", "pattern": "^never matched$"}  # base and tuned both score 0
STAGES = ["prepare", "train", "evaluate", "gate", "register", "deploy"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on SQLite with the built-in model registered and its converted folder in the model cache."""
    folder = tmp_path_factory.mktemp("ft-pages")
    url = make_db_url("sqlite", folder)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PODIUM_") and "TEST" not in k}
    try:
        settings = make_settings(folder / "home", url, model_cache_dir=str(MODEL_CACHE))
        _, key = prepared_platform(settings, builtins=True)
        srv = start_server(settings, key)
    finally:
        os.environ.update(saved)
    converted_builtin(srv)
    yield srv
    srv.stop()
    release_db_url("sqlite", url)


def api(live: LiveServer, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
    with live.client(key) as c:
        r = c.request(method, path, timeout=120, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def upload(live: LiveServer, n: int = 24) -> str:
    name = f"pages-{uuid.uuid4().hex[:6]}"
    rows = [
        {"question": f"Where is my order {i}?", "answer": f"Ticket #{1000 + i}\nOrder {i} ships tomorrow.\n— Support"}
        for i in range(n)
    ]
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    api(live, "POST", f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    return f"{name}@1"


def blueprint(train: str, **over: Any) -> dict[str, Any]:
    bp: dict[str, Any] = {
        "base_model": BASE,
        "data": {"train": train, "prompt_field": "question", "completion_field": "answer"},
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "hyperparameters": {"max_steps": 3, "learning_rate": 1e-3, "batch_size": 4, "max_length": 64},
        "deploy": {"model": f"pages-{uuid.uuid4().hex[:6]}"},
    }
    for key, value in over.items():
        bp[key] = {**bp[key], **value} if isinstance(value, dict) and isinstance(bp.get(key), dict) else value
    return bp


def plan(live: LiveServer, bp: dict[str, Any]) -> dict[str, Any]:
    return dict(api(live, "POST", "/api/finetunes/blueprints/plan", json={"blueprint": bp})["blueprint"])


def start(live: LiveServer, blueprint_id: str) -> str:
    return str(api(live, "POST", "/api/finetunes/runs", json={"blueprint": blueprint_id})["id"])


def wait(live: LiveServer, run_id: str, until: Any = None, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = dict(api(live, "GET", f"/api/finetunes/runs/{run_id}"))
        if until(run) if until is not None else run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not get there in {timeout}s")


def eval_section(train: str) -> dict[str, Any]:
    """Two rows answered in eight tokens by the base and the tuned model; the gate (no worse than the base) passes
    on a score both miss."""
    return {"dataset": train, "limit": 2, "max_new_tokens": 8, "evaluators": [NEVER]}


@pytest.fixture(scope="module")
def done(live: LiveServer) -> dict[str, Any]:
    """A blueprint run to the end (three steps), beside it (the server runs two jobs at once) a run whose gate
    fails (a minimum score neither model reaches), a second blueprint that differs in its learning rate, and the
    training dataset they share."""
    train = upload(live)
    first = plan(live, blueprint(train, eval=eval_section(train)))
    same = {"eval": eval_section(train), "deploy": first["spec"]["deploy"]}
    second = plan(live, blueprint(train, hyperparameters={"learning_rate": 5e-4}, **same))
    strict = plan(live, blueprint(train, eval={**eval_section(train), "min_score": 0.5}))
    run_id, failing_id = start(live, first["id"]), start(live, strict["id"])
    run, failing = wait(live, run_id), wait(live, failing_id)
    assert run["status"] == "succeeded", run
    assert failing["status"] == "failed" and failing["stage"] == "gate", failing
    return {"train": train, "first": first, "second": second, "run": run, "failing": failing}


def test_the_list_shows_blueprints_and_runs(live: LiveServer, done: dict[str, Any], page: Page) -> None:
    first, run = done["first"], done["run"]
    sign_in(page, live.url, live.admin_key)
    page.locator("nav.side a", has_text="Fine-tuning").click()
    expect(page).to_have_url(live.url + "/finetunes")
    row = page.locator(f"tr.blueprint-row[data-blueprint={first['id']}]")
    expect(row.locator("[data-col=base]")).to_have_text(f"{BASE}@1")
    expect(row.locator("[data-col=train]")).to_have_text(done["train"])
    expect(row.locator("[data-col=method]")).to_have_text("lora")
    expect(row.locator("[data-col=estimate]")).to_have_text(re.compile(r"\d+ (s|min)"))
    expect(page.locator(f"tr.blueprint-row[data-blueprint={done['second']['id']}]")).to_have_count(1)
    failed_row = page.locator(f"tr.run-row[data-run={done['failing']['id']}]")
    expect(failed_row.locator("[data-col=status]")).to_have_text("failed")
    expect(failed_row.locator("[data-col=stage]")).to_have_text("gate")
    runs = page.locator("#run-list")
    run_row = runs.locator(f"tr.run-row[data-run={run['id']}]")
    expect(run_row.locator("[data-col=status]")).to_have_text("succeeded")
    expect(run_row.locator("[data-col=stage]")).to_have_text("deploy")
    expect(run_row.locator("[data-col=progress]")).to_have_text("100%")
    run_row.locator("a").first.click()
    expect(page.locator("#run-id")).to_have_text(run["id"])


def test_a_run_page_shows_its_stages_charts_log_lineage_and_promotes(
    live: LiveServer, done: dict[str, Any], page: Page
) -> None:
    run, first = done["run"], done["first"]
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + f"/finetunes/runs/{run['id']}")
    expect(page.locator("#run-status [data-status]")).to_have_text("succeeded")
    for stage in STAGES:
        expect(page.locator(f".stage[data-stage={stage}]")).to_have_attribute("data-status", "done")
    evaluated = run["stages"]["evaluate"]["outputs"]
    expect(page.locator(".stage[data-stage=evaluate] .stage-outputs pre")).to_contain_text(evaluated["tuned_run"])
    expect(page.locator("#gate-summary")).to_contain_text("passed on style: base 0.0, tuned 0.0")
    check = page.locator("#gate-checks tr.check-row")
    expect(check).to_have_count(1)
    expect(check).to_have_attribute("data-passed", "yes")
    expect(check).to_contain_text("style no worse than base")
    # a point per logged step on each telemetry chart, the values the run recorded; no eval loss without eval data
    logged = [m["values"] for m in run["metrics"] if m["kind"] == "train"]
    charts = {"loss": "loss", "learning-rate": "learning_rate", "tokens-per-second": "tokens_per_second"}
    for chart, key in charts.items():
        values = [v[key] for v in logged if key in v]
        assert len(values) >= 2, logged
        figure = page.locator(f"figure[data-chart={chart}]")
        expect(figure.locator("circle")).to_have_count(len(values))
        expect(figure.locator("polyline")).to_have_count(1)
        shown = figure.locator("circle").evaluate_all("cs => cs.map(c => Number(c.dataset.value))")
        assert shown == pytest.approx(values)
        expect(figure.locator("text.axis").last).to_have_text(f"step {max(v['step'] for v in logged)}")
    expect(page.locator("figure[data-chart=loss] g.series")).to_have_count(1)
    expect(page.locator("#run-log")).to_contain_text("stage deploy done")
    # the lineage: dataset version → blueprint → run → eval runs → registered version → alias
    registered = run["stages"]["register"]["outputs"]
    lineage = page.locator("#lineage")
    expect(lineage.locator("[data-eval=base]")).to_have_text(evaluated["base_run"])
    expect(lineage.locator("[data-eval=tuned]")).to_have_text(evaluated["tuned_run"])
    expect(lineage.locator("[data-node=blueprint] a")).to_have_text(first["id"])
    expect(lineage.locator("#model-link")).to_have_text(registered["ref"])
    expect(lineage.locator("#deployed-alias")).to_have_text(f"{registered['model']}@canary → v{registered['version']}")
    expect(page.locator("#registry-lineage pre")).to_contain_text(run["id"])
    expect(page.locator("#cancel-run")).to_have_count(0)
    # promotion from the page moves the model's stable alias to the tuned version
    page.locator("#promote-run").click()
    expect(page.locator("#promoted")).to_contain_text(f"{registered['model']}@stable → v{registered['version']}")
    expect(page.locator("#promote-run")).to_have_count(0)
    model = api(live, "GET", f"/api/models/{registered['model']}")
    assert model["aliases"]["stable"] == registered["version"], model["aliases"]
    # the links lead to the dataset version and the model
    expect(lineage.locator("[data-dataset=eval]")).to_have_text(done["train"])
    lineage.locator("[data-dataset=train]").click()
    expect(page).to_have_url(re.compile(r"/datasets/" + done["train"].split("@")[0] + r"/dsv_"))
    page.go_back()
    lineage.locator("[data-eval=tuned]").click()
    expect(page).to_have_url(live.url + f"/evals/runs/{evaluated['tuned_run']}")
    page.go_back()
    expect(page.locator("#model-link")).to_have_attribute("href", f"/models/{registered['model']}")


def test_a_failed_gate_says_why(live: LiveServer, done: dict[str, Any], page: Page) -> None:
    failing = done["failing"]
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + f"/finetunes/runs/{failing['id']}")
    expect(page.locator("#run-status [data-status]")).to_have_text("failed")
    expect(page.locator("#run-error")).to_contain_text("the gate failed: style >= 0.5 (got 0.0)")
    for stage, status in zip(STAGES, ["done", "done", "done", "failed", "pending", "pending"], strict=True):
        expect(page.locator(f".stage[data-stage={stage}]")).to_have_attribute("data-status", status)
    expect(page.locator(".stage[data-stage=gate] .stage-error")).to_contain_text("nothing was registered")
    expect(page.locator("#gate-summary")).to_contain_text("failed on style")
    expect(page.locator("#gate-checks tr.check-row[data-passed=no]")).to_contain_text("style >= 0.5")
    expect(page.locator("#gate-checks tr.check-row[data-passed=yes]")).to_contain_text("no worse than base")
    expect(page.locator("#lineage [data-node=model]")).to_contain_text("not yet")
    expect(page.locator("#run-actions")).to_have_count(0)


def test_a_blueprint_page_and_the_diff_of_two(live: LiveServer, done: dict[str, Any], page: Page) -> None:
    first, second = done["first"], done["second"]
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + f"/finetunes/blueprints/{first['id']}")
    expect(page.locator("#blueprint-id")).to_have_text(first["id"])
    expect(page.locator("#blueprint-yaml")).to_contain_text("max_steps: 3")
    train_report = page.locator("tr.report-row[data-split=train]")
    expect(train_report.locator("[data-col=rows]")).to_have_text("24")
    expect(train_report.locator("[data-col=longest]")).to_have_text(str(first["report"]["train"]["longest"]))
    expect(train_report.locator("[data-col=truncated]")).to_have_text(str(first["report"]["train"]["truncated"]))
    expect(page.locator("#estimate [data-col=seconds]")).not_to_have_text("—")
    expect(page.locator(f"#blueprint-runs tr.run-row[data-run={done['run']['id']}]")).to_have_count(1)
    page.select_option("#compare-form select[name=b]", second["id"])
    page.locator("#compare-form button").click()
    expect(page).to_have_url(live.url + f"/finetunes/diff?a={first['id']}&b={second['id']}")
    change = page.locator("tr.change-row[data-field='hyperparameters.learning_rate']")
    expect(change.locator("[data-side=a]")).to_have_text("0.001")
    expect(change.locator("[data-side=b]")).to_have_text("0.0005")
    expect(page.locator("tr.change-row")).to_have_count(1)
    expect(page.locator("#unified-diff .removed", has_text="learning_rate")).to_have_text("-  learning_rate: 0.001")
    expect(page.locator("#unified-diff .added", has_text="learning_rate")).to_have_text("+  learning_rate: 0.0005")
    # the same two the other way round, from the diff page's own form
    page.select_option("#diff-form select[name=a]", second["id"])
    page.select_option("#diff-form select[name=b]", first["id"])
    page.locator("#diff-form button").click()
    expect(page.locator("tr.change-row[data-field='hyperparameters.learning_rate'] [data-side=a]")).to_have_text(
        "0.0005"
    )


def test_cancel_a_running_run_from_its_page(live: LiveServer, done: dict[str, Any], page: Page) -> None:
    long = plan(live, blueprint(done["train"], hyperparameters={"max_steps": 50}))
    run_id = start(live, long["id"])
    wait(live, run_id, until=lambda r: any(m["kind"] == "train" for m in r["metrics"]))
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + f"/finetunes/runs/{run_id}?follow=0")  # no reload while clicking
    expect(page.locator("#run-status [data-status]")).to_have_text("running")
    expect(page.locator(".stage[data-stage=train]")).to_have_attribute("data-status", "running")
    expect(page.locator("#promote-run")).to_have_count(0)
    page.locator("#cancel-run").click()
    expect(page).to_have_url(live.url + f"/finetunes/runs/{run_id}")  # back on the page, following it
    expect(page.locator("#run-status [data-status]")).to_have_text("cancelled", timeout=120_000)
    expect(page.locator(".stage[data-stage=train]")).to_have_attribute("data-status", "cancelled")
    expect(page.locator(".stage[data-stage=register]")).to_have_attribute("data-status", "pending")
    expect(page.locator("#cancel-run")).to_have_count(0)
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
    assert api(live, "GET", f"/api/finetunes/runs/{run_id}")["status"] == "cancelled"


def test_another_projects_viewer_gets_not_found(live: LiveServer, done: dict[str, Any], page: Page) -> None:
    outsider = project_key(live, f"other-{uuid.uuid4().hex[:6]}", "viewer")
    sign_in(page, live.url, outsider)
    page.goto(live.url + "/finetunes")
    expect(page.locator("tr.blueprint-row")).to_have_count(0)
    expect(page.locator("tr.run-row")).to_have_count(0)
    for path, what in (
        (f"/finetunes/runs/{done['run']['id']}", done["run"]["id"]),
        (f"/finetunes/blueprints/{done['first']['id']}", done["first"]["id"]),
        (f"/finetunes/diff?a={done['first']['id']}&b={done['second']['id']}", done["first"]["id"]),
    ):
        response = page.goto(live.url + path)
        assert response is not None and response.status == 404, path
        expect(page.locator("[role=alert]")).to_contain_text("not found")
        expect(page.locator("[role=alert]")).to_contain_text(what)
    # a viewer of the run's own project reads it but gets no buttons; cancelling by hand is refused
    viewer = project_key(live, "default", "viewer")
    page.context.clear_cookies()
    sign_in(page, live.url, viewer)
    page.goto(live.url + f"/finetunes/runs/{done['run']['id']}")
    expect(page.locator("#run-status [data-status]")).to_have_text("succeeded")
    expect(page.locator("#run-actions")).to_have_count(0)


def test_a_blueprints_hostile_text_is_shown_as_text(live: LiveServer, done: dict[str, Any], page: Page) -> None:
    evaluator = {"type": "regex", "name": "style", "pattern": XSS, "match": "search"}
    hostile = plan(live, blueprint(done["train"], eval={"dataset": done["train"], "evaluators": [evaluator]}))
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + f"/finetunes/blueprints/{hostile['id']}")
    expect(page.locator("#blueprint-yaml")).to_contain_text("<script>window.__pwned = 1</script>")
    page.goto(live.url + f"/finetunes/diff?a={done['first']['id']}&b={hostile['id']}")
    expect(page.locator("tr.change-row[data-field='eval.evaluators'] [data-side=b]")).to_contain_text(
        "<script>window.__pwned = 1</script><img src=x onerror="
    )
    expect(page.locator("#unified-diff .added", has_text="pattern")).to_contain_text("<script>")
    expect(page.locator("script", has_text="__pwned")).to_have_count(0)
    expect(page.locator("img[src=x]")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None
