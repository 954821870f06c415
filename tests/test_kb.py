"""Knowledge bases end to end through the API, on a real server with a scripted embedding upstream (bag-of-
letters vectors, so known queries have known nearest documents): a dataset version built into a knowledge
base by a job and searched in each mode, with filters; labels; everything checked before a build is queued
(text field, chunker, embedding model); a failed build leaves no ready version and no table; a search
during a build answers 409; tenancy."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lancedb
import pytest

from podium.gateway.table import RouteTable
from podium.kb.service import kb_uri

from .conftest import LiveServer, project_key, serve_for_module
from .evalfake import EvalFake, start_eval_fake

EMBED = "kb-embed"
WIDE = "kb-embed-wide"  # the fake answers this model with vectors of twice the dimension
CHARS = {"unit": "chars", "size": 200, "overlap": 20}
DOCS = [
    {"id": "zoo", "text": "Zebras and zebus doze in the zoo of Zanzibar.", "source": "animals", "n": 1},
    {"id": "bake", "text": "Bake bread with butter, flour and a bit of baking soda.", "source": "kitchen", "n": 2},
    {"id": "quiz", "text": "Quick quizzes quietly quell quirky queens' questions.", "source": "school", "n": 3},
    {
        "id": "long",
        "text": " ".join(
            f"Paragraph {i} tells of rivers, hills and towns along the old road north of the city." for i in range(8)
        ),
        "source": "travel",
        "n": 4,
    },
]


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp(f"kb-{backend}")
    for live in serve_for_module(backend, folder, kb_url=str(folder / "kb-store")):
        with live.client() as c:
            for model in (EMBED, WIDE):
                deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": model}
                r = c.post("/api/routes", json={"name": model, "deployments": [deployment]})
                assert r.status_code == 201, r.text
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


@pytest.fixture(autouse=True)
def _reset(fake: EvalFake) -> None:
    fake.reset()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dataset(live: LiveServer, rows: list[dict[str, Any]], key: str | None = None) -> str:
    name = _name("kbds")
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    with live.client(key) as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    assert r.status_code == 201, r.text
    return f"{name}@1"


def create(live: LiveServer, key: str | None = None) -> str:
    name = _name("kb")
    with live.client(key) as c:
        r = c.post("/api/kb", json={"name": name, "description": "test documents"})
    assert r.status_code == 201, r.text
    assert r.json()["latest_version"] == 0 and r.json()["ready_version"] is None
    return name


def start_build(live: LiveServer, name: str, ref: str, key: str | None = None, **body: Any) -> dict[str, Any]:
    with live.client(key) as c:
        r = c.post(
            f"/api/kb/{name}/build",
            json={"dataset": ref, "text_field": "text", "chunker": CHARS, "embedding_model": EMBED, **body},
        )
    assert r.status_code == 202, r.text
    started = dict(r.json())
    assert started["version"]["status"] == "building" and started["job"]["kind"] == "kb.build"
    return started


def job_done(live: LiveServer, job_id: str, key: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    with live.client(key) as c:
        while True:
            job = c.get(f"/api/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return dict(job)
            assert time.monotonic() < deadline, job
            time.sleep(0.1)


def built(live: LiveServer, name: str, ref: str, key: str | None = None, **body: Any) -> dict[str, Any]:
    started = start_build(live, name, ref, key, **body)
    job = job_done(live, started["job"]["id"], key)
    assert job["status"] == "succeeded", job
    return started


def search(live: LiveServer, name: str, key: str | None = None, **body: Any) -> Any:
    with live.client(key) as c:
        return c.post(f"/api/kb/{name}/search", json=body)


def top_docs(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [hit["doc_id"] for hit in r.json()["hits"]]


def test_a_dataset_version_is_built_by_a_job_and_searched_in_each_mode(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    ref = dataset(live, DOCS)
    started = built(live, name, ref)
    with live.client() as c:
        detail = c.get(f"/api/kb/{name}").json()
    (version,) = detail["versions"]
    assert version["status"] == "ready" and version["error"] is None and version["job_id"] == started["job"]["id"]
    assert version["dim"] == 26 and version["doc_count"] == 4 and version["dataset"] == ref
    assert version["chunker"] == {"size": 200, "overlap": 20, "unit": "chars", "tokenizer": None}
    assert version["row_count"] > 4  # the long document is cut into several chunks, the others are one each
    assert detail["ready_version"] == 1 and detail["chunks"] == version["row_count"]
    # every chunk text went to the embedding model, 64 to a call at most
    inputs = [t for body in fake.requests if body.get("model") == EMBED for t in body["input"]]
    assert inputs[0] == "dimension probe"  # the build's check learnt the model's dimension first
    inputs = inputs[1:]
    assert version["reused"] == 0 and version["embedding_version"] == EMBED
    assert len(inputs) == version["row_count"] and all(len(b["input"]) <= 64 for b in fake.requests)

    assert top_docs(search(live, name, query="zebra zoo zanzibar", mode="vector", k=2))[0] == "zoo"
    assert top_docs(search(live, name, query="quiz queens questions", mode="vector", k=1)) == ["quiz"]
    assert top_docs(search(live, name, query="bread and butter", mode="text", k=3)) == ["bake"]
    hybrid = search(live, name, query="zebras in a zoo", mode="hybrid", k=3)
    assert top_docs(hybrid)[0] == "zoo"
    first = hybrid.json()["hits"][0]
    assert first["bm25"] is not None and first["similarity"] is not None and first["source"] == "animals"
    assert first["text"] == DOCS[0]["text"] and (first["start"], first["end"]) == (0, len(DOCS[0]["text"]))
    assert first["metadata"]["n"] == 1 and hybrid.json()["version"] == 1
    long_hits = search(live, name, query="rivers hills towns", mode="text", k=50).json()["hits"]
    assert {h["doc_id"] for h in long_hits} == {"long"} and len(long_hits) == version["row_count"] - 3
    # filters narrow before ranking
    filtered = search(live, name, query="zebra zoo zanzibar", mode="vector", k=5, filters={"source": ["kitchen"]})
    assert top_docs(filtered) == ["bake"]
    r = search(live, name, query="zebra", mode="vector", filters={"sorce": ["kitchen"]})
    assert r.status_code == 400 and r.json()["error"]["details"]["errors"][0]["field"] == "filters.sorce"
    assert search(live, name, query="zebra", mode="fuzzy").status_code == 400
    with live.client() as c:
        listed = {kb["name"]: kb for kb in c.get("/api/kb").json()}
    assert listed[name]["ready_version"] == 1
    # the chunk tables live where the kb_url setting says, not under the home
    store = Path(live.platform.settings.effective_kb_url)
    assert (store / f"{version['id']}.lance").is_dir()
    assert not (Path(live.platform.settings.home_dir) / "kb").exists()


def test_a_rebuild_reuses_the_stored_vectors_of_unchanged_chunks(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    first = built(live, name, dataset(live, DOCS))["version"]
    changed = [dict(d) for d in DOCS]
    changed[1]["text"] = "Bake rye bread with honey and a pinch of salt."
    changed.append({"id": "dup", "text": "Twice the same words. Twice the same words.", "source": "x", "n": 5})
    changed.append({"id": "dup2", "text": "Twice the same words. Twice the same words.", "source": "x", "n": 6})
    fake.reset()
    second = built(live, name, dataset(live, changed))["version"]
    with live.client() as c:
        versions = {v["version"]: v for v in c.get(f"/api/kb/{name}").json()["versions"]}
    embedded = [t for body in fake.requests if body.get("model") == EMBED for t in body["input"]]
    # the probe, the changed document, and the repeated text once: every other chunk's vector was stored
    assert embedded == ["dimension probe", changed[1]["text"], changed[-1]["text"]], embedded
    assert versions[second["version"]]["reused"] == versions[first["version"]]["row_count"] - 1 + 1
    assert versions[second["version"]]["row_count"] == versions[first["version"]]["row_count"] + 2
    assert top_docs(search(live, name, query="rye bread honey", mode="vector", k=1)) == ["bake"]
    assert top_docs(search(live, name, query="zebra zoo zanzibar", mode="vector", k=1)) == ["zoo"]
    # a chunker change cuts new texts: those are embedded, the unchanged ones are not
    fake.reset()
    third = built(live, name, dataset(live, DOCS), chunker={"unit": "chars", "size": 60, "overlap": 0})["version"]
    embedded = [t for body in fake.requests if body.get("model") == EMBED for t in body["input"]]
    assert DOCS[0]["text"] not in embedded and DOCS[2]["text"] not in embedded  # short: the same single chunk
    assert third["reused"] == 0  # the queued version's count; the finished one's below
    with live.client() as c:
        finished = {v["version"]: v for v in c.get(f"/api/kb/{name}").json()["versions"]}[third["version"]]
    assert finished["reused"] >= 2 and len(embedded) - 1 == finished["row_count"] - finished["reused"]


def test_a_model_of_another_dimension_is_refused_before_any_work(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    ref = dataset(live, DOCS)
    built(live, name, ref)
    fake.reset()
    with live.client() as c:
        r = c.post(
            f"/api/kb/{name}/build",
            json={"dataset": ref, "text_field": "text", "chunker": CHARS, "embedding_model": WIDE},
        )
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["details"]["field"] == "embedding_model" and error["details"]["dim"] == 52
        assert "52-dimensional" in error["message"] and "26-dimensional" in error["message"]
        assert [v["version"] for v in c.get(f"/api/kb/{name}").json()["versions"]] == [1]
    # only the probe was embedded
    assert [t for body in fake.requests for t in body["input"]] == ["dimension probe"]
    # a new knowledge base takes the wide model
    other = create(live)
    built(live, other, ref, embedding_model=WIDE)
    assert top_docs(search(live, other, query="quiz queens questions", mode="vector", k=1)) == ["quiz"]


def test_labels_point_at_ready_versions_and_searches_follow_them(live: LiveServer) -> None:
    name = create(live)
    ref = dataset(live, DOCS)
    built(live, name, ref)
    built(live, name, ref, chunker={"unit": "chars", "size": 60, "overlap": 0})
    with live.client() as c:
        r = c.put(f"/api/kb/{name}/labels/prod", json={"version": 1})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 1 and r.json()["labels"] == ["prod"]
        assert c.put(f"/api/kb/{name}/labels/latest", json={"version": 1}).status_code == 400
        assert c.put(f"/api/kb/{name}/labels/prod2", json={"version": 9}).status_code == 404
        detail = c.get(f"/api/kb/{name}").json()
    assert detail["labels"] == {"prod": 1} and detail["latest_version"] == 2 and detail["ready_version"] == 2
    assert [(m["label"], m["from_version"], m["to_version"]) for m in detail["history"]] == [("prod", None, 1)]
    assert search(live, name, query="zebra zoo", mode="vector", version="prod").json()["version"] == 1
    assert search(live, name, query="zebra zoo", mode="vector").json()["version"] == 2  # the newest ready one
    assert search(live, name, query="zebra zoo", mode="vector", version=1).json()["version"] == 1
    r = search(live, name, query="zebra zoo", version="canary")
    assert r.status_code == 404 and "prod" in r.json()["error"]["message"]
    with live.client() as c:  # a removed label is recorded and no longer resolves
        assert c.delete(f"/api/kb/{name}/labels/prod").status_code == 204
        detail = c.get(f"/api/kb/{name}").json()
        assert c.delete(f"/api/kb/{name}/labels/prod").status_code == 404
    moves = [(m["label"], m["from_version"], m["to_version"]) for m in detail["history"]]
    assert detail["labels"] == {} and sorted(moves, key=str) == sorted([("prod", None, 1), ("prod", 1, None)], key=str)
    assert search(live, name, query="zebra zoo", version="prod").status_code == 404


def test_a_build_is_checked_whole_before_it_is_queued(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    ref = dataset(live, DOCS)
    base = {"dataset": ref, "text_field": "text", "chunker": CHARS, "embedding_model": EMBED}
    refused = [
        ({"text_field": "body"}, "text_field", "body"),
        ({"text_field": "n"}, "text_field", "not text"),
        ({"embedding_model": "no-such-embedder"}, "embedding_model", "no-such-embedder"),
        ({"chunker": {"unit": "chars", "size": 50, "overlap": 50}}, "chunker.overlap", "overlap"),
        ({"chunker": {"unit": "tokens", "size": 50}}, "chunker.tokenizer", "needs a tokenizer"),
        ({"chunker": {"unit": "chars", "field": "text"}}, "chunker.field", "text_field"),
        ({"chunker": {"unit": "chars", "sise": 50}}, "chunker.sise", "sise"),
    ]
    with live.client() as c:
        jobs_before = len(c.get("/api/jobs", params={"kind": "kb.build", "limit": 500}).json()["items"])
        for change, field, said in refused:
            r = c.post(f"/api/kb/{name}/build", json={**base, **change})
            assert r.status_code == 400, (change, r.text)
            error = r.json()["error"]
            assert error["details"]["field"] == field and said in error["message"], (change, error)
        r = c.post(f"/api/kb/{name}/build", json={**base, "dataset": "no-such-dataset@1"})
        assert r.status_code == 404
        r = c.post(f"/api/kb/{name}/build", json={**base, "chunker": {"tokenizer": "no-such-model", "size": 50}})
        assert r.status_code == 404 and r.json()["error"]["details"]["field"] == "chunker.tokenizer", r.text
        assert c.post("/api/kb/no-such-kb/build", json=base).status_code == 404
        assert c.get(f"/api/kb/{name}").json()["versions"] == []  # nothing was queued, no version was made
        assert len(c.get("/api/jobs", params={"kind": "kb.build", "limit": 500}).json()["items"]) == jobs_before
    assert fake.embedding_calls == 0


def test_a_failed_build_leaves_no_ready_version_and_no_table(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    # the first 1000 rows (one batch of the build) are chunked, embedded and written before the last one fails
    rows = [{"id": f"d{i}", "text": f"document {i} about apples", "source": "x", "n": i} for i in range(1000)]
    rows.append({"id": "bad", "text": "fail:400 this document cannot be embedded", "source": "x", "n": 1000})
    started = start_build(live, name, dataset(live, rows))
    job = job_done(live, started["job"]["id"])
    assert job["status"] == "failed" and "upstream says 400" in job["error"]
    assert fake.embedding_calls == 1 + 1000 // 64 + 1 + 1  # the probe; the first batch was embedded and written
    with live.client() as c:
        detail = c.get(f"/api/kb/{name}").json()
    (version,) = detail["versions"]
    assert version["status"] == "failed" and "upstream says 400" in version["error"]
    assert version["finished_at"] is not None and detail["ready_version"] is None and detail["chunks"] == 0
    assert version["id"] not in lancedb.connect(kb_uri(live.platform)).list_tables().tables
    r = search(live, name, query="zebra", mode="text")
    assert r.status_code == 409 and "failed" in r.json()["error"]["message"]
    r = search(live, name, query="zebra", mode="text", version=1)
    assert r.status_code == 409 and "failed" in r.json()["error"]["message"]
    with live.client() as c:  # a label never points at a version that is not ready
        assert c.put(f"/api/kb/{name}/labels/prod", json={"version": 1}).status_code == 409


def test_a_search_during_a_build_answers_409_until_the_version_is_ready(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    fresh = [{**d, "text": f"{d['text']} {uuid.uuid4().hex}"} for d in DOCS[:3]]  # no stored vectors to re-use
    fake.embedding_delay = 1.5
    started = start_build(live, name, dataset(live, fresh))
    r = search(live, name, query="zebra", mode="text")
    assert r.status_code == 409 and "building" in r.json()["error"]["message"], r.text
    r = search(live, name, query="zebra", mode="text", version=1)
    assert r.status_code == 409 and "building" in r.json()["error"]["message"], r.text
    with live.client() as c:
        assert c.get(f"/api/kb/{name}").json()["versions"][0]["status"] == "building"
    fake.embedding_delay = 0.0
    assert job_done(live, started["job"]["id"])["status"] == "succeeded"
    assert top_docs(search(live, name, query="zebras zoo", mode="text")) == ["zoo"]


def test_a_knowledge_base_belongs_to_its_project(live: LiveServer) -> None:
    owner = project_key(live, "kb-owner")
    viewer = project_key(live, "kb-owner", role="viewer")
    other = project_key(live, "kb-other")
    name = create(live, owner)
    ref = dataset(live, DOCS, key=owner)
    built(live, name, ref, owner)
    assert top_docs(search(live, name, viewer, query="zebra zoo zanzibar", mode="hybrid", k=1)) == ["zoo"]
    r = search(live, name, other, query="zebra zoo zanzibar", mode="text")
    assert r.status_code == 404 and "kb-owner" not in r.text
    with live.client(other) as c:
        assert c.get(f"/api/kb/{name}").status_code == 404
        assert name not in c.get("/api/kb").text
        body = {"dataset": ref, "embedding_model": EMBED, "chunker": CHARS}
        assert c.post(f"/api/kb/{name}/build", json=body).status_code == 404
        assert c.put(f"/api/kb/{name}/labels/prod", json={"version": 1}).status_code == 404
        r = c.post("/api/kb", json={"name": name})
        assert r.status_code == 409 and "another project" in r.json()["error"]["message"]
        # another project's dataset is not found for a build of one's own knowledge base either
        mine = create(live, other)
        assert c.post(f"/api/kb/{mine}/build", json={**body, "dataset": ref}).status_code == 404
    with live.client(viewer) as c:
        assert c.get(f"/api/kb/{name}").status_code == 200
        body = {"dataset": ref, "embedding_model": EMBED, "chunker": CHARS}
        assert c.post(f"/api/kb/{name}/build", json=body).status_code == 403
        assert c.put(f"/api/kb/{name}/labels/prod", json={"version": 1}).status_code == 403
        assert c.post("/api/kb", json={"name": _name("kb")}).status_code == 403


QUERIES = [
    {"query": "zebras doze in the zoo", "relevant": ["zoo"]},
    {"query": "bread with butter and flour", "relevant": "bake#0"},
    {"query": "quirky queens questions", "relevant": ["quiz", "bake"]},
    {"query": "rivers hills towns road", "relevant": ["long"]},
]


def test_retrieval_metrics_of_two_versions_side_by_side(live: LiveServer) -> None:
    name = create(live)
    docs = dataset(live, DOCS)
    built(live, name, docs)
    built(live, name, docs, chunker={"unit": "chars", "size": 60, "overlap": 0})
    queries = dataset(live, QUERIES)
    with live.client() as c:
        r = c.post(f"/api/kb/{name}/eval", json={"dataset": queries, "versions": [1, 2], "k": 3, "mode": "text"})
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["queries"] == 4 and result["k"] == 3 and [v["version"] for v in result["versions"]] == [1, 2]
        first = result["versions"][0]
        rows = {row["query"]: row for row in first["rows"]}
        zoo = rows["zebras doze in the zoo"]
        assert zoo["first_rank"] == 1 and zoo["retrieved"][0] == "zoo#0", zoo
        # one of two relevant documents found: recall 1/2, nDCG below 1
        quiz = rows["quirky queens questions"]["scores"]
        assert quiz["hit_rate"] == 1.0 and quiz["recall"] == 0.5 and quiz["ndcg"] < 1.0
        assert first["metrics"]["hit_rate"] == 1.0 and first["metrics"]["mrr"] == 1.0
        assert 0 < first["metrics"]["recall"] < 1 and first["intervals"]["recall"]["n"] == 4
        assert set(result["comparison"]) == {"hit_rate", "mrr", "ndcg", "recall"}
        assert result["comparison"]["mrr"]["n"] == 4
        # vector mode embeds the queries with each version's model
        r = c.post(f"/api/kb/{name}/eval", json={"dataset": queries, "k": 1, "mode": "vector", "rows": 0})
        assert (
            r.status_code == 200 and r.json()["versions"][0]["version"] == 2 and r.json()["versions"][0]["rows"] == []
        )
        assert r.json()["versions"][0]["metrics"]["hit_rate"] >= 0.5
        # bad input names what was wrong
        bad = [
            ({"query_field": "question"}, "query_field"),
            ({"relevant_field": "gold"}, "relevant_field"),
            ({"mode": "fuzzy"}, "mode"),
            ({"dataset": docs, "query_field": "text", "relevant_field": "n"}, "relevant_field"),
        ]
        for change, field in bad:
            r = c.post(f"/api/kb/{name}/eval", json={"dataset": queries, **change})
            assert r.status_code == 400 and r.json()["error"]["details"]["field"] == field, (change, r.text)
        assert c.post(f"/api/kb/{name}/eval", json={"dataset": queries, "versions": [1, 2, 1]}).status_code in (
            400,
            422,
        )
        assert c.post(f"/api/kb/{name}/eval", json={"dataset": queries, "versions": [9]}).status_code == 404


def test_a_similarity_floor_and_re_ranking_by_a_model(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    built(live, name, dataset(live, DOCS))
    everything = search(live, name, query="zebra zoo zanzibar", mode="vector", k=50).json()["hits"]
    floor = sorted(h["similarity"] for h in everything)[-3]  # the third best similarity
    kept = search(live, name, query="zebra zoo zanzibar", mode="vector", k=50, min_similarity=floor).json()["hits"]
    assert len(kept) == 3 and all(h["similarity"] >= floor for h in kept)
    r = search(live, name, query="zebra", mode="text", min_similarity=0.5)
    assert r.status_code == 400 and "vector" in r.json()["error"]["message"]
    # an embedding model re-scores the text search's candidates by cosine: best first, each with its score
    r = search(live, name, query="zebras doze", mode="text", k=2, rerank_model=EMBED, rerank_candidates=10)
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert len(hits) <= 2 and hits[0]["doc_id"] == "zoo" and hits[0]["rerank"] is not None
    assert [h["rerank"] for h in hits] == sorted((h["rerank"] for h in hits), reverse=True)
    bad = search(live, name, query="zebras", mode="text", rerank_model="no-such-model")
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "rerank_model"
    assert search(live, name, query="zebras", k=5, rerank_model=EMBED, rerank_candidates=3).status_code == 400
    # re-ranking calls a model the caller chose: a viewer may search but not re-rank
    member, viewer = project_key(live, "kb-rerank"), project_key(live, "kb-rerank", "viewer")
    mine = create(live, member)
    built(live, mine, dataset(live, DOCS, member), member)
    assert top_docs(search(live, mine, viewer, query="zebras doze", mode="text", k=1)) == ["zoo"]
    r = search(live, mine, viewer, query="zebras doze", mode="text", rerank_model=EMBED)
    assert r.status_code == 403 and "member" in r.json()["error"]["message"], r.text
    assert search(live, mine, member, query="zebras doze", mode="text", rerank_model=EMBED).status_code == 200
