"""The gateway end to end: routes over fake upstreams on loopback, driven by the official `openai` SDK and by
raw HTTP; routing strategies, retries, fallbacks, breakers, streaming, faults and the trace records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from podium.tracing.store import Span, Trace
from podium.tracing.writer import TraceWriter

from .conftest import (
    LiveServer,
    free_port,
    make_db_url,
    make_settings,
    release_db_url,
    run_cli,
    serve_for_module,
    start_server,
)
from .fakes import FakeServer, start_fake_openai


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeServer, FakeServer]]:
    a, b = start_fake_openai(), start_fake_openai()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp(f"gw-{backend}")
    yield from serve_for_module(backend, folder, stream_keepalive=0.3, max_body_bytes=64 * 1024)


@pytest.fixture(autouse=True)
def _reset(upstreams: tuple[FakeServer, FakeServer]) -> None:
    for u in upstreams:
        u.forced, u.forced_times, u.fail_every, u.chats = None, -1, 0, 0
        u.usage, u.word_delay = None, 0.0
        u.requests.clear()
        u.headers.clear()


def dep(server: FakeServer, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "base_url": server.url + "/v1", "model": f"up-{name}", **extra}


def put_route(gw: LiveServer, body: dict[str, Any]) -> dict[str, Any]:
    with gw.client() as c:
        c.delete(f"/api/routes/{body['name']}")
        r = c.post("/api/routes", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def sdk(gw: LiveServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.admin_key, max_retries=0, **kw)


def chat(client: openai.OpenAI, model: str, text: str = "hello", **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


def traces(gw: LiveServer, trace_id: str | None = None) -> list[Trace]:
    assert gw.app.state.runtime.get(TraceWriter).flush(10)
    with gw.platform.db.read_session() as s:
        q = select(Trace).order_by(Trace.start_time)
        if trace_id:
            q = q.where(Trace.id == trace_id)
        return list(s.scalars(q))


# --- routes API ------------------------------------------------------------------------------------


def test_route_crud_keeps_credentials_secret(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    body = {"name": "crud-route", "deployments": [dep(a, "a", api_key="sk-secret-123", weight=2)], "retries": 1}
    info = put_route(gw, body)
    assert info["deployments"][0]["api_key_set"] is True
    assert "sk-secret-123" not in str(info)
    with gw.client() as c:
        listed = c.get("/api/routes").text
        assert "crud-route" in listed and "sk-secret-123" not in listed
        # replacing without api_key keeps the stored one
        r = c.put("/api/routes/crud-route", json={"deployments": [dep(a, "a", weight=5)]})
        assert r.status_code == 200, r.text
        assert r.json()["deployments"][0]["api_key_set"] is True
        audit = c.get("/api/audit", params={"object_type": "route"}).json()
        assert {"route.create", "route.update"} <= {row["action"] for row in audit["items"]}
    # the key reaches the upstream, decrypted
    chat(sdk(gw), "crud-route")
    assert a.headers[-1]["Authorization"] == "Bearer sk-secret-123"
    # the stored key is never sent to another host: moving the deployment needs the key again
    _, b = upstreams
    with gw.client() as c:
        r = c.put("/api/routes/crud-route", json={"deployments": [dep(b, "a")]})
        assert r.status_code == 400 and "give its api_key again" in r.json()["error"]["message"], r.text
        r = c.put("/api/routes/crud-route", json={"deployments": [dep(b, "a", api_key="sk-for-b")]})
        assert r.status_code == 200, r.text
    with gw.client() as c:
        assert c.delete("/api/routes/crud-route").status_code == 204
        assert c.get("/api/routes/crud-route").status_code == 404


def test_deployment_headers_are_stored_encrypted_and_a_rotated_secret_key_still_reads_them(
    backend_url: str, tmp_path: Path, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    from podium.core.config import load_settings
    from podium.core.identity import Actor
    from podium.core.platform import Platform
    from podium.gateway.admin import create_route, load_route_specs
    from podium.gateway.store import GatewayRoute
    from podium.server.serve import prepare

    from .conftest import prepared_platform

    a, _ = upstreams
    settings = make_settings(tmp_path / "home", backend_url, secret_key="first-secret-key-0123456789")
    platform, _ = prepared_platform(settings)
    body = {"name": "hdr", "deployments": [dep(a, "a", api_key="sk-1", headers={"x-tenant-token": "tok-42"})]}
    create_route(platform, Actor.system(), body)
    with platform.db.read_session() as s:
        stored = str(s.scalar(select(GatewayRoute.deployments).where(GatewayRoute.name == "hdr")))
    assert "tok-42" not in stored and "sk-1" not in stored
    # the server secret is rotated: the old one is given as previous, and `podium serve` re-encrypts
    rotated = load_settings(
        home=str(tmp_path / "home"),
        database_url=backend_url,
        secret_key="second-secret-key-0123456789",
        secret_key_previous=["first-secret-key-0123456789"],
    )
    prepare(rotated, register_builtins=False)
    only_new = Platform.from_settings(load_settings(home=str(tmp_path / "home"), database_url=backend_url,
                                                    secret_key="second-secret-key-0123456789"))  # fmt: skip
    (spec,) = [r for r in load_route_specs(only_new) if r.name == "hdr"]
    deployment = spec.deployments[0]
    assert deployment.headers == {"x-tenant-token": "tok-42"} and deployment.api_key is not None
    assert deployment.api_key.get_secret_value() == "sk-1"


def test_route_validation_errors_name_the_field(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    with gw.client() as c:
        r = c.post("/api/routes", json={"name": "bad", "deployments": [{"provider": "openai", "model": "m"}]})
        assert r.status_code == 400
        assert "base_url" in r.json()["error"]["message"]
        r = c.post("/api/routes", json={"name": "bad", "strategy": "fastest", "deployments": [dep(a, "a")]})
        assert r.status_code == 400 and "strategy" in r.json()["error"]["message"]
        r = c.post("/api/routes", json={"name": "bad", "deployments": []})
        assert r.status_code == 400 and "deployments" in r.json()["error"]["message"]
        r = c.post("/api/routes", json={"name": "has@at", "deployments": [dep(a, "a")]})
        assert r.status_code == 400 and "name" in r.json()["error"]["message"]
        assert c.get("/api/routes/bad").status_code == 404  # nothing half-created


def test_viewer_cannot_manage_routes(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    with gw.client() as c:
        key = c.post("/api/keys", json={"name": "v", "role": "viewer"}).json()["key"]
    with gw.client(key) as c:
        r = c.post("/api/routes", json={"name": "x", "deployments": [dep(upstreams[0], "a")]})
        assert r.status_code == 403
        assert c.get("/api/routes").status_code == 200


# --- routing -------------------------------------------------------------------------------------------


def test_weighted_split_is_sticky_by_user(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, b = upstreams
    put_route(gw, {"name": "canary", "deployments": [dep(a, "stable", weight=80), dep(b, "canary", weight=20)]})
    client = sdk(gw)
    seen: dict[str, set[str]] = {}
    for i in range(40):
        user = f"user-{i % 8}"
        raw = chat(client, "canary", user=user)
        seen.setdefault(user, set()).add(raw.headers["x-podium-deployment"])
    assert all(len(d) == 1 for d in seen.values()), seen  # each user always lands on the same deployment
    anonymous = {chat(client, "canary").headers["x-podium-deployment"] for _ in range(60)}
    assert anonymous == {"stable", "canary"}  # without a user, both share the traffic
    assert a.requests[-1]["model"] == "up-stable" or b.requests[-1]["model"] == "up-canary"


def test_round_robin_alternates(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, b = upstreams
    put_route(gw, {"name": "rr", "strategy": "round-robin", "deployments": [dep(a, "a"), dep(b, "b")]})
    client = sdk(gw)
    order = [chat(client, "rr").headers["x-podium-deployment"] for _ in range(6)]
    assert all(order[i] != order[i + 1] for i in range(5)), order


def test_lowest_cost_prefers_the_cheaper_deployment(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, b = upstreams
    put_route(
        gw,
        {
            "name": "cheap",
            "strategy": "lowest-cost",
            "deployments": [
                dep(a, "pricey", price={"input": 5.0, "output": 15.0}),
                dep(b, "cheap", price={"input": 0.1, "output": 0.4}),
            ],
        },
    )
    raw = chat(sdk(gw), "cheap")
    assert raw.headers["x-podium-deployment"] == "cheap"
    t = traces(gw, raw.headers["x-podium-trace-id"])[0]
    assert (t.prompt_tokens, t.completion_tokens) == (11, 7)
    assert t.cost_micros == 4  # 11 x 0.1 + 7 x 0.4 = 3.9 micro-dollars, rounded up


def test_fallback_on_5xx_and_retry_to_another_deployment(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, b = upstreams
    a.forced = "fail:503"
    put_route(gw, {"name": "backup", "deployments": [dep(b, "backup-b")]})
    put_route(
        gw,
        {"name": "primary", "deployments": [dep(a, "broken")], "retries": 1, "backoff": 0.01, "fallbacks": ["backup"]},
    )
    raw = chat(sdk(gw), "primary")
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert raw.headers["x-podium-deployment"] == "backup-b"
    assert raw.headers["x-podium-attempts"] == "3"  # broken twice (a retry), then the fallback
    assert raw.headers["x-podium-route"] == "backup"
    t = traces(gw, raw.headers["x-podium-trace-id"])[0]
    assert (t.status, t.attempts, t.deployment, t.model) == ("ok", 3, "backup-b", "primary")


def test_retry_after_is_honoured(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    a.forced, a.forced_times = "fail:429", 1  # the fake says Retry-After: 2
    put_route(gw, {"name": "limited", "deployments": [dep(a, "a")], "retries": 1, "backoff": 0.01})
    started = time.monotonic()
    raw = chat(sdk(gw), "limited")
    assert raw.headers["x-podium-attempts"] == "2"
    assert time.monotonic() - started >= 1.9  # waited for Retry-After, not the 10 ms backoff
    # a Retry-After longer than the route waits: no retry, the 429 comes back with its header
    a.forced, a.forced_times = "fail:429", -1
    put_route(gw, {"name": "limited", "deployments": [dep(a, "a")], "retries": 3, "max_retry_wait": 0.5})
    with pytest.raises(openai.RateLimitError) as err:
        chat(sdk(gw), "limited")
    assert err.value.response.headers["retry-after"] == "2"
    assert err.value.response.headers["x-podium-attempts"] == "1"


def test_context_window_errors_fall_back_to_a_longer_context(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, b = upstreams
    a.forced = "too-long"
    put_route(gw, {"name": "long", "deployments": [dep(b, "long-b", context_window=128_000)]})
    put_route(gw, {"name": "short", "deployments": [dep(a, "short-a", context_window=4096)], "fallbacks": ["long"]})
    raw = chat(sdk(gw), "short")
    assert raw.headers["x-podium-deployment"] == "long-b"
    assert raw.headers["x-podium-attempts"] == "2"  # no retry of the same short deployment
    # bad requests are the client's fault: no fallback, the upstream's status and message come back
    with pytest.raises(openai.BadRequestError):
        chat(sdk(gw), "long", "too-long")


def test_circuit_breaker_cools_a_deployment_down_and_probes_it_back(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, b = upstreams
    a.forced = "fail:500"
    put_route(
        gw,
        {
            "name": "breaker",
            "strategy": "round-robin",
            "deployments": [dep(a, "flaky"), dep(b, "steady")],
            "retries": 1,
            "circuit": {"failures": 2, "cooldown": 1.0},
        },
    )
    client = sdk(gw)
    for _ in range(4):
        assert chat(client, "breaker").headers["x-podium-deployment"] == "steady"
    calls_while_open = a.chats
    for _ in range(5):
        chat(client, "breaker")
    assert a.chats == calls_while_open  # open: the flaky deployment gets nothing
    a.forced = None
    time.sleep(1.1)
    deployments = {chat(client, "breaker").headers["x-podium-deployment"] for _ in range(4)}
    assert "flaky" in deployments  # the probe succeeded, so it is back in rotation


def test_all_deployments_failing_gives_the_upstream_error(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    a.forced = "fail:502"
    put_route(gw, {"name": "down", "deployments": [dep(a, "a")], "retries": 0})
    with pytest.raises(openai.APIStatusError) as err:
        chat(sdk(gw), "down")
    assert err.value.status_code == 502
    assert "upstream says 502" in err.value.message
    t = traces(gw, err.value.response.headers["x-podium-trace-id"])[0]
    assert (t.status, t.http_status) == ("error", 502)


# --- streaming ------------------------------------------------------------------------------------------


def test_streaming_through_the_sdk_ends_with_usage(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "streamer", "deployments": [dep(a, "a")]})
    stream = sdk(gw).chat.completions.create(
        model="streamer",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18


def test_async_sdk_streams_too(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "streamer", "deployments": [dep(a, "a")]})

    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.admin_key, max_retries=0)
        stream = await client.chat.completions.create(
            model="streamer", messages=[{"role": "user", "content": "async words"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await client.close()
        return text

    assert asyncio.run(run()) == "echo: async words"


def test_keepalive_comments_while_waiting_for_the_first_token(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "slowpoke", "deployments": [dep(a, "a")]})
    body = {"model": "slowpoke", "messages": [{"role": "user", "content": "slow:1.2"}], "stream": True}
    with gw.client() as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        raw = b"".join(r.iter_bytes())
    assert raw.startswith(b": keep-alive\n\n")
    assert b"data: [DONE]" in raw and b'"content":"echo:"' in raw


def test_upstream_dying_mid_stream_ends_cleanly_and_is_traced(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "dropper", "deployments": [dep(a, "a")]})
    body = {"model": "dropper", "messages": [{"role": "user", "content": "drop-mid-stream"}], "stream": True}
    with gw.client() as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        raw = b"".join(r.iter_bytes()).decode()
        trace_id = r.headers["x-podium-trace-id"]
    events = [line for line in raw.split("\n\n") if line]
    assert '"error"' in events[-2] and events[-1] == "data: [DONE]"
    t = traces(gw, trace_id)[0]
    assert t.status == "error" and "mid-stream" in (t.error or "")


def test_client_disconnect_cancels_the_upstream_call(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "hanger", "deployments": [dep(a, "a")]})
    before = a.disconnected
    with pytest.raises(openai.APITimeoutError):
        sdk(gw, timeout=0.5).chat.completions.create(model="hanger", messages=[{"role": "user", "content": "hang"}])
    deadline = time.monotonic() + 5
    while a.disconnected == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.disconnected == before + 1
    rows = [t for t in traces(gw) if t.route == "hanger"]
    assert rows[-1].http_status == 499 and rows[-1].status == "error"


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "status", "param", "words"),
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"[1, 2]", 400, None, "JSON object"),
        (b'{"model": "x"}', 400, "messages", "'messages' is required"),
        (b'{"model": "", "messages": [{"role": "user", "content": "hi"}]}', 400, "model", "non-empty"),
        (b'{"model": "x", "messages": "hi"}', 400, "messages", "non-empty array"),
        (b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', 400, "stream", "boolean"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}', 404, "model", "nope"),
        # once written as they came into traces, where PostgreSQL refused the whole batch around them
        (
            b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "user": "' + b"u" * 201 + b'"}',
            400,
            "user",
            "at most 200 characters",
        ),
        (b'{"model": "x\\u0000", "messages": [{"role": "user", "content": "hi"}]}', 400, "model", "without NUL"),
    ],
)
def test_bad_requests_get_openai_errors(
    gw: LiveServer, content: bytes, status: int, param: str | None, words: str
) -> None:
    with gw.client() as c:
        r = c.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] and err["param"] == param and err["type"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/embeddings", {"model": "x", "input": 5}, "input"),
        ("/v1/embeddings", {"model": "x", "input": []}, "input"),
        ("/v1/embeddings", {"model": "x", "input": ["a", 1]}, "input"),
        ("/v1/embeddings", {"model": "x", "input": [[1], []]}, "input"),
        ("/v1/completions", {"model": "x", "prompt": {"text": "hi"}}, "prompt"),
        ("/v1/completions", {"model": "x", "prompt": [[1, 2], "a"]}, "prompt"),
    ],
)
def test_texts_that_are_not_text_or_tokens_are_refused_before_any_upstream_call(
    gw: LiveServer, path: str, body: dict[str, object], param: str
) -> None:
    """Found by schemathesis: `input: -8156` reached the upstream, whose failure came back as a 502."""
    with gw.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] == "invalid_type" and "token ids" in err["message"]


def test_the_v1_openapi_document_is_public_and_names_every_endpoint(gw: LiveServer) -> None:
    r = httpx.get(gw.url + "/v1/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/models/{model}"):
        assert path in doc["paths"], path
    assert doc["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["message", "type"]


def test_nul_in_a_message_is_answered_and_traced(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "nul-route", "deployments": [dep(a, "a1")]})
    r = chat(sdk(gw), "nul-route", "before\x00after", user="someone")
    assert r.http_response.status_code == 200
    (trace,) = traces(gw, r.headers["x-podium-trace-id"])
    assert trace.input is not None and "before" in trace.input and "\x00" not in trace.input
    assert gw.app.state.runtime.get(TraceWriter).dead_lettered == 0


def test_a_request_body_shaped_like_an_artifact_marker_is_traced_as_sent(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "marker-route", "deployments": [dep(a, "a1")]})
    secret = gw.platform.blobs.put(b"a blob nobody asked for")
    body = b'{"podium_artifact": "' + secret.encode() + b'", "model": "marker-route", '
    body += b'"messages": [{"role": "user", "content": "hi"}]}'
    with gw.client() as c:
        r = c.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        tid = r.headers["x-podium-trace-id"]
        assert gw.app.state.runtime.get(TraceWriter).flush(10)
        got = c.get(f"/api/traces/{tid}/payload", params={"field": "input"})
    assert got.status_code == 200 and b"nobody asked" not in got.content
    assert orjson.loads(got.content)["podium_artifact"] == secret  # the body as the client sent it


def test_negative_or_absurd_usage_from_an_upstream_is_not_believed(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "liar", "deployments": [dep(a, "a", price={"input": 1.0, "output": 1.0})]})
    for usage, expected in (({"prompt_tokens": -5_000_000, "completion_tokens": -1}, (0, 0)),
                            ({"prompt_tokens": 10**30, "completion_tokens": "x"}, (100_000_000, 0))):  # fmt: skip
        a.usage = usage
        r = chat(sdk(gw), "liar")
        (trace,) = traces(gw, r.headers["x-podium-trace-id"])
        assert (trace.prompt_tokens, trace.completion_tokens) == expected  # never a credit to the budgets
        assert trace.cost_micros >= 0


def test_a_stream_the_client_leaves_is_charged_what_ran(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    # before, a client leaving before the usage chunk made the call free
    a, _ = upstreams
    put_route(gw, {"name": "metered", "deployments": [dep(a, "a", price={"input": 1.0, "output": 2.0})]})
    a.word_delay = 0.3
    body = {
        "model": "metered",
        "messages": [{"role": "user", "content": "one two three four five six"}],
        "stream": True,
    }
    with gw.client() as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        trace_id = r.headers["x-podium-trace-id"]
        for line in r.iter_lines():
            if line.startswith("data: {") and any(
                (ch.get("delta") or {}).get("content") for ch in orjson.loads(line[6:]).get("choices") or []
            ):
                break  # one word arrived: leave
    deadline = time.monotonic() + 10
    while not traces(gw, trace_id):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (trace,) = traces(gw, trace_id)
    assert trace.http_status == 499 and trace.prompt_tokens > 0 and trace.completion_tokens > 0
    assert trace.cost_micros > 0
    with gw.platform.db.read_session() as s:
        span = s.scalar(select(Span).where(Span.trace_id == trace_id))
    assert span is not None and span.attributes.get("usage_estimated") is True


def test_rates_and_budgets_need_redis_with_several_workers(tmp_path: Path) -> None:
    from podium.core.config import load_settings
    from podium.core.errors import ConfigError, InvalidInput
    from podium.core.identity import Actor
    from podium.core.platform import Platform
    from podium.gateway.limits import check_stored_limits, set_limits
    from podium.server.serve import prepare

    one = load_settings(home=str(tmp_path / "h"))
    prepare(one, register_builtins=False)
    set_limits(Platform.from_settings(one), Actor.system(), "project", "default", {"rpm": 10})
    two = load_settings(home=str(tmp_path / "h"), workers=2)
    with pytest.raises(InvalidInput, match="need redis_url"):
        set_limits(Platform.from_settings(two), Actor.system(), "project", "default", {"daily_budget_usd": 5})
    set_limits(Platform.from_settings(two), Actor.system(), "project", "default", {"allowed_models": ["x*"]})
    check_stored_limits(two, Platform.from_settings(two).db)  # nothing counted: one worker or many alike
    set_limits(Platform.from_settings(one), Actor.system(), "project", "default", {"allowed_models": ["x*"], "tpm": 9})
    with pytest.raises(ConfigError, match="set redis_url, or run one worker"):
        check_stored_limits(two, Platform.from_settings(two).db)
    check_stored_limits(load_settings(home=str(tmp_path / "h"), workers=2, redis_url="redis://127.0.0.1:1/0"),
                        Platform.from_settings(one).db)  # fmt: skip


def test_body_over_the_limit_is_refused(gw: LiveServer) -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "a" * 100_000}]}
    with gw.client() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 413
    assert "error" in r.json()


def test_routes_are_listed_as_models(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    put_route(gw, {"name": "listed", "deployments": [dep(upstreams[0], "a")]})
    ids = {m.id for m in sdk(gw).models.list()}
    assert "listed" in ids
    assert sdk(gw).models.retrieve("listed").id == "listed"
    with pytest.raises(openai.NotFoundError) as err:  # an unknown name: the error names the routes one could use
        sdk(gw).chat.completions.create(model="lsited", messages=[{"role": "user", "content": "hi"}])
    assert "'lsited' not found" in str(err.value) and "listed" in str(err.value).split("routes:")[1]


# --- faults ---------------------------------------------------------------------------------------------


def test_a_flaky_upstream_under_load_every_answer_right_and_every_call_recorded(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, b = upstreams
    a.fail_every, b.fail_every = 3, 4
    put_route(
        gw,
        {
            "name": "flaky",
            "strategy": "least-busy",
            "deployments": [dep(a, "a"), dep(b, "b")],
            "retries": 1,
            "backoff": 0.01,
            "circuit": {"failures": 1000},
        },
    )
    before = len(traces(gw))

    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.admin_key, max_retries=0)

        async def one(i: int) -> Any:
            try:
                r = await client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": f"n{i}"}])
                return r.choices[0].message.content
            except openai.APIStatusError as exc:
                return exc

        out = await asyncio.gather(*(one(i) for i in range(80)))
        await client.close()
        return out

    results = asyncio.run(run())
    for i, r in enumerate(results):
        if isinstance(r, Exception):
            assert isinstance(r, openai.InternalServerError) and "upstream says 500" in r.message
        else:
            assert r == f"echo: n{i}"
    assert sum(isinstance(r, str) for r in results) >= 70  # a retry on the other deployment rescues most
    rows = [t for t in traces(gw)[before:] if t.route == "flaky"]
    assert len(rows) == 80
    assert sum(t.status == "error" for t in rows) == sum(isinstance(r, Exception) for r in results)
    with gw.platform.db.read_session() as s:
        ids = [t.id for t in rows]
        assert s.scalar(select(func.count()).select_from(Span).where(Span.trace_id.in_(ids))) == 80


def test_config_routes_from_podium_toml(tmp_path: Any, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    url = make_db_url("sqlite", tmp_path)
    route = {"name": "from-toml", "deployments": [dep(a, "toml-a")]}
    live = start_server(make_settings(tmp_path / "home", url, routes=[route]))
    try:
        raw = chat(sdk(live), "from-toml")
        assert raw.headers["x-podium-deployment"] == "toml-a"
    finally:
        live.stop()
        release_db_url("sqlite", url)


def test_metrics_show_the_writer(gw: LiveServer) -> None:
    text = httpx.get(gw.url + "/metrics").text
    assert "podium_trace_rows_written_total" in text
    assert "podium_trace_rows_dropped_total 0.0" in text


def metric(gw: LiveServer, name: str, **labels: str) -> float:
    """A sample's value on /metrics (0 when absent)."""
    for family in text_string_to_metric_families(httpx.get(gw.url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_metrics_per_route_and_model(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "metered", "deployments": [dep(a, "m-a", price={"input": 1, "output": 2})]})
    labels = {"route": "metered", "model": "up-m-a"}
    before = metric(gw, "podium_gateway_requests_total", status="200", **labels)
    tokens_before = metric(gw, "podium_gateway_tokens_total", type="completion", **labels)
    raw = chat(sdk(gw), "metered")
    usage = raw.parse().usage
    stream = sdk(gw).chat.completions.create(model="metered", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert metric(gw, "podium_gateway_requests_total", status="200", **labels) == before + 2
    assert (
        metric(gw, "podium_gateway_tokens_total", type="completion", **labels)
        > tokens_before + usage.completion_tokens - 1
    )
    assert metric(gw, "podium_gateway_cost_usd_total", **labels) > 0
    assert metric(gw, "podium_gateway_request_duration_seconds_count", route="metered") >= 2
    assert metric(gw, "podium_gateway_time_to_first_token_seconds_count", route="metered") >= 1
    unknown = metric(gw, "podium_gateway_errors_total", route="unknown")
    with pytest.raises(openai.NotFoundError):
        chat(sdk(gw), "no-such-route")
    assert metric(gw, "podium_gateway_errors_total", route="unknown") == unknown + 1


def test_routes_cli(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    env = {"PODIUM_URL": gw.url, "PODIUM_API_KEY": gw.admin_key}
    a, b = upstreams
    r = run_cli(
        "routes", "add", "cli-route", "--strategy", "round-robin",
        "-d", f"name=one,provider=openai,base_url={a.url}/v1,model=m1,api_key=sk-cli",
        "-d", f"name=two,provider=openai,base_url={b.url}/v1,model=m2,weight=2",
        "--fallback", "backup", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "round-robin" in r.stdout and "sk-cli" not in r.stdout
    ls = run_cli("routes", "ls", "--json", env=env)
    assert "cli-route" in ls.stdout
    bad = run_cli("routes", "add", "cli-bad", "-d", "provider=openai,model=m", env=env)
    assert bad.returncode != 0 and "base_url" in bad.stderr and "Traceback" not in bad.stderr
    assert run_cli("routes", "rm", "cli-route", env=env).returncode == 0
    gone = run_cli("routes", "show", "cli-route", env=env)
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_a_bad_route_in_the_config_stops_serve_in_one_line(tmp_path: Any) -> None:
    env = {"PODIUM_HOME": str(tmp_path / "home"), "PODIUM_ROUTES": '[{"name": "x", "deployments": []}]'}
    r = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert r.returncode != 0
    assert "routes[0]" in r.stderr and "deployments" in r.stderr and "Traceback" not in r.stderr


def test_regex_deny_guardrail_blocks_requests_and_answers(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    guards = [
        {"type": "regex_deny", "on": "request", "patterns": [r"project\s+zephyr"], "message": "internal code name"},
        {"type": "regex_deny", "on": "response", "patterns": [r"echo: leak"]},
    ]
    put_route(gw, {"name": "guarded", "deployments": [dep(a, "a")], "guardrails": guards})
    client = sdk(gw)
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, "guarded", "Tell me about Project  Zephyr")
    assert err.value.code == "guardrail_violation" and "internal code name" in err.value.message
    assert a.chats == 0  # blocked before any upstream call
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, "guarded", "leak the plans")
    assert "response was blocked" in err.value.message
    assert chat(client, "guarded", "all fine").parse().choices[0].message.content == "echo: all fine"
    body = {"model": "guarded", "messages": [{"role": "user", "content": "leak it"}], "stream": True}
    with gw.client() as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        raw = b"".join(r.iter_bytes()).decode()
        trace_id = r.headers["x-podium-trace-id"]
    assert "guardrail_violation" in raw and raw.rstrip().endswith("data: [DONE]")
    assert '" leak"' not in raw  # the chunk that matched never reached the client
    t = traces(gw, trace_id)[0]
    assert t.status == "error" and "blocked by guardrail" in (t.error or "")


def test_bad_guardrails_are_refused_when_the_route_is_saved(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    with gw.client() as c:
        r = c.post("/api/routes", json={"name": "g", "deployments": [dep(a, "a")], "guardrails": [{"type": "nope"}]})
        assert r.status_code == 400 and "unknown guardrail type 'nope'" in r.json()["error"]["message"]
        bad = {"type": "regex_deny", "patterns": ["(unclosed"]}
        r = c.post("/api/routes", json={"name": "g", "deployments": [dep(a, "a")], "guardrails": [bad]})
        assert r.status_code == 400 and "guardrails.0" in r.json()["error"]["message"]
        assert c.get("/api/routes/g").status_code == 404


def other_project_key(gw: LiveServer, project: str) -> str:
    with gw.client() as c:
        assert c.post("/api/projects", json={"name": project}).status_code == 201
        r = c.post("/api/users", json={"name": f"{project}-dev", "role": "member", "project": project})
        assert r.status_code == 201, r.text
        r = c.post("/api/keys", json={"name": "dev", "user": f"{project}-dev", "project": project})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


def test_cached_answers_stay_in_their_project_unless_the_route_shares_them(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    # before, the caches were keyed by route only: project B got project A's cached answers
    a, _ = upstreams
    other = openai.OpenAI(base_url=gw.url + "/v1", api_key=other_project_key(gw, "cache-b"), max_retries=0)
    for shared in (False, True):
        name = f"cached-{'shared' if shared else 'own'}"
        put_route(gw, {"name": name, "deployments": [dep(a, "a")], "cache": {"exact": True, "shared": shared}})
        assert chat(sdk(gw), name, "a secret question", temperature=0).headers["x-podium-cache"] == "miss"
        assert chat(sdk(gw), name, "a secret question", temperature=0).headers["x-podium-cache"] == "hit"
        theirs = chat(other, name, "a secret question", temperature=0).headers["x-podium-cache"]
        assert theirs == ("hit" if shared else "miss")


def test_a_viewer_key_lists_models_but_cannot_call_them(
    gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]
) -> None:
    a, _ = upstreams
    put_route(gw, {"name": "paid", "deployments": [dep(a, "a")]})
    with gw.client() as c:
        viewer = c.post("/api/keys", json={"name": "reader", "role": "viewer"}).json()["key"]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=viewer, max_retries=0)
    assert "paid" in [m.id for m in client.models.list()]
    with pytest.raises(openai.PermissionDeniedError) as err:
        chat(client, "paid")
    assert "viewer" in err.value.message
    assert a.chats == 0


def test_exact_cache(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, _ = upstreams
    route = {
        "name": "cached",
        "deployments": [dep(a, "a", price={"input": 1.0, "output": 2.0})],
        "cache": {"exact": True, "ttl": 60},
    }
    put_route(gw, route)
    client = sdk(gw)
    first = chat(client, "cached", "cache me", temperature=0)
    assert first.headers["x-podium-cache"] == "miss"
    second = client.chat.completions.with_raw_response.create(
        temperature=0, messages=[{"role": "user", "content": "cache me"}], model="cached", user="someone-else"
    )
    assert second.headers["x-podium-cache"] == "hit"
    assert second.parse().choices[0].message.content == "echo: cache me"
    assert a.chats == 1
    hit = traces(gw, second.headers["x-podium-trace-id"])[0]
    miss = traces(gw, first.headers["x-podium-trace-id"])[0]
    assert (hit.cache_status, hit.cost_micros, hit.attempts) == ("hit", 0, 0)
    assert miss.cost_micros == 11 * 1 + 7 * 2
    # a streamed request is served from the same entry
    stream = client.chat.completions.create(
        model="cached", messages=[{"role": "user", "content": "cache me"}], temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: cache me"
    assert a.chats == 1
    # sampled requests are not cached; no-cache skips the lookup
    assert chat(client, "cached", "cache me", temperature=0.7).headers["x-podium-cache"] == "none"
    fresh = client.chat.completions.with_raw_response.create(
        model="cached",
        messages=[{"role": "user", "content": "cache me"}],
        temperature=0,
        extra_headers={"Cache-Control": "no-cache"},
    )
    assert fresh.headers["x-podium-cache"] == "bypass"
    assert a.chats == 3
    # a streamed miss is stored whole and answers the next plain request
    list(
        client.chat.completions.create(
            model="cached", messages=[{"role": "user", "content": "streamed first"}], temperature=0, stream=True
        )
    )
    again = chat(client, "cached", "streamed first", temperature=0)
    assert again.headers["x-podium-cache"] == "hit"
    assert again.parse().choices[0].message.content == "echo: streamed first"
    assert again.parse().usage is not None and again.parse().usage.total_tokens == 18


def test_moving_an_alias_reroutes_without_a_restart(gw: LiveServer, upstreams: tuple[FakeServer, FakeServer]) -> None:
    a, b = upstreams
    with gw.client() as c:
        for server in (a, b):  # version 1 on upstream a, version 2 on upstream b
            body = {"name": "movable", "provider": "openai", "base_url": server.url + "/v1", "upstream_model": "up"}
            assert c.post("/api/models/remote", json=body).status_code == 201
        assert c.put("/api/models/movable/aliases/production", json={"version": 1}).status_code == 200
    chat(sdk(gw), "movable@production")
    assert (len(a.requests), len(b.requests)) == (1, 0)
    with gw.client() as c:
        assert c.put("/api/models/movable/aliases/production", json={"version": 2}).status_code == 200
    deadline = time.monotonic() + 10  # the route table's background refresh picks the move up
    while not b.requests and time.monotonic() < deadline:
        chat(sdk(gw), "movable@production")
        time.sleep(0.2)
    assert b.requests and b.requests[-1]["model"] == "up"


def test_an_anthropic_deployments_headers_reach_the_upstream(gw: LiveServer) -> None:
    """Every provider kind takes a deployment's extra headers (Anthropic's were accepted and dropped)."""
    from .fakes import serving, start_fake_anthropic

    for anthropic in serving(start_fake_anthropic):
        put_route(
            gw,
            {
                "name": "claude-team",
                "deployments": [
                    {
                        "provider": "anthropic",
                        "base_url": anthropic.url,
                        "model": "claude-haiku",
                        "api_key": "ant-key",
                        "headers": {"X-Team": "search"},
                    }
                ],
            },
        )
        reply = chat(sdk(gw), "claude-team").parse()
        assert reply.choices[0].message.content
        sent = {k.lower(): v for k, v in anthropic.headers[-1].items()}
        assert sent["x-team"] == "search" and sent["x-api-key"] == "ant-key"


def test_an_unknown_provider_kind_is_refused_naming_the_known_ones(gw: LiveServer) -> None:
    with gw.client() as c:
        r = c.post("/api/routes", json={"name": "odd", "deployments": [{"provider": "azure", "model": "m"}]})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "unknown provider 'azure'" in message and "anthropic" in message and "'model'" in message
