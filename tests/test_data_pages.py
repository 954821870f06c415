"""The dataset pages in headless Chromium: the list; a dataset's version history (how each version was made,
its parents), its lineage graph (a node per version and per parent from another dataset, an edge from parent
to child, nodes linking to version pages) and label history; a version's card (rows, duplicates removed,
PII found, columns, length histograms as SVG, the pipeline's steps with their reports) and its row browser
(paging forward and back, a search narrowing the rows to those containing the text, HTML in the data shown
as text and never run); the diff of two versions; bad references and another project's dataset answered
with the normal error page and a 404. Data is made through the real API: a JSONL import, then preparation
pipelines run as jobs."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from playwright.sync_api import Page, expect

from .browser import sign_in
from .conftest import LiveServer, serve_for_module, sign_in_http

pytestmark = pytest.mark.browser

RAW = "dp-tickets"
CLEAN = "dp-clean"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold claim</b>'
REFUNDS = [
    "I want a refund for order 7",
    "Refund please, the parcel was broken",
    "Where is my REFUND? It has been weeks",
]
LONG = "A very long complaint. " * 40  # 920 characters: cut in the table


def rows() -> list[dict[str, Any]]:
    """64 rows: 60 distinct texts (three about refunds, one holding HTML, one an email address, one long) and
    four exact copies of earlier ones; a language and a split column to count."""
    texts = [f"Ticket {i:02d}: my order has not arrived yet" for i in range(54)]
    texts += [*REFUNDS, XSS, "Contact me at jane.doe@example.com about the invoice", LONG]
    out = [
        {"id": i, "text": t, "lang": "de" if i % 5 == 0 else "en", "split": "test" if i % 4 == 0 else "train"}
        for i, t in enumerate(texts)
    ]
    for j in (3, 10, 20, 30):  # copies (new ids, same text): removed by dedup on `text`
        out.append({**out[j], "id": 100 + j})
    return out


def api(live: LiveServer, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
    with live.client(key) as c:
        r = c.request(method, path, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def prep(live: LiveServer, name: str, steps: list[Any], **body: Any) -> dict[str, Any]:
    """Run a pipeline as a job through the API and wait for it; returns the job's result."""
    job = api(live, "POST", f"/api/datasets/{name}/prep", json={"pipeline": {"steps": steps}, **body})
    deadline = time.monotonic() + 60
    while True:
        info = api(live, "GET", f"/api/jobs/{job['id']}")
        if info["status"] in ("succeeded", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"job {job['id']} still {info['status']}"
        time.sleep(0.1)
    assert info["status"] == "succeeded", info
    result: dict[str, Any] = info["result"]
    return result


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Pages read through the same services on every database: the browser tests run on SQLite only."""
    yield from serve_for_module("sqlite", tmp_path_factory.mktemp("data-pages"))


@pytest.fixture(scope="module")
def live(sqlite_server: LiveServer) -> LiveServer:
    """The module's server with `dp-tickets` v1 (imported, 64 rows) and v2 (dedup then PII redaction, 60
    rows, labelled `golden`), and `dp-clean` v1 made from `dp-tickets@2` by a second pipeline (dedup and a
    quality filter)."""
    body = b"".join(orjson.dumps(r) + b"\n" for r in rows())
    made = api(
        sqlite_server,
        "POST",
        f"/api/datasets/{RAW}/import?format=jsonl&filename=tickets.jsonl&message=first+export",
        content=body,
    )
    assert made["version"]["version"] == 1 and made["rows"] == 64
    v2 = prep(sqlite_server, RAW, [{"dedup": {"field": "text"}}, {"pii": {"fields": ["text"]}}], message="clean up")
    assert v2["version"] == 2 and v2["rows"] == 60
    api(sqlite_server, "PUT", f"/api/datasets/{RAW}/labels/golden", json={"version": 2})
    steps = [{"dedup": {"field": "text", "normalize": False}}, {"quality": {"min_words": 3, "min_stop_words": 0}}]
    clean = prep(sqlite_server, RAW, steps, into=CLEAN, version="2")
    assert clean["dataset"] == CLEAN and clean["version"] == 1
    return sqlite_server


def texts_on_page(page: Page) -> list[str]:
    """The `text` cells of the row browser, in order."""
    columns = [th.get_attribute("data-column") for th in page.locator("#rows thead th").all()]
    index = columns.index("text")
    return [r.locator("td").nth(index).inner_text() for r in page.locator("#rows tr.data-row").all()]


# --- list and dataset page ---------------------------------------------------------------------------


def test_the_list_shows_each_dataset_with_latest_version_rows_and_labels(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.click("nav >> text=Datasets")
    page.wait_for_url(re.compile(r"/datasets$"))
    row = page.locator(f"tr.dataset-row[data-dataset='{RAW}']")
    expect(row.locator("[data-col=latest]")).to_have_text("v2")
    expect(row.locator("[data-col=rows]")).to_have_text("60")
    expect(row.locator("[data-col=labels]")).to_contain_text("golden → v2")
    expect(page.locator(f"tr.dataset-row[data-dataset='{CLEAN}'] [data-col=latest]")).to_have_text("v1")
    row.locator(f"a[href='/datasets/{RAW}']").click()
    page.wait_for_url(re.compile(rf"/datasets/{RAW}$"))
    expect(page.locator("h1")).to_contain_text(RAW)


def test_the_version_history_says_how_each_version_was_made(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{RAW}")
    v1 = page.locator("tr.version-row[data-version='1']")
    v2 = page.locator("tr.version-row[data-version='2']")
    expect(v1.locator("[data-col=rows]")).to_have_text("64")
    expect(v1.locator(".made-by")).to_have_attribute("data-kind", "import")
    expect(v1.locator(".made-by")).to_contain_text("jsonl")
    expect(v1.locator("[data-col=message]")).to_have_text("first export")
    expect(v1.locator("[data-col=parents]")).to_have_text("—")
    expect(v2.locator("[data-col=rows]")).to_have_text("60")
    expect(v2.locator(".made-by")).to_have_attribute("data-kind", "pipeline")
    expect(v2.locator(".made-by .step-name")).to_have_text(["dedup", "pii"])
    expect(v2.locator("[data-col=parents] a.parent")).to_have_text("v1")
    expect(v2.locator("[data-col=labels]")).to_contain_text("golden")
    expect(v2.locator("[data-col=id]")).to_have_text(re.compile(r"^dsv_"))
    expect(page.locator("tr.label-move[data-label=golden]")).to_contain_text("v2")


def test_the_lineage_graph_has_a_node_per_version_and_an_edge_per_parent(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{RAW}")
    graph = page.locator("#lineage svg")
    expect(graph.locator("g.node")).to_have_count(2)
    expect(graph.locator("g.node[data-node='v1']")).to_contain_text("import")
    expect(graph.locator("g.node[data-node='v2']")).to_contain_text("pipeline: dedup, pii")
    expect(graph.locator("path.edge")).to_have_count(1)
    expect(graph.locator("path.edge[data-edge='v1->v2']")).to_have_count(1)
    # the parent sits left of its child
    box1 = graph.locator("g.node[data-node='v1'] rect").bounding_box()
    box2 = graph.locator("g.node[data-node='v2'] rect").bounding_box()
    assert box1 and box2 and box1["x"] + box1["width"] <= box2["x"]

    # another dataset's version made from this one: its parent drawn as `dp-tickets@2`, linking there
    page.goto(f"{live.url}/datasets/{CLEAN}")
    graph = page.locator("#lineage svg")
    expect(graph.locator("g.node")).to_have_count(2)
    expect(graph.locator(f"g.node[data-node='{RAW}@2']")).to_have_attribute("data-kind", "external")
    expect(graph.locator(f"path.edge[data-edge='{RAW}@2->v1']")).to_have_count(1)
    expect(page.locator("tr.version-row[data-version='1'] [data-col=parents] a.parent")).to_have_text(f"{RAW}@2")
    graph.locator(f"g.node[data-node='{RAW}@2'] a").click()
    page.wait_for_url(re.compile(rf"/datasets/{RAW}/2$"))
    expect(page.locator("#version-title")).to_have_text("v2")


# --- a version: card and rows ------------------------------------------------------------------------


def test_the_card_shows_rows_duplicates_pii_columns_histograms_and_steps(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{RAW}")
    page.locator("g.node[data-node='v2'] a").click()
    page.wait_for_url(re.compile(rf"/datasets/{RAW}/2$"))
    card = api(live, "GET", f"/api/datasets/{RAW}/versions/2/card")
    expect(page.locator("[data-figure=rows]")).to_have_text("60")
    expect(page.locator("[data-figure=duplicates]")).to_have_text("4")
    expect(page.locator("[data-figure=pii]")).to_have_text(str(sum(card["pii"].values())))
    assert card["pii"]["EMAIL"] == 1
    expect(page.locator("#pii tr[data-key=EMAIL] [data-count]")).to_have_text("1")
    expect(page.locator("#columns tr.column-row")).to_have_count(4)
    expect(page.locator("#columns tr[data-column=text] [data-col=type]")).to_have_text("string")
    # the length histogram of `text`: an SVG whose bars add up to the rows
    chart = page.locator("figure[data-chart='length-text'] svg")
    expect(chart).to_be_visible()
    bars = chart.locator("rect.bar")
    assert bars.count() == len(card["version"]["stats"]["length_edges"])
    assert sum(int(b.get_attribute("data-value") or 0) for b in bars.all()) == 60
    assert page.locator("figure[data-chart='length-text']").get_attribute("data-total") == "60"
    # languages and splits counted
    expect(page.locator("#languages tr[data-value=en] [data-count]")).to_have_text(str(card["languages"]["en"]))
    expect(page.locator("#splits tr[data-value=train] [data-count]")).to_have_text(str(card["splits"]["train"]))
    # the steps of its lineage, each with its rows and report
    steps = page.locator("#steps .step")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_have_attribute("data-step", "dedup")
    expect(steps.nth(0).locator("[data-rows-in]")).to_have_text("64 → 60 rows")
    expect(steps.nth(0).locator("dd[data-key=duplicates]")).to_have_text("4")
    expect(steps.nth(1)).to_have_attribute("data-step", "pii")
    expect(page.locator("#lineage-chain a")).to_have_text([f"{RAW}@1", f"{RAW}@2"])


def test_the_card_follows_the_lineage_into_the_dataset_it_came_from(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{CLEAN}/latest")
    card = api(live, "GET", f"/api/datasets/{CLEAN}/versions/latest/card")
    quality = next(s for s in card["steps"] if s["step"] == "quality")
    expect(page.locator("#lineage-chain a")).to_have_text([f"{RAW}@1", f"{RAW}@2", f"{CLEAN}@1"])
    steps = page.locator("#steps .step")
    expect(steps).to_have_count(4)
    assert [s.get_attribute("data-step") for s in steps.all()] == ["dedup", "pii", "dedup", "quality"]
    assert [s.get_attribute("data-made") for s in steps.all()] == [f"{RAW}@2", f"{RAW}@2", f"{CLEAN}@1", f"{CLEAN}@1"]
    expect(page.locator("[data-figure=duplicates]")).to_have_text("4")  # removed upstream, counted here
    expect(page.locator("[data-figure=rows]")).to_have_text(str(card["rows"]))
    expect(page.locator("[data-figure=quality]")).to_have_text(str(sum(card["quality_drops"].values())))
    dropped = quality["report"]["dropped"]
    assert sum(dropped.values()) == 60 - card["rows"] > 0
    for rule, n in dropped.items():
        expect(steps.nth(3).locator("dd[data-key=dropped]")).to_contain_text(f"{rule}: {n}")
    steps.nth(3).locator("summary").click()
    expect(steps.nth(3).locator("pre.config")).to_contain_text('"min_words": 3')


def test_the_row_browser_pages_forward_and_back(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{RAW}/golden")
    expect(page.locator("#version-title")).to_have_text("v2")
    first = texts_on_page(page)
    assert len(first) == 25 and first[0] == "Ticket 00: my order has not arrived yet"
    expect(page.locator("#rows-summary")).to_contain_text("Rows 1\u201325 of 60")
    expect(page.locator("#prev-page")).to_have_count(0)
    page.click("#next-page")
    page.wait_for_url(re.compile(r"offset=25"))
    second = texts_on_page(page)
    assert len(second) == 25 and not set(first) & set(second)
    assert second[0] == "Ticket 25: my order has not arrived yet"
    page.click("#next-page")
    page.wait_for_url(re.compile(r"offset=50"))
    third = texts_on_page(page)
    assert len(third) == 10 and len(set(first + second + third)) == 60
    expect(page.locator("#next-page")).to_have_count(0)
    page.click("#prev-page")
    page.wait_for_url(re.compile(r"offset=25"))
    assert texts_on_page(page) == second
    # a long value is cut in its cell, saying how much was left out
    page.goto(f"{live.url}/datasets/{RAW}/2?offset=59")
    last = page.locator("#rows tr.data-row").last
    expect(last).to_contain_text(f"+{len(LONG) - 300:,} chars")
    assert LONG not in last.inner_text()


def test_a_search_narrows_the_rows_to_those_containing_the_text(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{RAW}/2")
    page.fill("#row-search input[name=q]", "refund")
    page.click("#row-search button[type=submit]")
    page.wait_for_url(re.compile(r"q=refund"))
    assert sorted(texts_on_page(page)) == sorted(REFUNDS)
    expect(page.locator("#rows-summary")).to_have_attribute("data-matched", "3")
    expect(page.locator("#rows-summary")).to_contain_text("3 of 60 rows contain “refund”")
    expect(page.locator("#next-page")).to_have_count(0)
    # nothing matches: an empty table that says so
    page.fill("#row-search input[name=q]", "no such words anywhere")
    page.click("#row-search button[type=submit]")
    expect(page.locator("#rows-summary")).to_have_attribute("data-matched", "0")
    expect(page.locator("#rows tr.data-row")).to_have_count(0)
    expect(page.locator("#rows")).to_contain_text("No rows contain this text.")
    page.click("#clear-search")
    expect(page.locator("#rows tr.data-row")).to_have_count(25)


def test_html_in_the_data_is_shown_as_text_and_never_run(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{RAW}/2?q=bold+claim")
    assert texts_on_page(page) == [XSS]
    cell = page.locator("#rows tr.data-row td.kind-text").first
    expect(cell).to_have_text(XSS)
    assert cell.locator("script, img, b").count() == 0
    assert page.evaluate("window.__pwned") is None
    # the search box holds the query as typed, escaped too
    page.goto(f"{live.url}/datasets/{RAW}/2?q=" + "%22%3E%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E")
    expect(page.locator("#row-search input[name=q]")).to_have_value('"><script>window.__pwned=3</script>')
    assert page.evaluate("window.__pwned") is None


def test_the_diff_page_counts_and_shows_removed_rows(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/datasets/{RAW}")
    page.locator("tr.version-row[data-version='2'] a.diff-link").click()
    page.wait_for_url(re.compile(rf"/datasets/{RAW}/diff\?a=1&b=2"))
    diff = api(live, "GET", f"/api/datasets/{RAW}/diff?a=1&b=2")
    assert diff["key"] == "id"
    expect(page.locator("[data-count=removed]")).to_have_text(str(diff["rows_removed"]))
    expect(page.locator("[data-count=changed]")).to_have_text(str(diff["rows_changed"]))
    expect(page.locator("[data-count=added]")).to_have_text("0")
    assert diff["rows_removed"] == 4
    expect(page.locator("#removed-rows tr.example-row")).to_have_count(4)
    # the PII step rewrote the email row: a changed row, its `text` before and after
    assert diff["rows_changed"] == 1
    changed = page.locator("#changed-rows tr.changed-row")
    expect(changed).to_have_count(1)
    expect(changed.locator("td").nth(2)).to_contain_text("jane.doe@example.com")
    expect(changed.locator("td").nth(3)).not_to_contain_text("jane.doe@example.com")


# --- errors and tenancy ------------------------------------------------------------------------------


def test_bad_references_show_the_error_page_with_a_404(live: LiveServer) -> None:
    with live.client() as c:
        assert sign_in_http(c, live.admin_key).status_code == 303
        c.headers.pop("Authorization")
        for path, says in (
            ("/datasets/dp-nosuch", "dataset 'dp-nosuch' not found"),
            ("/datasets/dp-nosuch/1", "dataset 'dp-nosuch' not found"),
            (f"/datasets/{RAW}/9", "has no version 9"),
            (f"/datasets/{RAW}/nolabel", "nolabel"),
            (f"/datasets/{RAW}/diff?a=1&b=9", "has no version 9"),
        ):
            r = c.get(path)
            assert r.status_code == 404, (path, r.status_code)
            assert "Something was not right" in r.text and says in r.text.replace("&#39;", "'"), (path, r.text)
        r = c.get(f"/datasets/{RAW}/2?offset=-3")
        assert r.status_code == 400 and "offset must be between" in r.text
        assert 'id="rows-error"' in r.text and 'data-figure="rows"' in r.text  # the card still shows


def test_another_projects_viewer_gets_a_404(live: LiveServer, page: Page) -> None:
    api(live, "POST", "/api/projects", json={"name": "dp-elsewhere"})
    api(live, "POST", "/api/users", json={"name": "dp-outsider", "role": "viewer", "project": "dp-elsewhere"})
    key = api(live, "POST", "/api/keys", json={"name": "dp-outsider", "user": "dp-outsider", "project": "dp-elsewhere"})
    sign_in(page, live.url, key["key"])
    response = page.goto(f"{live.url}/datasets/{RAW}")
    assert response is not None and response.status == 404
    expect(page.locator(".error")).to_contain_text(f"dataset '{RAW}' not found")
    response = page.goto(f"{live.url}/datasets/{RAW}/2?q=refund")
    assert response is not None and response.status == 404
    assert "refund" not in page.locator("main").inner_text().lower()
    page.goto(f"{live.url}/datasets")
    expect(page.locator("tr.dataset-row")).to_have_count(0)
