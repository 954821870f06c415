"""The monitoring pages in headless Chromium, over traces made for real (gateway calls to a local upstream,
traces sent to the ingestion API, scores posted to the API): the Overview's headline figures (against the
window before) and its charts; the Monitors page with a chart per monitor and per score name, filtered by
route and grouped by prompt version; a bad filter named on the page; another project's viewer seeing none of
these figures; a hostile prompt name shown as text. SQLite alone: the pages read the service the API tests
cover on both databases."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import openai
import pytest
from playwright.sync_api import Page, expect

from podium.core.db import utcnow
from podium.tracing.writer import TraceWriter

from .browser import sign_in
from .conftest import LiveServer, project_key, serve_for_module
from .fakes import start_fake_openai

pytestmark = [pytest.mark.browser]

XSS = '<img src=x onerror="window.__pwned = 1">@1'


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_for_module("sqlite", tmp_path_factory.mktemp("monitor-pages"))


@pytest.fixture(scope="module")
def traffic(live: LiveServer) -> Iterator[dict[str, Any]]:
    """Gateway calls on two routes (one blocked, one refused), ingested traces of two prompt versions (one
    named with markup), scores; rolled."""
    fake = start_fake_openai()
    dep = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": "up-a"}
    guard = {"type": "regex_deny", "on": "request", "patterns": ["forbidden"], "message": "no"}
    with live.client() as c:
        assert c.post("/api/routes", json={"name": "pages-main", "deployments": [dep]}).status_code == 201
        body = {"name": "pages-guarded", "deployments": [dep], "guardrails": [guard]}
        assert c.post("/api/routes", json=body).status_code == 201
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=live.admin_key, max_retries=0)
    for model, text in [("pages-main", "hi"), ("pages-main", "there"), ("pages-guarded", "a forbidden thing"),
                        ("pages-guarded", "I'm sorry, but I can't help")]:  # fmt: skip
        with contextlib.suppress(openai.BadRequestError):
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    fake.stop()
    now = utcnow()
    ids = []
    for prompt in ("faq@1", "faq@2", "faq@2", XSS):
        tid = "pg-" + uuid.uuid4().hex[:12]
        span = {
            "id": f"{tid}-r",
            "trace_id": tid,
            "name": "answer",
            "model": "m-ingested",
            "start_time": now.isoformat(),
            "end_time": (now + timedelta(milliseconds=120)).isoformat(),
            "output": "fine",
            "metadata": {"prompt": prompt},
        }
        with live.client() as c:
            assert c.post("/api/traces/ingest", json={"spans": [span]}).status_code == 202
        ids.append(tid)
    assert live.app.state.runtime.get(TraceWriter).flush(10)
    with live.client() as c:
        for tid, value in zip(ids, (0.2, 0.4, 0.6, 0.1), strict=True):
            r = c.post("/api/scores", json={"trace_id": tid, "name": "faithfulness", "value": value})
            assert r.status_code == 201, r.text
    from podium.monitors.roller import roll

    roll(live.platform.db, now=utcnow() + timedelta(seconds=30))
    yield {"ids": ids}


def test_overview_headline_figures_and_charts(live: LiveServer, traffic: dict[str, Any], page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    # the landing page shows the last day's headline figures and leads to the charts
    expect(page.locator("#monitor-figures [data-metric=requests] .big")).to_have_text("8")
    expect(page.locator("#monitor-figures [data-metric=block_rate] .big")).to_have_text("12.5%")
    page.click("a[href='/overview']")
    page.goto(live.url + "/overview?range=1h")
    expect(page.locator("h1")).to_have_text("Monitoring overview")
    requests = page.locator("#headline [data-metric=requests]")
    assert float(requests.get_attribute("data-current") or 0) == 8  # 4 gateway calls, 4 ingested traces
    assert requests.get_attribute("data-previous") == ""  # nothing in the hour before
    block = page.locator("#headline [data-metric=block_rate]")
    assert float(block.get_attribute("data-current") or 0) == pytest.approx(1 / 8)
    expect(block.locator(".big")).to_have_text("12.5%")
    faith = page.locator('#headline [data-metric="score:faithfulness"]')
    assert float(faith.get_attribute("data-current") or 0) == pytest.approx(0.325)
    for key in ("requests", "cost_usd", "error_rate", "latency", "block_rate", "refusal_rate", "score-faithfulness"):
        expect(page.locator(f"figure.chart[data-chart='{key}']")).to_be_visible()
    routes = page.locator("figure.chart[data-chart=requests] g.series")
    names = {routes.nth(i).get_attribute("data-series") for i in range(routes.count())}
    assert {"pages-main", "pages-guarded"} <= names
    refusal = page.locator("#headline [data-metric=refusal_rate]")
    assert float(refusal.get_attribute("data-current") or 0) == pytest.approx(1 / 7)  # 1 of 7 answers
    expect(page.locator("figure.chart[data-chart=refusal_rate] circle").first).to_be_attached()
    assert page.evaluate("window.__pwned") is None


def test_monitors_page_filters_groups_and_names_bad_input(
    live: LiveServer, traffic: dict[str, Any], page: Page
) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/monitors?range=1h")
    expect(page.locator("h1")).to_have_text("Monitors")
    for name in ("requests", "error_rate", "latency_p95_ms", "block_rate", "refusal_rate", "score:faithfulness"):
        expect(page.locator(f"figure.chart[data-chart='{name}']")).to_have_count(1)
    # group by prompt version, ingested traces only
    page.fill("input[name=model]", "m-ingested")
    page.select_option("select[name=by]", "prompt")
    page.select_option("select[name=bucket]", "day")  # one point per group
    page.click("#monitor-filters button[type=submit]")
    expect(page.locator("#monitor-window")).to_contain_text("a line per prompt")
    faith = page.locator("figure.chart[data-chart='score:faithfulness']")
    expect(faith.locator("g.series[data-series='faq@2'] circle")).to_have_attribute("data-value", "0.5")
    legend = faith.locator(".legend")
    expect(legend).to_contain_text(XSS)  # the markup is text
    assert page.evaluate("window.__pwned") is None
    requests = page.locator("figure.chart[data-chart=requests]")
    expect(requests.locator("g.series[data-series='faq@1'] rect")).to_have_attribute("data-value", "1.0")
    # a bad filter is named on the page
    page.goto(live.url + "/monitors?range=1h&project=no-such-project")
    expect(page.locator("p.error")).to_have_attribute("data-field", "project")
    expect(page.locator("input[name=project]")).to_have_attribute("aria-invalid", "true")


def test_another_projects_viewer_sees_none_of_these_figures(
    live: LiveServer, traffic: dict[str, Any], page: Page
) -> None:
    viewer = project_key(live, "pages-other", role="viewer")
    sign_in(page, live.url, viewer)
    page.goto(live.url + "/overview?range=1h")
    assert page.locator("#headline [data-metric=requests]").get_attribute("data-current") == ""
    expect(page.locator("figure.chart[data-chart=requests]")).to_contain_text("No data in this range.")
    page.goto(live.url + "/monitors?range=1h&by=route")
    assert "pages-main" not in page.content()
