"""The gateway's caches with real embeddings: the semantic cache embeds prompts with the built-in MiniLM
model, in-process and in Redis shared by two gateway workers; the exact cache through Redis too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from podium.tracing.store import Trace
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, serve_for_module
from .fakes import FakeServer, start_fake_openai
from .serving import ServedPodium, start_serving

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France?"
PARAPHRASE = "what's the capital city of France?"
UNRELATED = "How long should I knead bread dough?"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    server = start_fake_openai()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServedPodium]:
    """`podium serve` with MiniLM in a model worker and two gateway workers sharing Redis."""
    s = start_serving(
        tmp_path_factory.mktemp("sem-served"),
        models="minilm-l6-v2",
        env={"PODIUM_WORKERS": "2", "PODIUM_REDIS_URL": redis_url},
    )
    yield s
    s.stop()


def route(upstream: FakeServer, name: str, **cache: Any) -> dict[str, Any]:
    deployment = {
        "provider": "openai",
        "base_url": upstream.url + "/v1",
        "model": "m",
        "price": {"input": 1, "output": 1},
    }
    return {"name": name, "deployments": [deployment], "cache": cache}


def add_route(url: str, key: str, body: dict[str, Any]) -> None:
    """Add a route and wait until every worker knows it (the others reload within their refresh period)."""
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(url + "/api/routes", json=body, headers=auth, timeout=30)
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 10
    streak = 0
    while streak < 8 and time.monotonic() < deadline:
        known = httpx.get(f"{url}/v1/models/{body['name']}", headers=auth, timeout=10).status_code == 200
        streak = streak + 1 if known else 0
    assert streak == 8, f"route {body['name']} did not reach every worker"


def ask(client: openai.OpenAI, model: str, text: str, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], temperature=0, **kw
    )


def semantic_flow(client: openai.OpenAI, upstream: FakeServer, model: str) -> list[str]:
    """The same checks for either store; returns the trace ids of the hits."""
    before = upstream.chats
    assert ask(client, model, QUESTION).headers["x-podium-cache"] == "miss"
    hits = []
    for _ in range(4):  # with two workers, the hits come from whichever worker takes the request
        r = ask(client, model, PARAPHRASE)
        assert r.headers["x-podium-cache"] == "semantic-hit"
        assert r.parse().choices[0].message.content == f"echo: {QUESTION}"
        hits.append(r.headers["x-podium-trace-id"])
    assert upstream.chats == before + 1
    assert ask(client, model, UNRELATED).headers["x-podium-cache"] == "miss"  # not close enough
    assert ask(client, model, PARAPHRASE, max_tokens=5).headers["x-podium-cache"] == "miss"  # other parameters
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PARAPHRASE}], temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == f"echo: {QUESTION}"
    assert upstream.chats == before + 3
    return hits


def test_semantic_cache_in_redis_is_shared_by_the_workers(served: ServedPodium, upstream: FakeServer) -> None:
    add_route(served.url, served.key, route(upstream, "faq", semantic_threshold=0.8))
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)
    semantic_flow(client, upstream, "faq")


def test_exact_cache_in_redis_is_shared_by_the_workers(served: ServedPodium, upstream: FakeServer) -> None:
    add_route(served.url, served.key, route(upstream, "exact", exact=True))
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)
    before = upstream.chats
    statuses = [ask(client, "exact", "same question").headers["x-podium-cache"] for _ in range(6)]
    assert statuses == ["miss"] + ["hit"] * 5 and upstream.chats == before + 1


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, served: ServedPodium) -> Iterator[LiveServer]:
    """An in-process gateway (no Redis) that embeds with the served MiniLM through a route."""
    yield from serve_for_module("sqlite", tmp_path_factory.mktemp("sem-gw"))


def test_semantic_cache_in_process_records_hits_at_no_cost(
    gw: LiveServer, served: ServedPodium, upstream: FakeServer
) -> None:
    minilm = {"provider": "openai", "base_url": served.url + "/v1", "model": "minilm-l6-v2", "api_key": served.key}
    add_route(gw.url, gw.admin_key, {"name": "minilm-remote", "deployments": [minilm]})
    add_route(gw.url, gw.admin_key, route(upstream, "faq", semantic_threshold=0.8, embedding_model="minilm-remote"))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.admin_key, max_retries=0)
    hits = semantic_flow(client, upstream, "faq")
    assert gw.app.state.runtime.get(TraceWriter).flush(10)
    with gw.platform.db.read_session() as s:
        row = s.scalar(select(Trace).where(Trace.id == hits[0]))
        assert row is not None and (row.cache_status, row.cost_micros, row.attempts) == ("semantic-hit", 0, 0)


def test_a_broken_embedding_model_means_no_cache_not_an_error(gw: LiveServer, upstream: FakeServer) -> None:
    add_route(gw.url, gw.admin_key, route(upstream, "faq-broken", semantic_threshold=0.8, embedding_model="nothing"))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.admin_key, max_retries=0)
    r = ask(client, "faq-broken", QUESTION)
    assert r.headers["x-podium-cache"] == "error" and r.parse().choices[0].message.content == f"echo: {QUESTION}"


def test_the_in_process_store_keeps_a_bounded_number_of_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    # every set of request parameters is a scope: before, clients could make them without end
    import asyncio

    import numpy as np

    from podium.gateway import semantic

    monkeypatch.setattr(semantic, "MAX_SCOPES", 50)
    store = semantic.MemorySemanticStore()
    vector = np.ones(4, dtype=np.float32) / 2

    async def fill() -> None:
        for i in range(500):
            await store.add(f"scope-{i}", vector, {"i": i}, ttl=60)
        await store.add("scope-460", vector, {"i": "again"}, ttl=60)  # recently used: kept
        await store.add("scope-new", vector, {"i": "new"}, ttl=60)

    asyncio.run(fill())
    assert len(store._scopes) == 50
    assert asyncio.run(store.nearest("scope-460", vector, 0.9)) is not None
    assert asyncio.run(store.nearest("scope-0", vector, 0.9)) is None
