"""The server's front door: `/v1` served outside FastAPI with its request id, body limit, OpenAI-shaped
404/405/413/500 answers and request metrics; everything else still reaches the FastAPI app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from podium.core.ids import _random_part, _time_part, new_id, ulid_time_ms
from podium.server.frontdoor import FrontDoor

from .conftest import LiveServer, free_port, serve_for_module
from .fakes import FakeServer, start_fake_openai


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    fake = start_fake_openai()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory, upstream: FakeServer) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp(f"door-{backend}")
    route = {
        "name": "door",
        "deployments": [{"provider": "openai", "base_url": upstream.url + "/v1", "model": "up-door"}],
    }
    yield from serve_for_module(backend, folder, max_body_bytes=4096, routes=[route])


def http_requests(live: LiveServer, **labels: str) -> float:
    """`podium_http_requests_total` for the labels (0 when absent)."""
    for family in text_string_to_metric_families(httpx.get(live.url + "/metrics").text):
        for sample in family.samples:
            wanted = all(sample.labels.get(k) == v for k, v in labels.items())
            if sample.name == "podium_http_requests_total" and wanted:
                return float(sample.value)
    return 0.0


def test_a_call_gets_a_request_id_and_is_counted(live: LiveServer) -> None:
    labels = {"method": "POST", "route": "/v1/chat/completions", "status": "200"}
    before = http_requests(live, **labels)
    body = {"model": "door", "messages": [{"role": "user", "content": "hi"}]}
    with live.client() as c:
        mine = c.post("/v1/chat/completions", json=body, headers={"X-Request-ID": "my-id.1"})
        new = c.post("/v1/chat/completions", json=body, headers={"X-Request-ID": "not ok!"})
    assert mine.status_code == 200 and mine.headers["x-request-id"] == "my-id.1"
    assert new.status_code == 200 and new.headers["x-request-id"].startswith("req_")
    assert mine.json()["choices"][0]["message"]["content"]
    assert http_requests(live, **labels) == before + 2


def test_unknown_paths_and_methods_answer_in_openai_shape(live: LiveServer) -> None:
    with live.client() as c:
        missing = c.post("/v1/nothing/here", json={})
        wrong = c.post("/v1/models", json={})
        detail = c.get("/v1/models/door")
        api = c.get("/api/nothing")
    assert missing.status_code == 404 and missing.headers["x-request-id"].startswith("req_")
    err = missing.json()["error"]
    assert err["code"] == "not_found" and "POST /v1/nothing/here" in err["message"] and err["type"]
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]
    assert detail.status_code == 200 and detail.json()["id"] == "door"
    # the rest of the server still answers in the /api shape, through FastAPI
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found" and "details" in api.json()["error"]
    assert http_requests(live, method="POST", route="unmatched", status="404") >= 1


def test_bodies_over_the_limit_are_refused_declared_or_not(live: LiveServer) -> None:
    big = b'{"model": "door", "messages": [{"role": "user", "content": "' + b"a" * 5000 + b'"}]}'

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    with live.client() as c:
        declared = c.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
        streamed = c.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    for r in (declared, streamed):
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "body_too_large" and "max_body_bytes" in r.json()["error"]["message"]
        assert r.headers["x-request-id"].startswith("req_")


def test_a_bug_in_a_handler_is_a_500_in_openai_shape(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A front door over a handler that fails: the client gets a 500 naming the request id, the log the traceback."""

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug")

    api = FastAPI()
    door = FrontDoor(api, [Route("/v1/broken", broken, methods=["POST"])], max_body_bytes=1024)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(door, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/broken", json={}, headers={"X-Request-ID": "bug-1"})
        other = httpx.get(f"http://127.0.0.1:{port}/elsewhere")
    finally:
        server.should_exit = True
        thread.join(10)
    assert r.status_code == 500 and r.headers["x-request-id"] == "bug-1"
    err = r.json()["error"]
    assert err["type"] == "server_error" and err["code"] == "internal_error" and "bug-1" in err["message"]
    assert "a bug" not in r.text
    assert any("bug-1" in rec.getMessage() and rec.exc_info for rec in caplog.records)
    assert other.status_code == 404  # FastAPI's own answer: not a /v1 path


def test_ids_encode_time_and_randomness_as_crockford_base32() -> None:
    assert _time_part(0) == "0" * 10 and _time_part((1 << 48) - 1) == "7" + "Z" * 9
    assert _random_part(0) == "0" * 16 and _random_part((1 << 80) - 1) == "Z" * 16
    assert _random_part(0x1F) == "0" * 15 + "Z"
    value = new_id("trc")
    assert ulid_time_ms(value) == ulid_time_ms("trc_" + _time_part(ulid_time_ms(value)) + "0" * 16)
