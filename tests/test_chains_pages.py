"""The chain pages in headless Chromium: the list with labels and the approval count; a chain's graph drawn as
a diagram (a box per top-level step in dependency order, nested steps inside their container, an arrow per
dependency), its YAML, versions and runs; a run's step timeline with a failed step's error, its output shown
as text (HTML in it never runs) and its trace link; and the approval queue, where approving from the page lets
a waiting agent call its tool. Data is made through the real API on a live server whose chat route calls a
scripted upstream that can call tools; SQLite alone (the services run on both databases in test_chains.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from podium.gateway.table import RouteTable

from .browser import sign_in
from .conftest import LiveServer, serve_for_module
from .evalfake import EvalFake, Rule, start_eval_fake

pytestmark = pytest.mark.browser

CHAT = "chp-chat"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
CHAIN = f"""
description: a chain of every shape
inputs: {{text: string}}
steps:
  - id: words
    type: transform
    expression: "inputs.text.split()"
  - id: sizes
    type: map
    over: steps.words
    step: {{id: size, type: transform, expression: "item | length"}}
  - id: pick
    type: branch
    value: "'long' if steps.sizes | max > 4 else 'short'"
    cases:
      long: {{id: long_note, type: transform, expression: "'long words'"}}
    default: {{id: short_note, type: transform, expression: "'short words'"}}
  - id: both
    type: parallel
    steps:
      - {{id: echo, type: llm, model: {CHAT}, input: "say:{{{{ inputs.text }}}}"}}
      - id: html
        type: transform
        expression: |-
          '{XSS}'

output: "{{'note': steps.pick, 'echo': steps.both.echo, 'html': steps.both.html}}"
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("chain-pages")
    for live in serve_for_module("sqlite", folder, tool_modules=["tests.chain_tools"]):
        with live.client() as c:
            deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": CHAT}
            assert c.post("/api/routes", json={"name": CHAT, "deployments": [deployment]}).status_code == 201
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


def api(live: LiveServer, method: str, path: str, **kw: Any) -> Any:
    with live.client() as c:
        r = c.request(method, path, timeout=60, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def test_a_chain_its_graph_versions_and_runs(live: LiveServer, page: Page) -> None:
    api(live, "POST", "/api/chains/shapes/versions", json={"source": CHAIN, "message": "first"})
    api(live, "PUT", "/api/chains/shapes/labels/prod", json={"version": 1})
    ok = api(live, "POST", "/api/chains/shapes/run", json={"inputs": {"text": "tiny enormous"}})
    assert ok["status"] == "ok", ok
    failing = CHAIN.replace("item | length", "item | length / 0")
    api(live, "POST", "/api/chains/shapes/versions", json={"source": failing, "message": "second"})
    failed = api(live, "POST", "/api/chains/shapes/run", json={"inputs": {"text": "a b"}})
    assert failed["status"] == "error"

    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/chains")
    row = page.locator("tr.chain-row[data-chain=shapes]")
    expect(row.locator("[data-col=latest]")).to_have_text("v2")
    expect(row.locator("[data-col=steps]")).to_have_text("4")
    expect(row.locator("[data-label=prod]")).to_have_text("prod → v1")

    row.locator("a").click()
    expect(page.locator("#chain-name")).to_have_text("shapes")
    graph = page.locator("#chain-graph")
    expect(graph.locator("g.node")).to_have_count(4)
    # columns follow the dependencies: words, then sizes, then pick; both depends on nothing
    x = {
        s: graph.locator(f"g.node[data-step={s}]").get_attribute("transform")
        for s in ("words", "sizes", "pick", "both")
    }
    col = {s: float(str(t).split("(")[1].split(",")[0]) for s, t in x.items()}
    assert col["words"] == col["both"] < col["sizes"] < col["pick"]
    expect(graph.locator("path.edge[data-from=words][data-to=sizes]")).to_have_count(1)
    expect(graph.locator("path.edge[data-from=sizes][data-to=pick]")).to_have_count(1)
    expect(graph.locator("g.node[data-step=pick] [data-child=long_note]")).to_have_text(
        "case long: long_note (transform)"
    )
    expect(graph.locator("g.node[data-step=both] [data-child=echo]")).to_have_text("together: echo (llm)")
    page.locator("#source summary").click()
    expect(page.locator("#source pre")).to_contain_text("item | length / 0")
    page.select_option("#version-form select", "1")
    expect(page.locator("#source pre")).not_to_contain_text("/ 0")
    expect(page.locator("tr.version-row")).to_have_count(2)
    expect(page.locator("tr.run-row")).to_have_count(2)

    page.locator(f"tr.run-row[data-run={failed['id']}] a").first.click()
    expect(page.locator("#run-status [data-status]")).to_have_text("error")
    expect(page.locator("#run-error")).to_contain_text("size[0]")
    expect(page.locator(".step-lane[data-step='size[0]']")).to_have_attribute("data-status", "error")
    expect(page.locator(".step-error[data-step='size[0]']")).to_contain_text("division by zero")

    page.goto(live.url + f"/chains/shapes/runs/{ok['id']}")
    expect(page.locator(".step-lane")).to_have_count(
        9
    )  # words, size[0], size[1], sizes, long_note, pick, echo, html, both
    expect(page.locator("#run-output")).to_contain_text('"note": "long words"')
    expect(page.locator("#run-output")).to_contain_text("<script>window.__pwned = 1</script>")  # text, not markup
    assert page.evaluate("window.__pwned") is None
    page.locator("#trace-link").click()
    expect(page).to_have_url(live.url + f"/traces/{ok['trace_id']}")


def test_the_approval_queue_lets_a_waiting_agent_call_its_tool(live: LiveServer, fake: EvalFake, page: Page) -> None:
    from . import chain_tools

    fake.rules += [
        Rule("refund order P-1", "", tool_calls=[{"name": "refund", "arguments": {"order_id": "P-1", "amount": 3}}]),
        Rule('"refunded":3', "Refunded 3.", after_tool=True),
    ]
    source = f"""
inputs: {{question: string}}
steps:
  - {{id: agent, type: agent, model: {CHAT}, input: "{{{{ inputs.question }}}}", tools: [refund], timeout: 60}}
"""
    api(live, "POST", "/api/chains/refunder/versions", json={"source": source})
    chain_tools.CALLS.clear()
    results: list[Any] = []
    worker = threading.Thread(
        target=lambda: results.append(
            api(live, "POST", "/api/chains/refunder/run", json={"inputs": {"question": "refund order P-1"}})
        )
    )
    worker.start()
    deadline = time.monotonic() + 20
    while not api(live, "GET", "/api/chain-approvals"):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/chains")
    expect(page.locator("#pending-count")).to_have_text("1 waiting")
    page.locator("#approvals-link").click()
    row = page.locator("tr.approval-row[data-tool=refund]")
    expect(row).to_contain_text('"order_id": "P-1"')
    assert chain_tools.CALLS == []
    row.locator("input[name=comment]").fill("fine by me")
    row.locator("button.approve").click()
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(page.locator("tr.decided-row").first).to_contain_text("fine by me")
    worker.join(30)
    assert results and results[0]["status"] == "ok" and results[0]["output"] == "Refunded 3."
    assert ("refund", {"order_id": "P-1", "amount": 3.0}) in chain_tools.CALLS
