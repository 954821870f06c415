"""The model worker's HTTP API on a small real model: queue limits (429), disconnects, stop sequences,
validation; served by uvicorn on loopback in this process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from podium.models.worker.app import WorkerState
from podium.models.worker.engine import Engine
from podium.models.worker.loader import load_causal_lm

from .models_fixtures import build_tiny_llama
from .serving import worker_http


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, WorkerState]]:
    # The tiny Llama with a long context, so that a long answer keeps the one slot busy for seconds, not the
    # fraction of a second 200 tokens take: the queue test must not race the first answer's end.
    folder = build_tiny_llama(tmp_path_factory.mktemp("worker-api") / "tiny-llama-long", context=4096)
    lm = load_causal_lm(folder, fmt="hf", sha256="x", cache_root=folder.parent, dtype="float32")
    state = WorkerState(model_name="tiny", version_id="mdv_test", task="chat", lm=lm, started=time.time())
    state.engine = Engine(lm, max_batch=1, max_queue=1)
    state.engine.start()
    with worker_http(state) as url:
        yield url, state


def _long(stream: bool = True) -> dict[str, object]:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": 4000,
        "stream": stream,
        "temperature": 0,
    }


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_full_queue_answers_429_and_disconnect_frees_the_slot(worker: tuple[str, WorkerState]) -> None:
    url, state = worker
    with httpx.Client(base_url=url, timeout=30) as c:
        with c.stream("POST", "/v1/chat/completions", json=_long()) as first:
            lines = first.iter_lines()
            next(lines)
            with c.stream("POST", "/v1/chat/completions", json=_long()) as second:  # waits in the queue
                _wait_for(lambda: state.engine.stats()["waiting"] == 1)
                assert state.engine.stats()["active"] == 1
                third = c.post("/v1/chat/completions", json=_long(stream=False))
                assert third.status_code == 429
                assert third.headers["retry-after"] == "1"
                assert third.json()["error"]["type"] == "rate_limit_error"
                assert "queue is full" in third.json()["error"]["message"]
                second.close()
            first.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (state.engine.stats()["active"] or state.engine.stats()["waiting"]):
            time.sleep(0.05)
        assert state.engine.stats()["active"] == 0 and state.engine.stats()["waiting"] == 0
        ok = c.post("/v1/chat/completions", json={**_long(stream=False), "max_tokens": 3})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3


def test_stop_sequences_cut_text_in_both_modes(worker: tuple[str, WorkerState]) -> None:
    url, _ = worker
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "max_tokens": 12, "temperature": 0}
    with httpx.Client(base_url=url, timeout=30) as c:
        full = c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
        words = full.split()
        assert len(words) >= 3, full
        stop = words[2]
        cut = c.post("/v1/chat/completions", json={**body, "stop": [stop]}).json()
        assert cut["choices"][0]["finish_reason"] == "stop"
        assert cut["choices"][0]["message"]["content"] == full[: full.index(stop)]
        streamed = ""
        with c.stream("POST", "/v1/chat/completions", json={**body, "stop": stop, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    import json

                    chunk = json.loads(line[6:])
                    for ch in chunk["choices"]:
                        streamed += ch["delta"].get("content") or ""
        assert streamed == cut["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"stop": [1, 2]}, "stop"),
        ({"n": 99}, "n"),
        ({"seed": 1.5}, "seed"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_validation_names_the_field(worker: tuple[str, WorkerState], patch: dict[str, object], param: str) -> None:
    url, _ = worker
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2} | patch
    r = httpx.post(url + "/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_tokenize_counts_the_chat_template(worker: tuple[str, WorkerState]) -> None:
    url, state = worker
    r = httpx.post(url + "/tokenize", json={"messages": [{"role": "user", "content": "hello world"}]}).json()
    expected = state.lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello world"}], add_generation_prompt=True, tokenize=True
    )
    if hasattr(expected, "keys"):
        expected = expected["input_ids"]
    assert r["count"] == len(expected) and r["max_model_len"] == 4096
