"""The trace pages in headless Chromium on SQLite and PostgreSQL: the list's filters, sortable columns and
live tail; a trace's span tree, timeline, chat messages, per-span figures, orphan marker, links and large
payloads fetched on demand; a 10,000-span trace that opens a page of rows at a time and loads a deep span's
details lazily; the metrics charts and per-model table against the aggregate API; invalid filters named in
the page with a 400."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from podium.core.db import utcnow
from podium.tracing.writer import TraceWriter

from .browser import sign_in
from .conftest import LiveServer, sign_in_http

pytestmark = pytest.mark.browser

BIG_DOC = "shipping policy, section " * 2_000  # 50 KB: kept in the artifact store, fetched on demand
GROUPS = 99  # the 10k trace: a root and 99 groups of 101 spans (a group span and 100 below it)
BIG_SPANS = 1 + GROUPS * 101


@dataclass
class Seeded:
    live: LiveServer
    t0: datetime
    model_version_id: str


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


def send(live: LiveServer, spans: list[dict[str, Any]]) -> None:
    with live.client() as c:
        r = c.post("/api/traces/ingest", json={"spans": spans})
    assert r.status_code == 202, r.text
    assert live.app.state.runtime.get(TraceWriter).flush(30)


def chat_trace(t0: datetime, model_version_id: str) -> list[dict[str, Any]]:
    return [
        span(
            "tp-chat",
            "chat-root",
            None,
            t0,
            1200,
            kind="agent",
            trace_name="support-chat",
            user_id="alice",
            session_id="sess-1",
            tags=["support", "vip"],
            input={"question": "Where is my order?"},
            output="It ships tomorrow.",
        ),
        span(
            "tp-chat",
            "chat-search",
            "chat-root",
            t0 + timedelta(milliseconds=20),
            300,
            kind="retriever",
            input="where is my order",
            output=BIG_DOC,
        ),
        span(
            "tp-chat",
            "chat-llm",
            "chat-root",
            t0 + timedelta(milliseconds=400),
            700,
            kind="llm",
            model="model-alpha",
            prompt_tokens=120,
            completion_tokens=30,
            cost_usd=0.0015,
            ttft_ms=80,
            prompt_version_id="prv_test1",
            model_version_id=model_version_id,
            attributes={"temperature": 0.2},
            input=[
                {"role": "system", "content": "You are a support agent."},
                {"role": "user", "content": "Where is my order?"},
            ],
            output={"role": "assistant", "content": "It ships tomorrow."},
        ),
    ]


def big_trace(t0: datetime) -> list[dict[str, Any]]:
    """Root, then groups g00..g98 with 100 spans each below them; g02's 100 form one chain (depths 2-101)."""
    spans = [span("tp-big", "big-root", None, t0, 60_000, kind="agent", trace_name="big-run")]
    at = 0
    for g in range(GROUPS):
        gid = f"g{g:02d}"
        at += 1
        spans.append(span("tp-big", gid, "big-root", t0 + timedelta(milliseconds=at), 500, kind="chain"))
        parent = gid
        for k in range(100):
            at += 1
            sid = f"{gid}-s{k:03d}"
            spans.append(
                span("tp-big", sid, parent, t0 + timedelta(milliseconds=at), 5, kind="tool", input=f"payload-of-{sid}")
            )
            if g == 2:
                parent = sid
    assert len(spans) == BIG_SPANS
    return spans


@pytest.fixture(scope="module")
def seeded(module_server: LiveServer) -> Iterator[Seeded]:
    live = module_server
    with live.client() as c:
        r = c.post(
            "/api/models/remote",
            json={
                "name": "model-alpha",
                "provider": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "upstream_model": "a",
            },
        )
        assert r.status_code == 201, r.text
        mdv = r.json()["id"]
    t0 = utcnow() - timedelta(minutes=50)
    spans = chat_trace(t0, mdv)
    spans.append(
        span(
            "tp-error",
            "err-root",
            None,
            t0 + timedelta(minutes=1),
            3000,
            kind="llm",
            trace_name="broken-call",
            model="model-beta",
            status="error",
            error="upstream timed out after 30 s",
            prompt_tokens=10,
            cost_usd=0.0002,
        )
    )
    spans += [
        span("tp-orphan", "orph-root", None, t0 + timedelta(minutes=2), 400, kind="chain", trace_name="with-orphan"),
        span("tp-orphan", "orph-lost", "never-arrived", t0 + timedelta(minutes=2, seconds=0.1), 50, kind="tool"),
    ]
    for i in range(6):
        spans.append(
            span(
                f"tp-f{i}",
                f"f{i}-root",
                None,
                t0 + timedelta(minutes=3 + i),
                (i + 1) * 100,
                kind="llm",
                trace_name="filler",
                model="model-alpha" if i % 2 == 0 else "model-beta",
                prompt_tokens=10 * (i + 1),
                completion_tokens=i,
                cost_usd=(i + 1) / 10_000,
            )
        )
    send(live, spans)
    send(live, big_trace(t0 + timedelta(minutes=10)))
    yield Seeded(live, t0, mdv)


def api(live: LiveServer, path: str, **params: Any) -> Any:
    with live.client() as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def shown_ids(page: Page) -> list[str]:
    return page.locator("#trace-rows tr.trace-row").evaluate_all("rows => rows.map(r => r.dataset.traceId)")


@contextmanager
def session_client(live: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client signed in to the dashboard (session cookie, no API key)."""
    with httpx.Client(base_url=live.url, timeout=30) as c:
        r = sign_in_http(c, live.admin_key)
        assert r.status_code == 303 and "podium_session" in c.cookies
        yield c


# --- the list --------------------------------------------------------------------------------------


def test_list_filters_and_sorts(seeded: Seeded, page: Page) -> None:
    live = seeded.live
    sign_in(page, live.url, live.admin_key)
    page.click("nav >> text=Traces")
    every = [t["id"] for t in api(live, "/api/traces", limit=50)["traces"]]
    assert {"tp-chat", "tp-error", "tp-orphan", "tp-big"} <= set(every)
    expect(page.locator("#trace-rows tr.trace-row")).to_have_count(len(every))
    assert shown_ids(page) == every  # newest first

    page.fill("input[name=model]", "model-beta")
    page.click("#trace-filters button[type=submit]")
    page.wait_for_url(re.compile(r"model=model-beta"))
    beta = [t["id"] for t in api(live, "/api/traces", model="model-beta")["traces"]]
    assert len(beta) == 4
    expect(page.locator("#trace-rows tr.trace-row")).to_have_count(4)
    assert shown_ids(page) == beta
    assert set(page.locator("#trace-rows td[data-col=model]").all_inner_texts()) == {"model-beta"}
    assert "from=" not in page.url  # empty fields stay out of the query

    page.select_option("select[name=status]", "error")
    page.click("#trace-filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=error"))
    expect(page.locator("#trace-rows tr.trace-row")).to_have_count(1)
    assert shown_ids(page) == ["tp-error"]
    expect(page.locator("tr[data-trace-id=tp-error]")).to_contain_text("upstream timed out")

    page.click("text=Clear")
    page.click("th[data-sort=latency_ms] a")
    page.wait_for_url(re.compile(r"sort=latency_ms&order=desc"))
    expect(page.locator("th[data-sort=latency_ms]")).to_have_attribute("aria-sort", "descending")
    slowest = [t["id"] for t in api(live, "/api/traces", sort="latency_ms", order="desc")["traces"]]
    assert shown_ids(page) == slowest and slowest[0] == "tp-big"
    latencies = [
        float(v)
        for v in page.locator("#trace-rows td[data-col=latency]").evaluate_all(
            "cells => cells.map(c => c.dataset.value)"
        )
    ]
    assert latencies == sorted(latencies, reverse=True)
    expect(page.locator("#live-tail")).to_be_disabled()  # live tail follows newest-first only

    page.click("th[data-sort=latency_ms] a")  # again: the other way
    page.wait_for_url(re.compile(r"sort=latency_ms&order=asc"))
    assert shown_ids(page) == [t["id"] for t in api(live, "/api/traces", sort="latency_ms", order="asc")["traces"]]

    page.click("th[data-sort=cost] a")
    page.wait_for_url(re.compile(r"sort=cost&order=desc"))
    assert shown_ids(page)[0] == "tp-chat"
    assert shown_ids(page) == [t["id"] for t in api(live, "/api/traces", sort="cost", order="desc")["traces"]]

    page.click("th[data-sort=tokens] a")
    page.wait_for_url(re.compile(r"sort=tokens&order=desc"))
    assert shown_ids(page) == [t["id"] for t in api(live, "/api/traces", sort="tokens", order="desc")["traces"]]


def test_list_pages_with_the_cursor(seeded: Seeded, page: Page) -> None:
    live = seeded.live
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/traces?name=filler&sort=cost&order=asc&limit=4")
    assert shown_ids(page) == ["tp-f0", "tp-f1", "tp-f2", "tp-f3"]
    page.click("#next-page")
    page.wait_for_url(re.compile(r"cursor="))
    assert shown_ids(page) == ["tp-f4", "tp-f5"]
    expect(page.locator("#next-page")).to_have_count(0)
    page.click("text=← First page")
    page.wait_for_url(lambda url: "cursor=" not in url)
    assert shown_ids(page) == ["tp-f0", "tp-f1", "tp-f2", "tp-f3"]


def test_live_tail_shows_a_new_trace(seeded: Seeded, page: Page) -> None:
    live = seeded.live
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/traces")
    before = page.locator("#trace-rows tr.trace-row").count()
    page.check("#live-tail")
    expect(page.locator("#tail-status")).to_contain_text("checked at")
    new_id = "tp-tail-" + utcnow().strftime("%H%M%S%f")
    send(live, [span(new_id, new_id + "-root", None, utcnow(), 30, kind="llm", trace_name="arrived-late")])
    row = page.locator(f"tr[data-trace-id='{new_id}']")
    expect(row).to_be_visible(timeout=10_000)
    expect(row).to_have_class(re.compile("fresh"))
    assert shown_ids(page)[0] == new_id  # newest first, at the top
    expect(page.locator("#trace-rows tr.trace-row")).to_have_count(before + 1)
    assert "tail=1" in page.url
    page.uncheck("#live-tail")


# --- one trace -------------------------------------------------------------------------------------


def test_trace_page_tree_timeline_and_span_details(seeded: Seeded, page: Page) -> None:
    live = seeded.live
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/traces")
    page.click("tr[data-trace-id=tp-chat] a.trace-link")
    page.wait_for_url(live.url + "/traces/tp-chat")
    totals = page.get_by_test_id("trace-totals")
    expect(totals.locator("[data-total=tokens]")).to_have_text("150")
    expect(totals.locator("[data-total=cost]")).to_have_text("$0.0015")
    expect(totals.locator("[data-total=user]")).to_have_text("alice")
    expect(totals.locator("[data-total=session]")).to_contain_text("sess-1")
    expect(totals.locator("[data-total=tags]")).to_contain_text("vip")
    expect(page.locator("[data-payload=input]").first).to_contain_text("Where is my order?")

    rows = page.locator("#span-rows tr.span-row")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.spanId)") == ["chat-root", "chat-search", "chat-llm"]
    assert rows.evaluate_all("rs => rs.map(r => +r.dataset.depth)") == [0, 1, 1]
    bars = page.locator("#span-rows .bar")
    expect(bars).to_have_count(3)
    root_bar, llm_bar = bars.nth(0), bars.nth(2)
    assert float(root_bar.get_attribute("data-left") or -1) == 0
    assert float(root_bar.get_attribute("data-width") or 0) == pytest.approx(100)
    assert float(llm_bar.get_attribute("data-left") or 0) == pytest.approx(400 / 1200 * 100, abs=0.01)
    assert float(llm_bar.get_attribute("data-width") or 0) == pytest.approx(700 / 1200 * 100, abs=0.01)
    assert llm_bar.bounding_box()["x"] > root_bar.bounding_box()["x"]  # type: ignore[index]

    llm = page.locator("tr[data-span-id=chat-llm]")
    expect(llm.locator("td[data-col=tokens]")).to_have_text("120+30")
    expect(llm.locator("td[data-col=cost]")).to_have_text("$0.0015")
    llm.click()
    detail = page.locator("#span-detail .span-full[data-span-id=chat-llm]")
    expect(detail).to_be_visible()
    expect(page).to_have_url(re.compile(r"span=chat-llm"))
    expect(detail.locator(".msg[data-role=user] .msg-text")).to_have_text("Where is my order?")
    expect(detail.locator(".msg[data-role=system]")).to_contain_text("You are a support agent.")
    expect(detail.locator("[data-payload=output] .msg[data-role=assistant]")).to_contain_text("It ships tomorrow.")
    expect(detail.locator("[data-fact=tokens]")).to_have_text("120 prompt · 30 completion")
    expect(detail.locator("[data-fact=cost]")).to_have_text("$0.0015")
    expect(detail.locator("[data-fact=ttft]")).to_have_text("80 ms")
    expect(detail.locator("[data-fact=attributes]")).to_contain_text('"temperature": 0.2')
    expect(detail.locator("[data-link=prompt-version] a")).to_have_attribute("href", "/prompts/versions/prv_test1")
    expect(detail.locator("[data-link=model-version] a")).to_have_attribute("href", "/models/model-alpha")
    expect(detail.locator("[data-link=model-version]")).to_contain_text("model-alpha v1")
    expect(detail.locator("[data-fact=model] a")).to_have_attribute("href", "/models/model-alpha")

    # a large output is in the artifact store: its preview first, the whole of it on demand
    page.locator("tr[data-span-id=chat-search]").click()
    out = page.locator("#span-detail .span-full[data-span-id=chat-search] [data-payload=output]")
    expect(out.locator(".preview-text")).to_be_visible()
    assert len(out.locator(".preview-text").inner_text()) < 2_000
    out.locator("button.load-payload").click()
    expect(out.locator(".preview-text")).to_have_count(0)
    expect(out.locator("pre.payload-text")).to_contain_text("shipping policy, section")
    assert out.locator("pre.payload-text").inner_text().strip() == BIG_DOC.strip()

    # the span in the URL opens with the page
    page.goto(live.url + "/traces/tp-chat?span=chat-llm")
    expect(page.locator("tr[data-span-id=chat-llm]")).to_have_class(re.compile("selected"))
    expect(page.locator("#span-detail .msg[data-role=user]")).to_be_visible()


def test_error_and_orphan_spans(seeded: Seeded, page: Page) -> None:
    live = seeded.live
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/traces/tp-error")
    expect(page.get_by_test_id("trace-status")).to_have_text("error")
    expect(page.get_by_test_id("trace-error")).to_contain_text("upstream timed out after 30 s")
    row = page.locator("tr[data-span-id=err-root]")
    expect(row).to_have_class(re.compile("status-error"))
    expect(row.locator(".bar")).to_have_class(re.compile("status-error"))
    row.click()
    expect(page.locator("#span-detail [data-fact=error]")).to_have_text("upstream timed out after 30 s")
    expect(page.locator("#span-detail [data-fact=model]")).to_have_text("model-beta")  # not registered: no link
    expect(page.locator("#span-detail [data-fact=model] a")).to_have_count(0)

    page.goto(live.url + "/traces/tp-orphan")
    lost = page.locator("tr[data-span-id=orph-lost]")
    expect(lost).to_have_class(re.compile("orphan"))
    expect(lost.locator(".orphan-badge")).to_have_text("orphan")
    expect(page.locator("tr[data-span-id=orph-root] .orphan-badge")).to_have_count(0)

    page.goto(live.url + "/traces/tp-nope")
    expect(page.get_by_role("alert")).to_contain_text("trace 'tp-nope' not found")


def test_ten_thousand_span_trace_opens_a_page_at_a_time(seeded: Seeded, page: Page) -> None:
    live = seeded.live
    with session_client(live) as c:
        r = c.get("/traces/tp-big")
    assert r.status_code == 200
    html = r.text
    assert html.count('class="span-row') == 200  # the first rows only
    assert "payload-of-" not in html  # no span payloads in the page
    assert 'data-span-id="g98-s099"' not in html
    assert len(html) < 400_000, len(html)

    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/traces/tp-big")
    expect(page.locator("[data-total=spans]")).to_have_text(str(BIG_SPANS))
    rows = page.locator("#span-rows tr.span-row")
    expect(rows).to_have_count(200)
    expect(page.locator("#span-count")).to_have_text(f"200 of {BIG_SPANS} spans shown")
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.click("#load-more-spans")
    expect(rows).to_have_count(700)
    expect(page.locator("#span-count")).to_have_text(f"700 of {BIG_SPANS} spans shown")
    assert any("/traces/tp-big/rows?offset=200&limit=500" in u for u in requests)

    deep = page.locator("tr[data-span-id=g02-s040]")  # row 245: only there after "load more"
    assert deep.get_attribute("data-depth") == "42"
    assert int(deep.get_attribute("data-index") or 0) > 200
    deep.click()
    detail = page.locator("#span-detail .span-full[data-span-id=g02-s040]")
    expect(detail.locator("[data-payload=input]")).to_contain_text("payload-of-g02-s040")
    expect(detail).to_contain_text("parent g02-s039")
    assert any("/traces/tp-big/spans/g02-s040" in u for u in requests)
    assert "payload-of-g02-s041" not in page.content()  # only the clicked span's payload came

    with session_client(live) as c:  # the last rows, as "load more" would fetch them
        tail = c.get("/traces/tp-big/rows", params={"offset": BIG_SPANS - 200, "limit": 500}).text
    assert tail.count('class="span-row') == 200
    assert f'data-span-id="g98-s099" data-depth="2" data-index="{BIG_SPANS - 1}"' in tail

    page.goto(live.url + "/traces/tp-chat")  # all rows shown: no pager
    expect(page.locator("#span-rows tr.span-row")).to_have_count(3)
    expect(page.locator("#span-pager")).to_be_hidden()


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_charts_and_per_model_table(seeded: Seeded, page: Page) -> None:
    live = seeded.live
    start = (seeded.t0 - timedelta(minutes=30)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=2)
    window = {"from": start.isoformat(), "to": end.isoformat()}
    sign_in(page, live.url, live.admin_key)
    page.click("nav >> text=Metrics")
    expect(page.locator("figure.chart")).to_have_count(7)  # the default range: the last 24 hours
    page.goto(live.url + "/trace-metrics?range=custom&" + str(httpx.QueryParams(window)))
    expect(page.locator("#metrics-window")).to_have_attribute("data-bucket", "minute")

    agg = api(live, "/api/traces/aggregate", by="model", bucket="minute", **window)
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in agg["rows"]:
        for key in ("count", "errors", "prompt_tokens", "completion_tokens", "cost_micros"):
            sums[row["group"] or "(no model)"][key] += row[key]
    assert {"model-alpha", "model-beta", "(no model)"} <= set(sums)
    table_rows = page.locator("table.per-model tr.model-row")
    expect(table_rows).to_have_count(len(sums))
    for model, want in sums.items():
        row = page.locator(f"tr.model-row[data-model='{model}']")
        for key, value in want.items():
            assert row.locator(f"td[data-col={key}]").get_attribute("data-value") == str(value), (model, key)
    alpha = page.locator("tr.model-row[data-model='model-alpha']")
    expect(alpha.locator("td[data-col=cost_micros]")).to_have_text("$0.0024")  # 0.0015 + 0.0001 + 0.0003 + 0.0005
    expect(page.locator("tr.model-row[data-model='model-beta'] td[data-col=errors]")).to_have_text("1")

    total = sum(s["count"] for s in sums.values())
    expect(page.locator("[data-total=count]")).to_have_text(str(total))

    def drawn(chart: str, series: str, shape: str = "rect") -> list[float]:
        marks = page.locator(f"figure[data-chart={chart}] g[data-series='{series}'] {shape}")
        return marks.evaluate_all("ms => ms.map(m => +m.dataset.value)")

    volume = page.locator("figure[data-chart=volume] svg")
    expect(volume).to_have_attribute("data-slots", "120")  # one bucket per minute of the two hours
    for model, want in sums.items():  # stacked bars: a block per model and minute
        assert sum(drawn("volume", model)) == want["count"], model
        assert sum(drawn("tokens", model)) == want["prompt_tokens"] + want["completion_tokens"], model
        assert sum(drawn("errors", model)) == want["errors"], model
        assert sum(drawn("cost", model)) == pytest.approx(want["cost_micros"] / 1e6), model
    for p in ("p50", "p95", "p99"):
        assert max(drawn("latency", p, "circle")) == pytest.approx(60_000)  # the 10k-span trace's minute
    assert drawn("latency_model", "model-beta", "circle") == pytest.approx([3000, 200, 400, 600])
    expect(page.locator("figure[data-chart=error_rate] g[data-series=all] circle")).not_to_have_count(0)

    page.select_option("select[name=range]", "1h")  # submits itself
    page.wait_for_url(re.compile(r"range=1h"))
    expect(page.locator("#metrics-window")).to_have_attribute("data-bucket", "minute")
    expect(page.locator("figure.chart")).to_have_count(7)
    expect(page.locator("[data-total=count]")).to_have_text(str(total))  # everything is from the last hour


# --- errors ----------------------------------------------------------------------------------------


def test_invalid_filters_are_named_in_the_page(seeded: Seeded) -> None:
    live = seeded.live
    with session_client(live) as c:
        r = c.get("/traces", params={"min_latency_ms": "fast", "model": "model-alpha"})
        assert r.status_code == 400
        assert "min_latency_ms &#39;fast&#39; is not a number" in r.text
        assert 'role="alert" data-field="min_latency_ms"' in r.text
        assert re.search(r'name="min_latency_ms"[^>]*aria-invalid="true"', r.text)
        assert 'value="model-alpha"' in r.text  # the form keeps what was typed
        r = c.get("/traces", params={"status": "meh"})
        assert r.status_code == 400 and "status &#39;meh&#39; is not one of: ok, error" in r.text
        r = c.get("/traces", params={"from": "yesterday"})
        assert r.status_code == 400 and "from &#39;yesterday&#39; is not an ISO-8601 time" in r.text
        r = c.get("/traces", params={"sort": "words"})
        assert r.status_code == 400 and "sort &#39;words&#39; is not one of" in r.text
        r = c.get("/trace-metrics", params={"bucket": "week"})
        assert r.status_code == 400 and 'data-field="bucket"' in r.text
        r = c.get("/trace-metrics", params={"range": "custom"})
        assert r.status_code == 400 and "a custom range needs &#39;from&#39;" in r.text
        r = c.get("/traces/tail", params={"after": "soon"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "after"
        r = c.get("/traces/tp-chat/rows", params={"offset": "-1"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "offset"
    # fragments answer 401 without a session (the page script says so), pages redirect to sign-in
    anonymous = httpx.get(live.url + "/traces/tp-chat/spans/chat-llm")
    assert anonymous.status_code == 401 and "session" in anonymous.json()["error"]["message"]
    assert httpx.get(live.url + "/traces").status_code == 303
