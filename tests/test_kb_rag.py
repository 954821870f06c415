"""Retrieval-augmented chat through the gateway with the plain `openai` SDK: a `retrieval` field names a
knowledge-base version; the upstream sees the chunks in its prompt (a system message, or where a prompt
version's `{{ context }}` puts them); the answer carries `citations` (body and header, streamed or not); the
trace gets a retriever span with the query and the hits; re-ranking by a chat or an embedding model; bad
references, a version still building and another project's knowledge base are refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from podium.gateway.table import RouteTable
from podium.prompts.directory import PromptDirectory

from .conftest import LiveServer, project_key, serve_for_module
from .evalfake import EvalFake, Rule, start_eval_fake
from .test_kb import DOCS, EMBED, built, create, dataset, start_build

CHAT = "kb-chat"


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    """The gateway's retrieval reads the database through the knowledge-base services that tests/test_kb.py
    runs on both databases: these run on SQLite alone."""
    for live in serve_for_module("sqlite", tmp_path_factory.mktemp("rag")):
        with live.client() as c:
            for model in (EMBED, CHAT):
                deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": model}
                r = c.post("/api/routes", json={"name": model, "deployments": [deployment]})
                assert r.status_code == 201, r.text
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


@pytest.fixture(scope="module")
def kb(live: LiveServer) -> str:
    """A knowledge base of DOCS, version 1 labelled prod."""
    name = create(live)
    built(live, name, dataset(live, DOCS))
    with live.client() as c:
        assert c.put(f"/api/kb/{name}/labels/prod", json={"version": 1}).status_code == 200
    return name


@pytest.fixture(autouse=True)
def _reset(fake: EvalFake) -> None:
    fake.reset()


def sdk(live: LiveServer, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=key or live.admin_key, max_retries=0)


def stored_spans(live: LiveServer, trace_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    with live.client() as c:
        while True:
            r = c.get(f"/api/traces/{trace_id}")
            if r.status_code == 200:
                spans = c.get(f"/api/traces/{trace_id}/spans").json()["spans"]
                return {"trace": r.json(), "spans": spans}
            assert r.status_code == 404 and time.monotonic() < deadline, r.text
            time.sleep(0.1)


def upstream_chats(fake: EvalFake) -> list[dict[str, Any]]:
    return [body for body in fake.requests if "messages" in body]


def test_a_chat_with_retrieval_cites_its_chunks_and_traces_a_retriever_span(
    live: LiveServer, fake: EvalFake, kb: str
) -> None:
    raw = sdk(live).chat.completions.with_raw_response.create(
        model=CHAT,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "zebras in the zoo"}],
        extra_body={"retrieval": {"kb": f"{kb}@prod", "k": 2, "mode": "hybrid"}},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: zebras in the zoo"
    citations = (completion.model_extra or {})["citations"]
    assert len(citations) == 2 and citations[0]["doc_id"] == "zoo" and citations[0]["index"] == 1
    first = citations[0]
    assert first["id"] == "zoo#0" and first["source"] == "animals" and first["kb"] == f"{kb}@1"
    assert (first["start"], first["end"]) == (0, len(DOCS[0]["text"])) and first["text"] == DOCS[0]["text"]
    assert raw.headers["x-podium-citations"].split(",") == [c["id"] for c in citations]
    assert raw.headers["x-podium-kb-version"] == f"{kb}@1"
    # the upstream saw the chunks numbered in a system message after the caller's own
    (sent,) = upstream_chats(fake)
    assert "retrieval" not in sent
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "system", "user"] and sent["messages"][0]["content"] == "Be brief."
    assert f"[1] (source: animals, zoo#0)\n{DOCS[0]['text']}" in sent["messages"][1]["content"]
    # the trace: a retriever span with the query and the hits, beside the model's span
    stored = stored_spans(live, raw.headers["x-podium-trace-id"])
    assert stored["trace"]["span_count"] == 2 and stored["trace"]["metadata"]["kb"] == f"{kb}@1"
    (retriever,) = [s for s in stored["spans"] if s["kind"] == "retriever"]
    assert retriever["name"] == f"retrieve {kb}@1" and retriever["attributes"]["hits"] == 2
    assert retriever["attributes"]["version"] == 1 and retriever["dataset_version_id"]
    # span payloads answer as JSON (issue 21): the query and the hits as objects
    assert "zebras in the zoo" in json.dumps(retriever["input"]) and '"zoo#0"' in json.dumps(retriever["output"])
    assert {s["kind"] for s in stored["spans"]} == {"retriever", "llm"}


def test_streamed_answers_carry_the_citations_in_their_first_chunk(live: LiveServer, kb: str) -> None:
    stream = sdk(live).chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "bread butter flour"}],
        stream=True,
        extra_body={"retrieval": {"kb": kb, "k": 1, "mode": "text"}},
    )
    chunks = list(stream)
    cited = [c for c in chunks if (c.model_extra or {}).get("citations")]
    assert len(cited) == 1 and cited[0] is chunks[0]
    assert (cited[0].model_extra or {})["citations"][0]["doc_id"] == "bake"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: bread butter flour"


def test_a_prompt_version_places_the_context_where_it_says(live: LiveServer, fake: EvalFake, kb: str) -> None:
    prompt = {
        "name": f"rag-{kb}",
        "messages": [
            {"role": "system", "content": "Sources:\n{{ context }}\nEnd of sources."},
            {"role": "user", "content": "{{ question }}"},
        ],
        "variables": {"question": {"type": "string"}, "context": {"type": "string", "default": ""}},
        "model": {"name": CHAT},
    }
    with live.client() as c:
        assert c.post("/api/prompts", json=prompt).status_code in (200, 201)
    live.app.state.runtime.get(PromptDirectory).refresh()
    completion = sdk(live).chat.completions.create(
        model=CHAT,
        messages=[],
        extra_body={
            "prompt": {"name": prompt["name"], "version": 1, "variables": {"question": "quirky quiz questions"}},
            "retrieval": {"kb": kb, "k": 1, "mode": "text"},
        },
    )
    assert (completion.model_extra or {})["citations"][0]["doc_id"] == "quiz"
    (sent,) = upstream_chats(fake)
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]  # no extra system message
    assert sent["messages"][0]["content"].startswith("Sources:\n[1] (source: school, quiz#0)")
    assert sent["messages"][1]["content"] == "quirky quiz questions"


def test_rerank_by_a_chat_judge_and_by_an_embedding_model(live: LiveServer, fake: EvalFake, kb: str) -> None:
    # the judge says yes to the baking passage only: it comes first, whatever the retrieval's order
    fake.rules.append(Rule(contains="Passage: Bake bread", text="yes", top={"yes": 0.9, "no": 0.1}))
    fake.rules.append(Rule(contains="Passage:", text="no", top={"no": 0.8, "yes": 0.2}))
    completion = sdk(live).chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "zebras in the zoo"}],
        extra_body={"retrieval": {"kb": kb, "k": 2, "mode": "vector", "rerank": {"model": CHAT, "candidates": 10}}},
    )
    citations = (completion.model_extra or {})["citations"]
    assert citations[0]["doc_id"] == "bake" and len(citations) == 2
    judged = [b for b in upstream_chats(fake) if b["messages"][0]["content"].startswith("You judge search results")]
    assert len(judged) == 7 and all(b["max_tokens"] == 1 and b["logprobs"] is True for b in judged)
    # an embedding model re-scores by cosine: the zoo passage is closest to a query about zebras
    fake.reset()
    completion = sdk(live).chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "zebras zoo zanzibar"}],
        extra_body={"retrieval": {"kb": kb, "k": 1, "mode": "text", "rerank": {"model": EMBED, "candidates": 4}}},
    )
    assert (completion.model_extra or {})["citations"][0]["doc_id"] == "zoo"


def test_bad_retrieval_requests_are_refused_naming_the_problem(live: LiveServer, fake: EvalFake, kb: str) -> None:
    client = sdk(live)
    msg = [{"role": "user", "content": "zebras"}]
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"kb": "no-such-kb"}, openai.NotFoundError, "no-such-kb"),
        ({"kb": f"{kb}@nolabel"}, openai.NotFoundError, "nolabel"),
        ({"kb": kb, "k": 0}, openai.BadRequestError, "retrieval.k"),
        ({"kb": kb, "mode": "fuzzy"}, openai.BadRequestError, "retrieval.mode"),
        ({"kb": kb, "kk": 1}, openai.BadRequestError, "retrieval.kk"),
        ({"kb": kb, "filter": {"sorce": ["x"]}}, openai.BadRequestError, "sorce"),
        ({"kb": kb, "rerank": {"model": "no-such-model"}}, openai.BadRequestError, "no-such-model"),
    ]
    for retrieval, error, said in cases:
        with pytest.raises(error) as caught:
            client.chat.completions.create(model=CHAT, messages=msg, extra_body={"retrieval": retrieval})
        assert said in str(caught.value), (retrieval, caught.value)
    with pytest.raises(openai.BadRequestError, match="only taken by chat"):
        client.embeddings.create(model=EMBED, input="x", extra_body={"retrieval": {"kb": kb}})
    assert upstream_chats(fake) == []  # nothing reached the model
    # another project's key does not see the knowledge base
    other = sdk(live, project_key(live, "rag-other"))
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(model=CHAT, messages=msg, extra_body={"retrieval": {"kb": kb}})


def test_a_version_still_building_answers_409(live: LiveServer, fake: EvalFake) -> None:
    name = create(live)
    fake.embedding_delay = 1.0
    started = start_build(live, name, dataset(live, DOCS))
    with pytest.raises(openai.ConflictError, match="still building"):
        sdk(live).chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "zebras"}],
            extra_body={"retrieval": {"kb": f"{name}@{started['version']['version']}"}},
        )
    fake.embedding_delay = 0.0


def eval_run(live: LiveServer, spec: dict[str, Any]) -> dict[str, Any]:
    with live.client() as c:
        r = c.post("/api/evals/runs", json=spec)
        assert r.status_code in (200, 201, 202), r.text
        run_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            run = c.get(f"/api/evals/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                rows = c.get(f"/api/evals/runs/{run_id}/rows").json()
                return {"run": run, "rows": rows["rows"]}
            assert time.monotonic() < deadline, run
            time.sleep(0.1)


def test_rag_metrics_run_on_a_knowledge_base_version(live: LiveServer, fake: EvalFake, kb: str) -> None:
    fake.rules[:] = [
        Rule("Can each statement be attributed", "1: yes\n2: no"),
        Rule("Is each passage useful", "1: yes\n2: no"),
    ]
    rows = [{"input": "zebras in the zoo", "reference": "Zebras doze in the zoo. Bread needs an oven."}]
    spec = {
        "dataset": dataset(live, rows),
        "target": {"model": CHAT, "retrieval": {"kb": f"{kb}@prod", "k": 2, "mode": "vector"}},
        "judge": CHAT,
        "evaluators": ["context_recall", {"type": "context_precision", "name": "precision"}],
    }
    done = eval_run(live, spec)
    assert done["run"]["status"] == "succeeded" and done["run"]["evaluator_errors"] == 0, done["run"]
    assert done["run"]["target"]["retrieval"]["kb"] == f"{kb}@prod"
    (row,) = done["rows"]
    assert row["scores"]["context_recall"] == 0.5 and row["scores"]["precision"] == 1.0
    # the judges saw the chunks the target's answer cited, numbered
    judged = [b for b in upstream_chats(fake) if "Can each statement be attributed" in str(b["messages"])]
    assert judged and f"[1] {DOCS[0]['text']}" in str(judged[0]["messages"])
    # a knowledge base the caller cannot search is refused before any row runs
    with live.client() as c:
        bad = {**spec, "target": {"model": CHAT, "retrieval": {"kb": "no-such-kb"}}}
        r = c.post("/api/evals/runs", json=bad)
        assert r.status_code == 404 and "target.retrieval" in r.json()["error"]["message"], r.text
