"""The knowledge-base pages in headless Chromium: the list (newest and searched versions, chunks, labels); a
knowledge base's versions with their lineage (the dataset version linked to its page, text field, chunker,
embedding model, dimension, chunks, documents, build job), a failed build's error and the label history; a
search in each mode with known top hits and the query's words marked, a source filter and a labelled version;
HTML in a chunk shown as text and never run; a version still building answered with the service's 409; bad
parameters and another project's knowledge base answered with the error page; and a retriever span's hits as a
table in the trace view. Data is made through the real API on a live server whose embedding route calls a
scripted upstream (bag-of-letters vectors, so known queries have known nearest documents)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from podium.core.db import utcnow
from podium.gateway.table import RouteTable
from podium.tracing.writer import TraceWriter

from .browser import sign_in
from .conftest import LiveServer, serve_for_module, sign_in_http
from .evalfake import EvalFake, start_eval_fake

pytestmark = pytest.mark.browser

EMBED = "kbp-embed"
KB = "kbp-docs"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold claim</b>'
DOCS = [
    {"id": "zoo", "text": "Zebras and zebus doze in the zoo of Zanzibar.", "source": "animals"},
    {"id": "bake", "text": "Bake bread with butter, flour and a bit of baking soda.", "source": "kitchen"},
    {"id": "quiz", "text": "Quick quizzes quietly quell quirky queens' questions.", "source": "school"},
    {"id": "xss", "text": XSS, "source": "web"},
    {
        "id": "long",
        "text": " ".join(
            f"Paragraph {i} tells of rivers, hills and towns along the old road north of the city." for i in range(8)
        ),
        "source": "travel",
    },
]
SMALL = {"unit": "chars", "size": 60, "overlap": 0}
WHOLE = {"unit": "chars", "size": 200, "overlap": 20}


def api(live: LiveServer, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
    with live.client(key) as c:
        r = c.request(method, path, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def dataset(live: LiveServer, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """A new dataset of `rows`: its name and the id of its version 1."""
    name = f"kbp-ds-{uuid.uuid4().hex[:6]}"
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    made = api(live, "POST", f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    return name, made["version"]["id"]


def start_build(live: LiveServer, kb: str, ref: str, chunker: dict[str, Any]) -> dict[str, Any]:
    body = {"dataset": ref, "text_field": "text", "chunker": chunker, "embedding_model": EMBED}
    started: dict[str, Any] = api(live, "POST", f"/api/kb/{kb}/build", json=body)
    return started


def job_done(live: LiveServer, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, Any] = api(live, "GET", f"/api/jobs/{job_id}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def search(live: LiveServer, kb: str, **body: Any) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = api(live, "POST", f"/api/kb/{kb}/search", json=body)["hits"]
    return hits


@dataclass(frozen=True)
class World:
    live: LiveServer
    dataset: str  # the dataset of v1 and v2
    dataset_version_id: str
    jobs: dict[int, str]  # version → its build job


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    """Pages read through the same services on every database: the browser tests run on SQLite only. The route
    `kbp-embed` calls the scripted upstream."""
    for live in serve_for_module("sqlite", tmp_path_factory.mktemp("kb-pages")):
        deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": EMBED}
        api(live, "POST", "/api/routes", json={"name": EMBED, "deployments": [deployment]})
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


@pytest.fixture(scope="module")
def world(sqlite_server: LiveServer, fake: EvalFake) -> World:
    """`kbp-docs`: v1 (the five documents in 60-character chunks, labelled `prod`), v2 (the same documents in
    200-character chunks: one chunk each but the long one) and v3, whose build failed on a document the
    upstream refuses."""
    live = sqlite_server
    fake.reset()
    api(live, "POST", "/api/kb", json={"name": KB, "description": "documents <i>for</i> the page tests"})
    name, dsv = dataset(live, DOCS)
    jobs = {}
    for number, chunker in ((1, SMALL), (2, WHOLE)):
        started = start_build(live, KB, f"{name}@1", chunker)
        assert started["version"]["version"] == number
        assert job_done(live, started["job"]["id"])["status"] == "succeeded"
        jobs[number] = started["job"]["id"]
    api(live, "PUT", f"/api/kb/{KB}/labels/prod", json={"version": 1})
    bad, _ = dataset(live, [*DOCS[:2], {"id": "bad", "text": "fail:400 this one cannot be embedded", "source": "x"}])
    started = start_build(live, KB, f"{bad}@1", WHOLE)
    assert job_done(live, started["job"]["id"])["status"] == "failed"
    jobs[3] = started["job"]["id"]
    return World(live, name, dsv, jobs)


def hit_docs(page: Page) -> list[str]:
    return page.locator("#hits tr.hit-row").evaluate_all("rows => rows.map(r => r.dataset.doc)")


def marks(page: Page, rank: int = 1) -> list[str]:
    return page.locator(f"#hits tr.hit-row[data-rank='{rank}'] td[data-col=text] mark").all_inner_texts()


# --- the list and a knowledge base -------------------------------------------------------------------


def test_the_list_shows_each_knowledge_base_with_versions_chunks_and_labels(world: World, page: Page) -> None:
    live = world.live
    detail = api(live, "GET", f"/api/kb/{KB}")
    sign_in(page, live.url, live.admin_key)
    page.click("nav >> text=Knowledge")
    page.wait_for_url(re.compile(r"/kb$"))
    row = page.locator(f"tr.kb-row[data-kb='{KB}']")
    expect(row.locator("[data-col=latest]")).to_have_text("v3")
    expect(row.locator("[data-col=ready]")).to_have_text("v2")
    expect(row.locator("[data-col=chunks]")).to_have_text(str(detail["chunks"]))
    assert detail["chunks"] == 4 + 4  # one chunk per document, but the long one's 680 characters make four
    expect(row.locator("[data-col=labels]")).to_have_text("prod → v1")
    expect(row).to_contain_text("documents <i>for</i> the page tests")  # escaped, as text
    row.locator(f"a[href='/kb/{KB}']").click()
    page.wait_for_url(re.compile(rf"/kb/{KB}$"))
    expect(page.locator("#kb-name")).to_have_text(KB)


def test_the_knowledge_base_shows_each_versions_lineage_status_and_the_label_history(world: World, page: Page) -> None:
    live = world.live
    versions = {v["version"]: v for v in api(live, "GET", f"/api/kb/{KB}")["versions"]}
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/kb/{KB}")
    rows = page.locator("#versions tr.version-row")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.version)") == ["3", "2", "1"]  # newest first
    v1, v2, v3 = (page.locator(f"tr.version-row[data-version='{n}']") for n in (1, 2, 3))
    expect(page.locator("[data-figure=ready]")).to_have_text("v2")

    expect(v2.locator("[data-col=status]")).to_have_text("ready")
    link = v2.locator("[data-col=lineage] a.dataset-link")
    expect(link).to_have_text(f"{world.dataset}@1")
    expect(link).to_have_attribute("href", f"/datasets/{world.dataset}/{world.dataset_version_id}")
    expect(v2.locator("a.dataset-page")).to_have_attribute("href", f"/datasets/{world.dataset}")
    expect(v2.locator("[data-col=text-field]")).to_have_text("text")
    expect(v2.locator("[data-col=chunker]")).to_have_text("200 chars, overlap 20")
    expect(v1.locator("[data-col=chunker]")).to_have_text("60 chars")
    expect(v2.locator("[data-col=model]")).to_have_text(EMBED)
    expect(v2.locator("[data-col=dim]")).to_have_text("26")
    expect(v2.locator("[data-col=chunks]")).to_have_text(str(versions[2]["row_count"]))
    expect(v2.locator("[data-col=docs]")).to_have_text("5")
    assert versions[1]["row_count"] > versions[2]["row_count"]  # smaller chunks, more of them
    expect(v1.locator("[data-col=chunks]")).to_have_text(str(versions[1]["row_count"]))
    expect(v2.locator("a.job-link")).to_have_attribute("href", f"/jobs/{world.jobs[2]}")
    expect(v1.locator("[data-col=labels]")).to_have_text("prod")
    expect(v2.locator("[data-col=labels]")).to_have_text("")

    expect(v3.locator("[data-col=status] .status")).to_have_text("failed")
    expect(v3.locator("[data-col=error]")).to_contain_text("upstream says 400")
    expect(v3.locator("[data-col=chunks]")).to_have_text("—")
    expect(v3.locator("a.job-link")).to_have_attribute("href", f"/jobs/{world.jobs[3]}")
    expect(v3.locator("a.version-search")).to_have_count(0)  # a failed version is never searched

    history = page.locator("#label-history tr.label-move")
    expect(history).to_have_count(1)
    expect(history.locator("[data-col=from]")).to_have_text("—")
    expect(history.locator("[data-col=to]")).to_have_text("v1")

    link.click()  # the lineage leads to the exact dataset version
    page.wait_for_url(re.compile(rf"/datasets/{world.dataset}/dsv_"))
    expect(page.locator("#version-title")).to_have_text("v1")


# --- searching ---------------------------------------------------------------------------------------


def test_a_search_in_each_mode_shows_the_known_top_hits_with_the_query_marked(world: World, page: Page) -> None:
    live = world.live
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/kb/{KB}")
    form = page.locator("#search-form")
    form.locator("input[name=q]").fill("zebras in a zoo")
    form.locator("select[name=mode]").select_option("hybrid")
    form.locator("input[name=k]").fill("3")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(rf"/kb/{KB}/search\?q=zebras"))
    summary = page.locator("#search-summary")
    expect(summary).to_have_attribute("data-mode", "hybrid")
    expect(summary).to_have_attribute("data-version", "2")  # the newest ready version
    expected = search(live, KB, query="zebras in a zoo", mode="hybrid", k=3)
    assert hit_docs(page) == [h["doc_id"] for h in expected] and expected[0]["doc_id"] == "zoo"
    top = page.locator("#hits tr.hit-row[data-rank='1']")
    expect(top.locator("[data-col=source]")).to_have_text("animals")
    expect(top.locator("[data-col=offsets]")).to_have_text(f"0\u2013{len(DOCS[0]['text'])}")
    expect(top.locator("[data-col=text]")).to_have_text(DOCS[0]["text"])
    assert float(top.locator("[data-col=score]").get_attribute("data-value") or 0) == pytest.approx(
        expected[0]["score"]
    )
    expect(top.locator("[data-col=similarity]")).to_have_count(1)  # a hybrid hit has both scores
    expect(top.locator("[data-col=bm25]")).to_have_count(1)
    assert marks(page) == ["Zebras", "zoo"]  # stop words are not marked
    expect(page.locator("#search-form input[name=q]")).to_have_value("zebras in a zoo")
    expect(page.locator("#search-form select[name=mode]")).to_have_value("hybrid")

    page.goto(f"{live.url}/kb/{KB}/search?q=zebra+zoo+zanzibar&mode=vector&k=2")
    expected = search(live, KB, query="zebra zoo zanzibar", mode="vector", k=2)
    assert hit_docs(page) == [h["doc_id"] for h in expected] and expected[0]["doc_id"] == "zoo"
    expect(page.locator("#hits tr.hit-row")).to_have_count(2)
    expect(page.locator("#hits tr.hit-row[data-rank='1'] [data-col=bm25]")).to_have_count(0)
    assert marks(page) == ["Zebras", "zoo", "Zanzibar"]

    page.goto(f"{live.url}/kb/{KB}/search?q=baking+bread&mode=text")
    assert hit_docs(page) == ["bake"]  # words: only the one document that has them
    assert marks(page) == ["Bake", "bread", "baking"]  # `bake` is marked for `baking`, as BM25's stems match
    expect(page.locator("#hits tr.hit-row[data-rank='1'] [data-col=similarity]")).to_have_count(0)

    page.goto(f"{live.url}/kb/{KB}/search?q=rivers+hills&mode=text&k=50")
    expect(page.locator("#hits tr.hit-row")).to_have_count(4)  # the long document's four chunks
    assert set(hit_docs(page)) == {"long"}
    assert len(set(page.locator("#hits td[data-col=offsets]").all_inner_texts())) == 4


def test_a_source_filter_and_a_labelled_version(world: World, page: Page) -> None:
    live = world.live
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/kb/{KB}/search?q=zebra+zoo+zanzibar&mode=vector&k=5&source=kitchen")
    assert hit_docs(page) == ["bake"]  # filters narrow before ranking
    expect(page.locator("#search-form input[name=source]")).to_have_value("kitchen")
    expect(page.locator("#search-summary")).to_contain_text("among sources kitchen")
    page.goto(f"{live.url}/kb/{KB}/search?q=zebra+zoo+zanzibar&mode=vector&k=5&source=kitchen,+school")
    assert sorted(hit_docs(page)) == ["bake", "quiz"]

    page.goto(f"{live.url}/kb/{KB}")
    page.locator("tr.version-row[data-version='1'] a.version-search").click()
    page.wait_for_url(re.compile(r"/search\?version=1"))
    expect(page.locator("#search-form input[name=version]")).to_have_value("1")
    expect(page.locator("#search-hint")).to_contain_text("v2, the newest ready version")
    page.goto(f"{live.url}/kb/{KB}/search?q=rivers+hills&mode=text&k=50&version=prod")
    expect(page.locator("#search-summary")).to_have_attribute("data-version", "1")
    expected = search(live, KB, query="rivers hills", mode="text", k=50, version="prod")
    assert len(expected) > 3 and hit_docs(page) == [h["doc_id"] for h in expected]  # v1's smaller chunks


def test_html_in_a_chunk_is_shown_as_text_and_never_run(world: World, page: Page) -> None:
    live = world.live
    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/kb/{KB}/search?q=bold+claim&mode=text")
    assert hit_docs(page) == ["xss"]
    text = page.locator("#hits tr.hit-row[data-rank='1'] td[data-col=text]")
    expect(text).to_have_text(XSS)
    assert text.locator("script, img, b").count() == 0
    assert marks(page) == ["bold", "claim"]  # only the marks are markup
    assert page.evaluate("window.__pwned") is None
    # the query as typed, escaped in the box and in the summary
    page.goto(f"{live.url}/kb/{KB}/search?mode=text&q=" + "%22%3E%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E")
    expect(page.locator("#search-form input[name=q]")).to_have_value('"><script>window.__pwned=3</script>')
    expect(page.locator("#search-summary")).to_contain_text('"><script>window.__pwned=3</script>')
    assert page.evaluate("window.__pwned") is None


def test_a_version_still_building_shows_the_services_409(world: World, fake: EvalFake, page: Page) -> None:
    live = world.live
    name = f"kbp-slow-{uuid.uuid4().hex[:6]}"
    api(live, "POST", "/api/kb", json={"name": name})
    tag = uuid.uuid4().hex  # texts no earlier build embedded, so the build has to call the upstream
    ds, _ = dataset(live, [{"id": "zoo", "text": f"Zebras in the zoo {tag}", "source": "animals"}])
    sign_in(page, live.url, live.admin_key)
    fake.embedding_delay = 3.0
    try:
        started = start_build(live, name, f"{ds}@1", WHOLE)
        response = page.goto(f"{live.url}/kb/{name}/search?q=zebras&mode=text")
        assert response is not None and response.status == 409
        expect(page.locator("h1")).to_have_text("Something was not right")
        expect(page.locator(".error")).to_contain_text(f"knowledge base '{name}' is still building")
        response = page.goto(f"{live.url}/kb/{name}/search?q=zebras&mode=text&version=1")
        assert response is not None and response.status == 409
        expect(page.locator(".error")).to_contain_text("version 1 of knowledge base")
        expect(page.locator(".error")).to_contain_text("is still building")
        page.goto(f"{live.url}/kb/{name}")
        expect(page.locator("tr.version-row[data-version='1'] [data-col=status]")).to_have_text("building")
        expect(page.locator("#search-form")).to_have_count(0)  # nothing to search yet
    finally:
        fake.embedding_delay = 0.0
    assert job_done(live, started["job"]["id"])["status"] == "succeeded"
    page.goto(f"{live.url}/kb/{name}/search?q=zebras&mode=text")
    assert hit_docs(page) == ["zoo"]


# --- errors and tenancy ------------------------------------------------------------------------------


def test_unknown_knowledge_bases_and_bad_parameters_show_the_error_page(world: World) -> None:
    live = world.live
    with live.client() as c:
        assert sign_in_http(c, live.admin_key).status_code == 303
        c.headers.pop("Authorization")
        for path, status, says in (
            ("/kb/kbp-nosuch", 404, "kbp-nosuch"),
            ("/kb/kbp-nosuch/search", 404, "kbp-nosuch"),
            ("/kb/kbp-nosuch/search?q=zebra", 404, "kbp-nosuch"),
            (f"/kb/{KB}/search?q=zebra&mode=fuzzy", 400, "mode must be one of vector, text, hybrid"),
            (f"/kb/{KB}/search?q=zebra&k=0", 400, "k must be between 1 and"),
            (f"/kb/{KB}/search?q=zebra&k=many", 400, "k must be a whole number"),
            (f"/kb/{KB}/search?q=zebra&version=9", 404, "9"),
            (f"/kb/{KB}/search?q=zebra&mode=text&version=3", 409, "failed to build"),
        ):
            r = c.get(path)
            assert r.status_code == status, (path, r.status_code)
            text = r.text.replace("&#39;", "'")
            assert "Something was not right" in text and says in text, (path, r.text)


def test_another_projects_viewer_gets_a_404(world: World, page: Page) -> None:
    live = world.live
    api(live, "POST", "/api/projects", json={"name": "kbp-elsewhere"})
    api(live, "POST", "/api/users", json={"name": "kbp-outsider", "role": "viewer", "project": "kbp-elsewhere"})
    key = api(
        live, "POST", "/api/keys", json={"name": "kbp-outsider", "user": "kbp-outsider", "project": "kbp-elsewhere"}
    )
    sign_in(page, live.url, key["key"])
    response = page.goto(f"{live.url}/kb/{KB}")
    assert response is not None and response.status == 404
    expect(page.locator(".error")).to_contain_text(KB)
    response = page.goto(f"{live.url}/kb/{KB}/search?q=zebra+zoo&mode=text")
    assert response is not None and response.status == 404
    assert "Zanzibar" not in page.locator("main").inner_text()
    page.goto(f"{live.url}/kb")
    expect(page.locator("tr.kb-row")).to_have_count(0)


# --- a retriever span in the trace view --------------------------------------------------------------


def _span(trace: str, sid: str, parent: str | None, ms: float, **extra: Any) -> dict[str, Any]:
    start = utcnow() - timedelta(minutes=5)
    return {
        "id": sid,
        "trace_id": trace,
        "parent_id": parent,
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(milliseconds=ms)).isoformat(),
        **extra,
    }


def test_a_retriever_span_shows_its_query_and_hits_as_a_table(world: World, page: Page) -> None:
    live = world.live
    version_id = api(live, "GET", f"/api/kb/{KB}")["versions"][1]["id"]
    fields = ("id", "source", "doc_id", "start", "end", "score", "similarity", "bm25", "text")
    hits = [
        {f: h[f] for f in fields}
        for h in search(live, KB, query="zebras in a zoo", mode="hybrid", k=2)
        + search(live, KB, query="bold claim", mode="text", k=1)
    ]
    asked = {"query": "zebras in a zoo", "kb": f"{KB}@2", "k": 3, "mode": "hybrid", "filters": {"source": ["x"]}}
    attributes = {"kb": KB, "version": 2, "version_id": version_id, "mode": "hybrid", "k": 3, "hits": 3}
    trace = f"kbp-trace-{uuid.uuid4().hex[:6]}"
    spans = [
        _span(trace, f"{trace}-root", None, 500, kind="chain", trace_name="rag-answer", input="question"),
        _span(
            trace,
            f"{trace}-ret",
            f"{trace}-root",
            40,
            kind="retriever",
            name=f"retrieve {KB}@2",
            input=json.dumps(asked),
            output=json.dumps({"hits": hits}),
            attributes=attributes,
        ),
        _span(
            trace,
            f"{trace}-odd",
            f"{trace}-root",
            10,
            kind="retriever",
            name="retrieve elsewhere",
            input="what the user asked",
            output="three documents about zebras",
        ),
    ]
    api(live, "POST", "/api/traces/ingest", json={"spans": spans})
    assert live.app.state.runtime.get(TraceWriter).flush(30)

    sign_in(page, live.url, live.admin_key)
    page.goto(f"{live.url}/traces/{trace}")
    page.locator(f"tr[data-span-id='{trace}-ret']").click()
    detail = page.locator(f"#span-detail .span-full[data-span-id='{trace}-ret']")
    expect(detail).to_be_visible()
    expect(detail.locator("[data-fact=query]")).to_have_text("zebras in a zoo")
    expect(detail.locator("[data-fact=kb] a")).to_have_attribute("href", f"/kb/{KB}")
    expect(detail.locator("[data-fact=kb]")).to_have_text(f"{KB}@2")
    expect(detail.locator("[data-fact=mode]")).to_have_text("hybrid · 3")
    expect(detail.locator("[data-fact=filters]")).to_contain_text('"source"')
    rows = detail.locator("tbody.retrieved-hit")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.id)") == [h["id"] for h in hits]
    first = rows.nth(0)
    expect(first.locator("[data-col=rank]")).to_have_text("1")
    expect(first.locator("[data-col=source]")).to_have_text("animals")
    expect(first.locator("[data-col=doc]")).to_have_text("zoo")
    expect(first.locator("[data-col=offsets]")).to_have_text(f"0\u2013{len(DOCS[0]['text'])}")
    expect(first.locator("[data-col=text]")).to_have_text(DOCS[0]["text"])
    assert float(first.locator("[data-col=score]").get_attribute("data-value") or 0) == pytest.approx(hits[0]["score"])
    expect(first.locator("[data-col=score]")).to_contain_text("cos")
    last = rows.nth(2)  # HTML in a retrieved chunk is text here too
    expect(last.locator("[data-col=text]")).to_have_text(XSS)
    assert last.locator("script, img, b").count() == 0
    assert page.evaluate("window.__pwned") is None
    expect(detail.locator(".raw-payloads")).to_have_count(1)  # the stored payloads stay one click away

    # an output that is not the gateway's hits shows as any payload does
    page.locator(f"tr[data-span-id='{trace}-odd']").click()
    odd = page.locator(f"#span-detail .span-full[data-span-id='{trace}-odd']")
    expect(odd.locator("[data-payload=output]")).to_contain_text("three documents about zebras")
    expect(odd.locator("[data-payload=input]")).to_contain_text("what the user asked")
    expect(odd.locator(".retrieval")).to_have_count(0)
