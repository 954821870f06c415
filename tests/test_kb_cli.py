"""The knowledge-base CLI (`podium kb …`, the real command in a subprocess) and SDK (`podium.kb`) against a live
server with a scripted embedding upstream (bag-of-letters vectors, so known queries have known nearest
documents): create, build (waiting or not, chunk settings as JSON or single options), ls, show, search with
filters, label, and retrieval evals side by side; each with a bad input that ends in one line of error."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import podium
from podium.core import sdkconfig
from podium.core.errors import InvalidInput, NotFound, PodiumError
from podium.gateway.table import RouteTable
from podium.kb.routes import router as kb_router
from podium.kb.sdk import EvalResult, Hit, KnowledgeBase

from .conftest import LiveServer, run_cli, serve_for_module
from .evalfake import EvalFake, start_eval_fake

EMBED = "kbcli-embed"
CHARS = {"unit": "chars", "size": 200, "overlap": 20}
SMALL = {"unit": "chars", "size": 60, "overlap": 0}
DOCS = [
    {"id": "zoo", "text": "Zebras and zebus doze in the zoo of Zanzibar.", "source": "animals", "tags": ["fauna"]},
    {"id": "bake", "text": "Bake bread with butter, flour and a bit of baking soda.", "source": "kitchen", "tags": []},
    {"id": "quiz", "text": "Quick quizzes quietly quell quirky questions.", "source": "school", "tags": ["fun"]},
    {
        "id": "long",
        "text": " ".join(
            f"Paragraph {i} tells of rivers, hills and towns along the old road north of the city." for i in range(8)
        ),
        "source": "travel",
        "tags": ["fun", "maps"],
    },
]
QA = [
    {"query": "zebras in the zoo of zanzibar", "relevant": ["zoo"]},
    {"query": "bread butter flour baking", "relevant": ["bake"]},
    {"query": "rivers hills towns road", "relevant": ["long"]},
]
HAS_EVAL = any(getattr(r, "path", None) == "/api/kb/{name}/eval" for r in kb_router.routes)
needs_eval = pytest.mark.skipif(not HAS_EVAL, reason="POST /api/kb/{name}/eval is not served yet")


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    """The CLI and SDK are thin over `/api/kb`, whose services run on both databases in tests/test_kb.py:
    these run on SQLite alone."""
    for live in serve_for_module("sqlite", tmp_path_factory.mktemp("kbcli")):
        with live.client() as c:
            deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": EMBED}
            r = c.post("/api/routes", json={"name": EMBED, "deployments": [deployment]})
            assert r.status_code == 201, r.text
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


@pytest.fixture(autouse=True)
def _reset(fake: EvalFake) -> None:
    fake.reset()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dataset(live: LiveServer, rows: list[dict[str, Any]]) -> str:
    name = _name("kbcli-ds")
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    with live.client() as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    assert r.status_code == 201, r.text
    return f"{name}@1"


def job_done(live: LiveServer, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    with live.client() as c:
        while True:
            job = c.get(f"/api/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return dict(job)
            assert time.monotonic() < deadline, job
            time.sleep(0.1)


@pytest.fixture(scope="module")
def docs_kb(live: LiveServer) -> str:
    """A knowledge base with two ready versions of DOCS: 1 in 200-character chunks (labelled `prod`), 2 in
    60-character ones."""
    name = _name("kbcli")
    ref = dataset(live, DOCS)
    with live.client() as c:
        assert c.post("/api/kb", json={"name": name, "description": "shared docs"}).status_code == 201
        for chunker in (CHARS, SMALL):
            body = {"dataset": ref, "text_field": "text", "chunker": chunker, "embedding_model": EMBED}
            r = c.post(f"/api/kb/{name}/build", json=body)
            assert r.status_code == 202, r.text
            assert job_done(live, r.json()["job"]["id"])["status"] == "succeeded"
        assert c.put(f"/api/kb/{name}/labels/prod", json={"version": 1}).status_code == 200
    return name


def cli(live: LiveServer, *args: str) -> Any:
    return run_cli("kb", *args, env={"PODIUM_URL": live.url, "PODIUM_API_KEY": live.admin_key}, timeout=120)


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def error(result: Any) -> str:
    """The error line of a failed command: the last on stderr (a followed job's progress bar comes before)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = str(result.stderr).strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return line


def side_by_side(live: LiveServer, *commands: tuple[str, ...]) -> list[Any]:
    """Independent commands run at once (each is a new process), their results in order."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: cli(live, *args), commands))


def table(stdout: str) -> list[dict[str, str]]:
    """The rows of a table printed to a pipe (tab-separated under a header, after an optional `# title`)."""
    lines = [line for line in stdout.splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


# --- the CLI ---------------------------------------------------------------------------------------


def test_create_and_build_through_the_cli(live: LiveServer) -> None:
    name = _name("kbcli")
    assert ok(cli(live, "create", name, "--description", "made by the CLI")).strip() == f"Created knowledge base {name}"
    assert "exists already" in error(cli(live, "create", name))
    ref = dataset(live, DOCS)

    built = json.loads(
        ok(cli(live, "build", name, "--dataset", ref, "--chunk-size", "200", "--embedding-model", EMBED, "--json"))
    )
    version = built["version"]
    assert built["job"]["status"] == "succeeded" and version["status"] == "ready" and version["version"] == 1
    assert version["chunker"] == {"unit": "chars", "size": 200, "overlap": 20, "tokenizer": None}
    assert version["dataset"] == ref and version["text_field"] == "text" and version["dim"] == 26

    chunker = json.dumps(SMALL)
    human = ok(cli(live, "build", name, "--dataset", ref, "--chunker", chunker, "--embedding-model", EMBED))
    assert "status: ready" in human and "60 chars, overlap 0" in human and f"embedding_model: {EMBED}" in human

    queued = json.loads(
        ok(cli(live, "build", name, "--dataset", ref, "--embedding-model", EMBED, "--no-wait", "--json"))
    )
    assert queued["version"]["status"] == "building" and queued["version"]["version"] == 3
    assert job_done(live, queued["job"]["id"])["status"] == "succeeded"
    with live.client() as c:
        versions = c.get(f"/api/kb/{name}").json()["versions"]
    assert [(v["version"], v["status"], v["chunker"]["size"]) for v in versions] == [
        (3, "ready", 1000),  # no chunk settings: the server's default
        (2, "ready", 60),
        (1, "ready", 200),
    ]

    base = ("build", name, "--dataset", ref, "--embedding-model", EMBED)
    unknown, column, bad_json, both, overlap = map(
        error,
        side_by_side(
            live,
            ("build", _name("no-such-kb"), *base[2:]),
            (*base, "--text-field", "body"),
            (*base, "--chunker", "{size: 5"),
            (*base, "--chunker", chunker, "--chunk-size", "50"),
            (*base, "--chunk-size", "50", "--chunk-overlap", "50"),
        ),
    )
    assert "not found" in unknown and "not a column" in column and "not valid JSON" in bad_json
    assert "not both" in both and "overlap" in overlap


def test_a_failed_build_exits_non_zero_with_its_error(live: LiveServer) -> None:
    name = _name("kbcli")
    ok(cli(live, "create", name))
    ref = dataset(live, [{"id": "bad", "text": "fail:400 this document cannot be embedded", "source": "x"}])
    result = cli(live, "build", name, "--dataset", ref, "--chunk-size", "200", "--embedding-model", EMBED)
    assert "status: failed" in result.stdout
    assert f"the build of {name}@1 failed" in error(result) and "upstream says 400" in result.stderr


def test_ls_and_show(live: LiveServer, docs_kb: str) -> None:
    listed, ls, shown, one, latest, v1, unknown, no_version = side_by_side(
        live,
        ("ls", "--json"),
        ("ls",),
        ("show", docs_kb),
        ("show", f"{docs_kb}@prod", "--json"),
        ("show", f"{docs_kb}@latest", "--json"),
        ("show", f"{docs_kb}@1"),
        ("show", _name("no-such-kb")),
        ("show", f"{docs_kb}@nolabel"),
    )
    by_name = {kb["name"]: kb for kb in json.loads(ok(listed))}
    assert by_name[docs_kb]["ready_version"] == 2 and by_name[docs_kb]["labels"]["prod"] == 1
    row = next(r for r in table(ok(ls)) if r["name"] == docs_kb)
    assert row["ready_version"] == "2" and "prod→1" in row["labels"] and row["description"] == "shared docs"

    text = ok(shown)
    assert "searches: version 2" in text and "# Versions" in text and "# Label history" in text
    versions = table(text.split("# Label history")[0].split("# Versions")[1])
    assert [v["version"] for v in versions] == ["2", "1"]
    first = versions[1]
    assert first["status"] == "ready" and first["chunker"] == "200 chars, overlap 20" and "prod" in first["labels"]
    assert first["embedding_model"] == EMBED and first["dim"] == "26" and int(first["chunks"]) > 4
    assert first["dataset"].startswith("kbcli-ds-") and "(dsv_" in first["dataset"]
    history = table(text.split("# Label history")[1])
    assert ("prod", "—", "1") in [(h["label"], h["from_version"], h["to_version"]) for h in history]

    assert json.loads(ok(one))["version"] == 1 and "prod" in json.loads(ok(one))["labels"]
    assert json.loads(ok(latest))["version"] == 2
    assert "text_field: text" in ok(v1) and "chunker: 200 chars, overlap 20" in ok(v1)
    assert "not found" in error(unknown) and "has no version 'nolabel'" in error(no_version)


def test_search(live: LiveServer, docs_kb: str) -> None:
    vector, text, long, by_source, by_tag, by_tags, bad_mode, unknown, no_label = side_by_side(
        live,
        ("search", docs_kb, "zebra zoo zanzibar", "--mode", "vector", "--k", "2", "--json"),
        ("search", f"{docs_kb}@prod", "bread and butter", "--mode", "text"),
        ("search", f"{docs_kb}@1", "rivers hills towns", "--mode", "text", "--k", "1"),
        ("search", docs_kb, "zebra zoo", "--source", "kitchen", "--json"),
        ("search", docs_kb, "zebra zoo", "--k", "20", "--tag", "fauna", "--json"),
        ("search", docs_kb, "zebra", "--k", "50", "--tag", "fun", "--tag", "x", "--json"),
        ("search", docs_kb, "zebra", "--mode", "fuzzy"),
        ("search", _name("no-such-kb"), "zebra"),
        ("search", f"{docs_kb}@nolabel", "zebra"),
    )
    found = json.loads(ok(vector))
    assert found["version"] == 2 and found["mode"] == "vector" and len(found["hits"]) == 2
    assert found["hits"][0]["doc_id"] == "zoo"

    rows = table(ok(text))
    assert rows[0]["doc_id"] == "bake" and rows[0]["source"] == "kitchen" and rows[0]["rank"] == "1"
    assert rows[0]["offsets"] == f"0-{len(DOCS[1]['text'])}" and rows[0]["text"] == DOCS[1]["text"]
    assert float(rows[0]["score"]) > 0
    long_rows = table(ok(long))
    assert long_rows[0]["doc_id"] == "long" and long_rows[0]["text"].endswith("…")  # an excerpt, not the chunk

    assert {h["doc_id"] for h in json.loads(ok(by_source))["hits"]} == {"bake"}
    assert {h["doc_id"] for h in json.loads(ok(by_tag))["hits"]} == {"zoo"}
    assert {h["doc_id"] for h in json.loads(ok(by_tags))["hits"]} == {"quiz", "long"}

    assert "mode must be one of" in error(bad_mode) and "not found" in error(unknown)
    assert "nolabel" in error(no_label)


def test_label(live: LiveServer, docs_kb: str) -> None:
    assert ok(cli(live, "label", docs_kb, "canary", "2")).strip() == f"{docs_kb}@canary → version 2"
    moved = json.loads(ok(cli(live, "label", docs_kb, "canary", "prod", "--json")))
    assert moved["version"] == 1 and "canary" in moved["labels"]
    found = json.loads(ok(cli(live, "search", f"{docs_kb}@canary", "zebra", "--mode", "text", "--json")))
    assert found["version"] == 1
    with live.client() as c:
        history = c.get(f"/api/kb/{docs_kb}").json()["history"]
    assert [(m["from_version"], m["to_version"]) for m in history if m["label"] == "canary"] == [(2, 1), (None, 2)]
    no_version, unknown = side_by_side(live, ("label", docs_kb, "canary", "9"), ("label", _name("x"), "canary", "1"))
    assert "9" in error(no_version) and "not found" in error(unknown)


@needs_eval
def test_eval_compares_versions_side_by_side(live: LiveServer, docs_kb: str) -> None:
    qa = dataset(live, QA)
    both, one, side, default, bad_mode, unknown = side_by_side(
        live,
        ("eval", docs_kb, "--dataset", qa, "--version", "1", "--version", "2", "--k", "10", "--json"),
        ("eval", docs_kb, "--dataset", qa, "--version", "prod"),
        ("eval", docs_kb, "--dataset", qa, "--version", "1", "--version", "2", "--mode", "text"),
        ("eval", docs_kb, "--dataset", qa, "--mode", "text", "--k", "1", "--json"),
        ("eval", docs_kb, "--dataset", qa, "--mode", "fuzzy"),
        ("eval", _name("no-such-kb"), "--dataset", qa),
    )
    result = json.loads(ok(both))
    assert result["kb"] == docs_kb and result["k"] == 10 and result["mode"] == "hybrid" and result["queries"] == 3
    assert [v["version"] for v in result["versions"]] == [1, 2]
    for v in result["versions"]:
        assert {"hit_rate", "mrr", "ndcg", "recall"} <= set(v["metrics"])
        assert all(0.0 <= float(x) <= 1.0 for x in v["metrics"].values())
        assert [r["query"] for r in v["rows"]] == [q["query"] for q in QA]
        # ten hits out of a few chunks of four documents: every relevant document is among them
        assert v["metrics"]["hit_rate"] == 1.0

    rows = {r["metric"]: r for r in table(ok(one))}
    assert set(rows) >= {"hit_rate", "mrr", "ndcg", "recall"} and rows["hit_rate"][f"{docs_kb}@1"].startswith("1.0000")
    assert rows["embedding model"][f"{docs_kb}@1"] == EMBED and "difference" not in rows["hit_rate"]
    compared = table(ok(side))
    assert list(compared[0]) == ["metric", f"{docs_kb}@1", f"{docs_kb}@2", "difference", "p"]
    by_metric = {r["metric"]: r for r in compared}
    assert by_metric["hit_rate"]["difference"].startswith(("+", "-")) and by_metric["chunks"][f"{docs_kb}@2"] != ""
    newest = json.loads(ok(default))
    assert [v["version"] for v in newest["versions"]] == [2] and newest["mode"] == "text"
    assert "mode must be one of" in error(bad_mode) and "not found" in error(unknown)


# --- the SDK ---------------------------------------------------------------------------------------


@pytest.fixture
def sdk_to_live(live: LiveServer) -> Iterator[None]:
    podium.configure(url=live.url, api_key=live.admin_key)
    yield
    sdkconfig.reset()  # later modules' clients resolve their server from the environment again


@pytest.mark.usefixtures("sdk_to_live")
def test_the_sdk_creates_builds_lists_and_searches(live: LiveServer) -> None:
    name = _name("kbsdk")
    made = podium.kb.create(name, description="from the SDK")
    assert made["name"] == name and made["ready_version"] is None
    ref = dataset(live, DOCS)
    version = podium.kb.build(name, ref, embedding_model=EMBED, chunker=CHARS)
    assert version["status"] == "ready" and version["version"] == 1 and version["row_count"] > 4
    queued = podium.kb.build(name, ref, embedding_model=EMBED, chunker=SMALL, wait=False)
    assert queued["status"] == "building" and queued["version"] == 2
    assert job_done(live, queued["job_id"])["status"] == "succeeded"
    assert {kb["name"]: kb["ready_version"] for kb in podium.kb.list()}[name] == 2
    with live.client() as c:
        assert c.put(f"/api/kb/{name}/labels/prod", json={"version": 1}).status_code == 200

    with podium.kb.get(name) as kb:
        assert isinstance(kb, KnowledgeBase) and kb.version is None
        hits = kb.search("zebra zoo zanzibar", k=2, mode="vector")
        assert all(isinstance(h, Hit) for h in hits) and hits[0].doc_id == "zoo"
        first = hits[0]
        assert first.source == "animals" and first.text == DOCS[0]["text"] and first.tags == ["fauna"]
        assert (first.start, first.end) == (0, len(DOCS[0]["text"])) and first.similarity is not None
        assert [h.doc_id for h in kb.search("zebra zoo", filters={"source": ["kitchen"]})] == ["bake"]
        assert {h.doc_id for h in kb.search("rivers", k=50, mode="text", filters={"tags_any": ["maps"]})} == {"long"}
        info = kb.info()
        assert [v["version"] for v in info["versions"]] == [2, 1] and info["labels"] == {"prod": 1}
        newest = kb.search("rivers hills towns", k=50, mode="text")
    with podium.kb.get(f"{name}@prod") as prod:
        pinned = prod.search("rivers hills towns", k=50, mode="text")
    assert max(h.end - h.start for h in newest) <= 60 < max(h.end - h.start for h in pinned)  # v2 vs v1 chunks


@pytest.mark.usefixtures("sdk_to_live")
def test_the_sdk_raises_the_servers_errors(live: LiveServer, docs_kb: str) -> None:
    with pytest.raises(NotFound, match="not found"):
        podium.kb.get(_name("no-such-kb")).search("zebra")
    with pytest.raises(InvalidInput, match="mode must be one of"):
        podium.kb.get(docs_kb).search("zebra", mode="fuzzy")
    with pytest.raises(InvalidInput, match=r"filters\.sorce"):
        podium.kb.get(docs_kb).search("zebra", filters={"sorce": ["kitchen"]})
    with pytest.raises(NotFound, match="nolabel"):
        podium.kb.get(f"{docs_kb}@nolabel").search("zebra")
    with pytest.raises(InvalidInput, match="not `name` or `name@version`"):
        podium.kb.get("@prod")
    name = _name("kbsdk")
    podium.kb.create(name)
    bad = dataset(live, [{"id": "bad", "text": "fail:400 this document cannot be embedded", "source": "x"}])
    with pytest.raises(PodiumError, match=f"the build of {name}@1 failed: .*upstream says 400"):
        podium.kb.build(name, bad, embedding_model=EMBED, chunker=CHARS)


@needs_eval
@pytest.mark.usefixtures("sdk_to_live")
def test_the_sdk_evaluates_retrieval(live: LiveServer, docs_kb: str) -> None:
    qa = dataset(live, QA)
    result = podium.kb.get(f"{docs_kb}@prod").eval(dataset=qa, k=10)  # the handle's version by default
    assert isinstance(result, EvalResult) and result.queries == 3 and result.k == 10
    assert [v.version for v in result.versions] == [1] and result.versions[0].metrics["hit_rate"] == 1.0
    both = podium.kb.get(docs_kb).eval(dataset=qa, versions=[1, "2"], mode="text", k=1)
    assert [v.version for v in both.versions] == [1, 2] and both.mode == "text"
    assert all(len(v.rows) == 3 and v.embedding_model == EMBED for v in both.versions)
    assert both.comparison is not None and set(both.comparison) >= {"hit_rate", "mrr", "ndcg", "recall"}
    assert [len(v.rows) for v in podium.kb.get(docs_kb).eval(dataset=qa, rows=1).versions] == [1]
    with pytest.raises(InvalidInput):
        podium.kb.get(docs_kb).eval(dataset=qa, mode="fuzzy")
