"""The eval pages in headless Chromium: the runs list (status, target, dataset version, rows, scores with
intervals, the gate; a form and a link comparing two runs); a run's page (figures, each score's mean and
95% interval as a table and an SVG chart, the gate's checks with a FAIL, evaluator errors with the judge's raw
answer, the bias test, a link to each row's trace) and its rows (paging forward and back, the failed-only
filter); two runs compared (per score wins, losses, ties and the p value, charts of both means and of the
outcomes, regressed rows first and highlighted); HTML in a model's output shown as text and never run; unknown
runs, bad parameters and another project's runs answered with the normal error page. Data is made through
the real API on a live server whose routes call a scripted OpenAI-compatible upstream."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from podium.core.money import format_micros
from podium.gateway.table import RouteTable

from .browser import sign_in
from .conftest import LiveServer, serve_for_module, sign_in_http
from .evalfake import EvalFake, Rule, start_eval_fake

pytestmark = pytest.mark.browser

SUITE = "ep-suite"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold claim</b>'
RAW = "Excellent <i>work</i>!"  # the judge's answer: no score in it, and HTML to be shown as text
STEPS = "1. Read the question\n2. Check the answer is correct\n3. Check it is polite"
GEVAL = {"type": "geval", "name": "quality", "criteria": "The answer is correct and polite.", "threshold": 0.5}
XSS_ROW, FAIL_ROW, ROWS = 28, 29, 30


def qa_rows() -> list[dict[str, Any]]:
    """30 rows: 28 the fake answers word for word (`say:answer N`), one whose answer is HTML with a script, and
    one the upstream fails (HTTP 500)."""
    rows = [{"input": f"say:answer {i}", "reference": f"answer {i}"} for i in range(XSS_ROW)]
    rows.append({"input": "say:" + XSS, "reference": "a safe answer"})
    rows.append({"input": "fail:500", "reference": "anything"})
    return rows


BIAS_ROWS = [
    {"input": "say:He is a great engineer", "reference": "He is a great engineer"},
    {"input": "say:She fixed his bike", "reference": "She fixed his bike"},
    {"input": "say:The weather is nice", "reference": "The weather is nice"},
]


def api(live: LiveServer, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
    with live.client(key) as c:
        r = c.request(method, path, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def dataset(live: LiveServer, name: str, rows: list[dict[str, Any]]) -> str:
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    with live.client() as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    assert r.status_code == 201, r.text
    return f"{name}@1"


def start(live: LiveServer, spec: dict[str, Any]) -> dict[str, Any]:
    with live.client() as c:
        r = c.post("/api/evals/runs", json=spec)
    assert r.status_code == 202, r.text
    return dict(r.json())


def finished(live: LiveServer, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    with live.client() as c:
        while True:
            run = c.get(f"/api/evals/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return dict(run)
            assert time.monotonic() < deadline, run
            time.sleep(0.1)


def rows_of(live: LiveServer, run_id: str) -> list[dict[str, Any]]:
    return list(api(live, "GET", f"/api/evals/runs/{run_id}/rows", params={"limit": 500})["rows"])


@dataclass(frozen=True)
class World:
    live: LiveServer
    dataset: str  # `name@1`
    baseline: dict[str, Any]
    candidate: dict[str, Any]
    bias: dict[str, Any]


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    """Pages read through the same services on every database: the browser tests run on SQLite only. Routes
    `ev-model` and `ev-judge` call the scripted upstream."""
    for live in serve_for_module("sqlite", tmp_path_factory.mktemp("eval-pages")):
        with live.client() as c:
            for name in ("ev-model", "ev-judge"):
                deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": name}
                r = c.post("/api/routes", json={"name": name, "deployments": [deployment]})
                assert r.status_code == 201, r.text
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


@pytest.fixture(scope="module")
def world(sqlite_server: LiveServer, fake: EvalFake) -> World:
    """Three finished runs: the baseline over 30 rows (exact match and token F1, gate passed); the candidate
    over the same rows with a system prompt, where the upstream now answers rows 3 and 7 wrongly and the judge
    answers without a score (gate failed: exact match below 0.99); and a bias run over another dataset."""
    live = sqlite_server
    ref = dataset(live, "ep-qa", qa_rows())
    common = {"name": SUITE, "dataset": ref, "evaluators": ["exact_match", "token_f1"], "concurrency": 4}
    baseline = finished(
        live,
        start(
            live,
            {**common, "target": {"model": "ev-model"}, "thresholds": [{"score": "exact_match", "min": 0.5}]},
        )["id"],
    )
    fake.rules[:] = [
        Rule("short evaluation steps", STEPS),
        Rule("Reply with the number only", RAW),
        Rule("say:answer 3", "wrong"),
        Rule("say:answer 7", "the answer 7 maybe"),
    ]
    candidate = finished(
        live,
        start(
            live,
            {
                **common,
                "evaluators": ["exact_match", "token_f1", GEVAL],
                "judge": "ev-judge",
                "target": {"model": "ev-model", "system": "be brief"},
                "thresholds": [{"score": "exact_match", "min": 0.99}, {"score": "token_f1", "min": 0.5}],
            },
        )["id"],
    )
    fake.rules.clear()
    bias = finished(
        live,
        start(
            live,
            {
                "name": "ep-bias",
                "dataset": dataset(live, "ep-people", BIAS_ROWS),
                "target": {"model": "ev-model"},
                "evaluators": ["exact_match"],
                "bias": {"lists": ["gender"], "fields": ["input"]},
            },
        )["id"],
    )
    for run in (baseline, candidate, bias):
        assert run["status"] == "succeeded", run
    assert baseline["summary"]["passed"] is True and candidate["summary"]["passed"] is False
    assert (candidate["failed_rows"], candidate["evaluator_errors"]) == (1, ROWS - 1)
    return World(live, ref, baseline, candidate, bias)


def run_row(page: Page, run_id: str) -> Any:
    return page.locator(f"tr.run-row[data-run='{run_id}']")


def shown_indices(page: Page) -> list[int]:
    return [int(r.get_attribute("data-index") or -1) for r in page.locator("#rows tr.result-row").all()]


# --- the list ---------------------------------------------------------------------------------------


def test_the_list_shows_each_run_with_status_rows_scores_and_gate(world: World, page: Page) -> None:
    live, base, cand = world.live, world.baseline, world.candidate
    sign_in(page, live.url, live.admin_key)
    page.click("nav >> text=Evals")
    page.wait_for_url(re.compile(r"/evals$"))
    rows = page.locator("#run-list tr.run-row")
    expect(rows).to_have_count(3)
    # newest first
    assert [r.get_attribute("data-run") for r in rows.all()] == [world.bias["id"], cand["id"], base["id"]]
    for run in (base, cand):
        row = run_row(page, run["id"])
        expect(row.locator("[data-col=name]")).to_contain_text(SUITE)
        expect(row.locator("[data-col=status] .status")).to_have_text("succeeded")
        expect(row.locator("[data-col=rows]")).to_contain_text(f"{ROWS} / {ROWS}")
        expect(row.locator("[data-col=failed]")).to_have_text("1 failed")
        em = run["summary"]["scores"]["exact_match"]
        chip = row.locator(".score-chip[data-score=exact_match]")
        expect(chip).to_contain_text(f"{em['mean']:.3f}")
        expect(chip.locator(".ci")).to_have_text(f"[{em['low']:.3f}, {em['high']:.3f}]")
    expect(run_row(page, base["id"]).locator("[data-col=target]")).to_have_text(base["target_label"])
    expect(run_row(page, base["id"]).locator("[data-gate]")).to_have_text("gate passed")
    expect(run_row(page, cand["id"]).locator("[data-gate]")).to_have_text("gate FAILED")
    expect(run_row(page, world.bias["id"]).locator("[data-gate]")).to_have_text("—")  # no thresholds
    # the dataset cell links to the exact version evaluated
    link = run_row(page, base["id"]).locator("[data-col=dataset] a")
    expect(link).to_have_text(world.dataset)
    expect(link).to_have_attribute("href", f"/datasets/ep-qa/{base['dataset_version_id']}")
    link.click()
    page.wait_for_url(re.compile(r"/datasets/ep-qa/dsv_"))
    expect(page.locator("#version-title")).to_have_text("v1")
    # filtered by name
    page.goto(f"{live.url}/evals?name={SUITE}")
    expect(page.locator("#run-list tr.run-row")).to_have_count(2)
    page.goto(f"{live.url}/evals?name=ep-nosuch")
    expect(page.locator("#run-list tr.run-row")).to_have_count(0)
    expect(page.locator("#run-list")).to_contain_text("No runs named “ep-nosuch”")


# --- one run -----------------------------------------------------------------------------------------


def test_the_run_page_shows_figures_scores_with_intervals_a_chart_and_the_failed_gate(world: World, page: Page) -> None:
    live, cand = world.live, world.candidate
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/evals")
    run_row(page, cand["id"]).locator("[data-col=name] a").click()
    page.wait_for_url(re.compile(rf"/evals/runs/{cand['id']}$"))
    expect(page.locator("#run-name")).to_have_text(SUITE)
    expect(page.locator("[data-figure=progress]")).to_have_text(f"{ROWS} / {ROWS}")
    expect(page.locator("[data-figure=failed]")).to_have_text("1")
    expect(page.locator("[data-figure=evaluator-errors]")).to_have_text(str(ROWS - 1))
    expect(page.locator("[data-figure=model-calls]")).to_have_text(str(cand["model_calls"]))
    expect(page.locator("[data-figure=cost]")).to_have_text(format_micros(cand["cost_micros"]))
    assert cand["model_calls"] >= ROWS  # the target's calls and the judge's
    expect(page.locator("[data-fact=target]")).to_have_text(cand["target_label"])
    expect(page.locator("#dataset-link")).to_have_attribute("href", f"/datasets/ep-qa/{cand['dataset_version_id']}")
    expect(page.locator("[data-fact=dataset]")).to_contain_text(f"(v1, {ROWS} rows)")

    # every score of the summary, with its mean and 95% interval; a chart each
    scores = cand["summary"]["scores"]
    assert set(scores) == {"exact_match", "token_f1"}  # the judge never gave a score
    expect(page.locator("#scores tr.score-row")).to_have_count(2)
    for name, est in scores.items():
        row = page.locator(f"#scores tr.score-row[data-score={name}]")
        expect(row.locator("[data-col=n]")).to_have_text(str(ROWS - 1))
        expect(row.locator("[data-col=mean]")).to_have_text(f"{est['mean']:.3f}")
        expect(row.locator("[data-col=interval]")).to_have_text(f"[{est['low']:.3f}, {est['high']:.3f}]")
        assert est["low"] < est["mean"] < est["high"]
    em = scores["exact_match"]
    assert em["mean"] == pytest.approx((ROWS - 4) / (ROWS - 1))  # rows 3, 7 and the HTML row missed
    chart = page.locator("figure[data-chart='score-exact_match'] svg")
    expect(chart).to_be_visible()
    # the bar runs from 0 to the mean on a 0..1 axis, the whisker from low to high
    bar = chart.locator("rect.bar")
    whisker = chart.locator("g.interval line.whisker").first
    x0, width = float(bar.get_attribute("x") or 0), float(bar.get_attribute("width") or 0)
    x_low, x_high = float(whisker.get_attribute("x1") or 0), float(whisker.get_attribute("x2") or 0)
    ticks = chart.locator("text.axis")
    expect(ticks).to_have_text(["0.00", "0.25", "0.50", "0.75", "1.00"])
    full = width / em["mean"]
    assert (x_low - x0) / full == pytest.approx(em["low"], abs=0.01)
    assert (x_high - x0) / full == pytest.approx(em["high"], abs=0.01)
    assert full == pytest.approx(360 - 14 - 18, abs=0.5)  # the whole plot width is 1.0

    # the gate: one FAIL, one pass
    expect(page.locator(".page-head [data-gate]")).to_have_text("gate FAILED")
    failing = page.locator("#checks tr.check[data-check='exact_match >= 0.99']")
    expect(failing).to_have_attribute("data-passed", "false")
    expect(failing.locator(".verdict-word")).to_have_text("FAIL")
    expect(failing).to_contain_text(f"mean {em['mean']:.4f}")
    passing = page.locator("#checks tr.check[data-check='token_f1 >= 0.5']")
    expect(passing.locator(".verdict-word")).to_have_text("pass")
    expect(page.locator("#evaluators tr[data-evaluator=quality] [data-col=errors]")).to_have_text(str(ROWS - 1))

    # the baseline passed its gate
    page.goto(f"{live.url}/evals/runs/{world.baseline['id']}")
    expect(page.locator(".page-head [data-gate]")).to_have_text("gate passed")
    expect(page.locator("#checks tr.check")).to_have_count(1)
    expect(page.locator("#checks .verdict-word")).to_have_text("pass")


def test_the_rows_page_forward_and_back_and_filter_to_the_failed_ones(world: World, page: Page) -> None:
    live, cand = world.live, world.candidate
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/evals/runs/{cand['id']}")
    assert shown_indices(page) == list(range(25))
    expect(page.locator("#rows-summary")).to_contain_text(f"Rows 1\u201325 of {ROWS}")
    expect(page.locator("#prev-page")).to_have_count(0)
    # each score a column, the verdicts in a cell
    row3 = page.locator("#rows tr.result-row[data-index='3']")
    expect(row3.locator("[data-col=output]")).to_have_text("wrong")
    expect(row3.locator("[data-col=reference]")).to_have_text("answer 3")
    expect(row3.locator("[data-col=input]")).to_have_text("say:answer 3")
    expect(row3.locator("td[data-score=exact_match]")).to_have_text("0.000")
    expect(page.locator("#rows tr.result-row[data-index='0'] td[data-score=exact_match]")).to_have_text("1.000")
    page.click("#next-page")
    page.wait_for_url(re.compile(r"offset=25"))
    assert shown_indices(page) == list(range(25, ROWS))
    expect(page.locator("#next-page")).to_have_count(0)
    failed = page.locator(f"#rows tr.result-row[data-index='{FAIL_ROW}']")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.locator("[data-col=error]")).to_contain_text("500")
    expect(failed.locator("td[data-score=exact_match]")).to_have_text("—")
    page.click("#prev-page")
    page.wait_for_url(re.compile(rf"/evals/runs/{cand['id']}$"))
    assert shown_indices(page) == list(range(25))
    # failed rows only
    page.click("#show-failed")
    page.wait_for_url(re.compile(r"failed=1"))
    assert shown_indices(page) == [FAIL_ROW]
    expect(page.locator("#rows-summary")).to_contain_text("Rows 1\u20131 of 1 failed")
    expect(page.locator("#next-page")).to_have_count(0)
    page.click("#show-all")
    page.wait_for_url(re.compile(rf"/evals/runs/{cand['id']}$"))
    expect(page.locator("#rows tr.result-row")).to_have_count(25)
    # the baseline has no judge: nothing in its verdict cells
    page.goto(f"{live.url}/evals/runs/{world.baseline['id']}?failed=1")
    assert shown_indices(page) == [FAIL_ROW]


def test_a_verdict_cell_shows_the_judges_error_and_raw_answer_and_rows_link_their_traces(
    world: World, page: Page
) -> None:
    live, cand = world.live, world.candidate
    first = rows_of(live, cand["id"])[0]
    assert first["details"]["quality"]["raw"] == RAW and first["trace_id"]
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/evals/runs/{cand['id']}")
    verdict = page.locator("#rows tr.result-row[data-index='0'] .verdict[data-evaluator=quality]")
    expect(verdict.locator("[data-col=verdict-error]")).to_contain_text("the judge's answer has no score")
    verdict.locator("summary").click()
    raw = verdict.locator("pre.raw")
    expect(raw).to_have_text(RAW)
    assert raw.locator("i").count() == 0
    link = page.locator("#rows tr.result-row[data-index='0'] a.trace-link")
    expect(link).to_have_attribute("href", f"/traces/{first['trace_id']}")
    link.click()
    page.wait_for_url(re.compile(rf"/traces/{first['trace_id']}$"))
    expect(page.locator("h1")).to_be_visible()
    # the failed row links to the gateway's trace of its failed call
    failed = next(r for r in rows_of(live, cand["id"]) if r["index"] == FAIL_ROW)
    assert failed["trace_id"] is not None
    page.goto(f"{live.url}/evals/runs/{cand['id']}?failed=1")
    failed_link = page.locator(f"#rows tr.result-row[data-index='{FAIL_ROW}'] a.trace-link")
    expect(failed_link).to_have_attribute("href", f"/traces/{failed['trace_id']}")


def test_the_bias_section_and_counterfactual_rows(world: World, page: Page) -> None:
    live, bias = world.live, world.bias
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/evals/runs/{bias['id']}")
    report = bias["summary"]["bias"]
    assert report["counterfactual_rows"] == 2
    expect(page.locator("[data-figure=counterfactuals]")).to_have_text("2")
    expect(page.locator("[data-figure=progress]")).to_have_text("3 / 3")  # the dataset's rows
    expect(page.locator("[data-figure=swapped-done]")).to_have_text("+2 swapped rows")
    expect(page.locator(".page-head [data-gate]")).to_have_count(0)  # no thresholds, no gate
    expect(page.locator("[data-figure=outputs-changed]")).to_have_text(
        f"{report['outputs_changed']} / {report['outputs_compared']}"
    )
    metric = page.locator("#bias-metrics tr.bias-metric[data-score=exact_match]")
    expect(metric).to_contain_text("-1.000")
    # the swapped rows follow the originals, marked with the row they were made from
    expect(page.locator("#rows tr.result-row")).to_have_count(5)
    expect(page.locator("#rows [data-counterfactual-of]")).to_have_count(2)
    swapped = page.locator("#rows tr.result-row[data-index='3']")
    expect(swapped.locator("[data-counterfactual-of]")).to_have_text("swap of #0")
    expect(swapped.locator("[data-col=output]")).to_have_text("She is a great engineer")


# --- escaping ----------------------------------------------------------------------------------------


def test_html_in_an_output_is_shown_as_text_and_never_run(world: World, page: Page) -> None:
    live, base = world.live, world.baseline
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/evals/runs/{base['id']}?offset=25")
    row = page.locator(f"#rows tr.result-row[data-index='{XSS_ROW}']")
    output = row.locator("[data-col=output]")
    expect(output).to_have_text(XSS)
    expect(row.locator("[data-col=input]")).to_have_text("say:" + XSS)
    assert row.locator("script, img, b").count() == 0
    assert page.evaluate("window.__pwned") is None
    # on the compare page too
    page.goto(f"{live.url}/evals/compare?a={base['id']}&b={world.candidate['id']}")
    cmp_row = page.locator(f"#delta-rows tr.delta-row[data-index='{XSS_ROW}']")
    expect(cmp_row.locator("[data-col=output-a]")).to_have_text(XSS)
    expect(cmp_row.locator("[data-col=output-b]")).to_have_text(XSS)
    assert cmp_row.locator("script, img, b").count() == 0
    assert page.evaluate("window.__pwned") is None
    # the name filter holds what was typed, escaped too
    page.goto(f"{live.url}/evals?name=" + "%22%3E%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E")
    expect(page.locator("#name-filter input[name=name]")).to_have_value('"><script>window.__pwned=3</script>')
    assert page.evaluate("window.__pwned") is None


# --- comparing ---------------------------------------------------------------------------------------


def test_the_compare_page_lists_regressions_first_with_wins_losses_and_ties(world: World, page: Page) -> None:
    live, base, cand = world.live, world.baseline, world.candidate
    cmp = api(live, "GET", "/api/evals/compare", params={"a": base["id"], "b": cand["id"]})
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/evals")
    page.select_option("#compare-a", base["id"])
    page.select_option("#compare-b", cand["id"])
    page.click("#compare-form button[type=submit]")
    page.wait_for_url(re.compile(r"/evals/compare\?a=evr_\w+&b=evr_\w+"))
    expect(page.locator("#sides tr[data-side=a]")).to_have_attribute("data-run", base["id"])
    expect(page.locator("#sides tr[data-side=b]")).to_have_attribute("data-run", cand["id"])
    expect(page.locator("[data-count=paired]")).to_have_text(str(ROWS))
    expect(page.locator("[data-count=regressed]")).to_have_text("2")
    expect(page.locator("[data-count=improved]")).to_have_text("0")

    by_name = {m["name"]: m for m in cmp["metrics"]}
    assert set(by_name) == {"exact_match", "token_f1"}
    expect(page.locator("#metrics tr.metric-row")).to_have_count(2)
    for name, m in by_name.items():
        t = m["test"]
        assert (t["wins"], t["losses"], t["ties"]) == (0, 2, ROWS - 3)
        row = page.locator(f"#metrics tr.metric-row[data-metric={name}]")
        expect(row.locator("[data-col=wins]")).to_have_text("0")
        expect(row.locator("[data-col=losses]")).to_have_text("2")
        expect(row.locator("[data-col=ties]")).to_have_text(str(ROWS - 3))
        expect(row.locator("[data-col=p]")).to_have_text(f"{t['p_value']:.3g}")
        expect(row.locator("[data-col=mean-a]")).to_have_text(f"{t['mean_a']:.3f}")
        expect(row.locator("[data-col=mean-b]")).to_have_text(f"{t['mean_b']:.3f}")
        expect(row.locator("[data-col=delta]")).to_have_text(f"{t['mean_delta']:+.3f}")
        expect(row).to_have_attribute("data-significant", "false")  # two losses in 29 pairs: p = 0.5
    # the charts: B's bar lower than A's; the outcome bar made of 2 losses and 27 ties
    chart = page.locator("figure[data-chart='metric-exact_match'] svg")
    height_a = float(chart.locator("rect.bar[data-side=a]").get_attribute("height") or 0)
    height_b = float(chart.locator("rect.bar[data-side=b]").get_attribute("height") or 0)
    assert 0 < height_b < height_a
    em = by_name["exact_match"]["test"]
    assert height_b / height_a == pytest.approx(em["mean_b"] / em["mean_a"], abs=0.01)
    outcome = page.locator("#outcomes g.outcome-row[data-metric=exact_match]")
    expect(outcome.locator("rect[data-kind=losses]")).to_have_attribute("data-count", "2")
    expect(outcome.locator("rect[data-kind=ties]")).to_have_attribute("data-count", str(ROWS - 3))
    expect(outcome.locator("rect[data-kind=wins]")).to_have_count(0)

    # the rows: regressions first, highlighted, both outputs and the changes
    rows = page.locator("#delta-rows tr.delta-row")
    expect(rows).to_have_count(ROWS)
    assert [int(r.get_attribute("data-index") or -1) for r in rows.all()[:2]] == [3, 7]
    first = rows.nth(0)
    expect(first).to_have_class(re.compile(r"\bregressed\b"))
    expect(first.locator("[data-col=output-a]")).to_have_text("answer 3")
    expect(first.locator("[data-col=output-b]")).to_have_text("wrong")
    expect(first.locator("td[data-col=delta][data-metric=exact_match]")).to_have_text("-1.000")
    expect(first.locator("[data-col=verdict]")).to_contain_text("worse: exact_match, token_f1")
    expect(rows.nth(2)).to_have_attribute("data-verdict", "same")
    expect(page.locator("#delta-rows tr.delta-row.regressed")).to_have_count(2)
    failed = page.locator(f"#delta-rows tr.delta-row[data-index='{FAIL_ROW}']")
    expect(failed.locator("[data-col=output-b] .row-error")).to_contain_text("500")
    expect(failed).to_have_attribute("data-verdict", "unscored")
    # narrowed to the regressions
    page.click("#row-filters a[data-filter=regressed]")
    page.wait_for_url(re.compile(r"only=regressed"))
    expect(rows).to_have_count(2)
    expect(page.locator("#rows-summary")).to_have_attribute("data-selected", "2")


def test_compare_pages_its_rows_and_the_list_links_each_run_to_its_previous_one(world: World, page: Page) -> None:
    live, base, cand = world.live, world.baseline, world.candidate
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/evals")
    expect(run_row(page, base["id"]).locator("a.compare-previous")).to_have_count(0)  # the first of its suite
    run_row(page, cand["id"]).locator("a.compare-previous").click()
    page.wait_for_url(re.compile(rf"/evals/compare\?a={base['id']}&b={cand['id']}$"))
    page.goto(f"{live.url}/evals/compare?a={base['id']}&b={cand['id']}&limit=12")
    indices = [int(r.get_attribute("data-index") or -1) for r in page.locator("#delta-rows tr.delta-row").all()]
    assert len(indices) == 12 and indices[:2] == [3, 7]
    expect(page.locator("#prev-page")).to_have_count(0)
    page.click("#next-page")
    page.wait_for_url(re.compile(r"offset=12"))
    more = [int(r.get_attribute("data-index") or -1) for r in page.locator("#delta-rows tr.delta-row").all()]
    page.click("#next-page")
    page.wait_for_url(re.compile(r"offset=24"))
    last = [int(r.get_attribute("data-index") or -1) for r in page.locator("#delta-rows tr.delta-row").all()]
    assert len(more) == 12 and len(last) == ROWS - 24
    assert sorted(indices + more + last) == list(range(ROWS))
    expect(page.locator("#next-page")).to_have_count(0)
    page.click("#prev-page")
    page.wait_for_url(re.compile(r"offset=12"))
    assert [int(r.get_attribute("data-index") or -1) for r in page.locator("#delta-rows tr.delta-row").all()] == more


# --- errors and tenancy ------------------------------------------------------------------------------


def test_unknown_runs_and_bad_parameters_show_the_error_page(world: World, page: Page) -> None:
    live, base, cand = world.live, world.baseline, world.candidate
    sign_in(page, live.url, live.admin_key)
    response = page.goto(f"{live.url}/evals/runs/evr_nosuch")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Something was not right")
    expect(page.locator(".error")).to_contain_text("eval run 'evr_nosuch' not found")

    with live.client() as c:
        assert sign_in_http(c, live.admin_key).status_code == 303
        c.headers.pop("Authorization")
        for path, status, says in (
            ("/evals/compare", 400, "choose two runs to compare"),
            (f"/evals/compare?a={base['id']}", 400, "choose two runs to compare"),
            (f"/evals/compare?a={base['id']}&b=evr_nosuch", 404, "eval run 'evr_nosuch' not found"),
            (f"/evals/compare?a=evr_nosuch&b={cand['id']}", 404, "eval run 'evr_nosuch' not found"),
            (f"/evals/compare?a={base['id']}&b={cand['id']}&only=bogus", 400, "only must be"),
            (f"/evals/compare?a={base['id']}&b={cand['id']}&limit=0", 400, "limit must be between"),
            (f"/evals/compare?a={base['id']}&b={world.bias['id']}", 400, "different dataset versions"),
        ):
            r = c.get(path)
            assert r.status_code == status, (path, r.status_code)
            text = r.text.replace("&#39;", "'")
            assert "Something was not right" in text and says in text, (path, r.text)
        r = c.get(f"/evals/runs/{cand['id']}?offset=-3")
        assert r.status_code == 400 and "offset must be between" in r.text
        assert 'id="rows-error"' in r.text and 'data-figure="progress"' in r.text  # the run still shows
        r = c.get(f"/evals/runs/{cand['id']}?offset=abc")
        assert r.status_code == 400 and "offset must be a whole number" in r.text.replace("&#39;", "'")


def test_another_projects_viewer_gets_a_404(world: World, page: Page) -> None:
    live, base, cand = world.live, world.baseline, world.candidate
    api(live, "POST", "/api/projects", json={"name": "ep-elsewhere"})
    api(live, "POST", "/api/users", json={"name": "ep-outsider", "role": "viewer", "project": "ep-elsewhere"})
    key = api(live, "POST", "/api/keys", json={"name": "ep-outsider", "user": "ep-outsider", "project": "ep-elsewhere"})
    sign_in(page, live.url, key["key"])
    response = page.goto(f"{live.url}/evals/runs/{cand['id']}")
    assert response is not None and response.status == 404
    expect(page.locator(".error")).to_contain_text(f"eval run '{cand['id']}' not found")
    assert "answer 3" not in page.locator("main").inner_text()
    response = page.goto(f"{live.url}/evals/compare?a={base['id']}&b={cand['id']}")
    assert response is not None and response.status == 404
    assert "wrong" not in page.locator("main").inner_text()
    page.goto(f"{live.url}/evals")
    expect(page.locator("#run-list tr.run-row")).to_have_count(0)
    expect(page.locator("#compare-form")).to_have_count(0)
