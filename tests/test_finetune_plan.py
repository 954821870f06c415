"""Fine-tuning blueprints (issue 19, item 1): `plan` against a live server with the built-in SmolLM2 (its
tokenizer only) and datasets made through the datasets API, on SQLite and PostgreSQL: defaults, validation
errors naming their field, the content hash, diff, tenancy and roles; then the same through `podium finetune`.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podium.core.identity import Actor
from podium.finetune import spec as ft_spec
from podium.models import service as models_service
from podium.models.worker.derived import check as derived_check
from podium.models.worker.loader import CONVERTED, convert_gguf

from .conftest import (
    LiveServer,
    make_db_url,
    make_settings,
    prepared_platform,
    project_key,
    release_db_url,
    run_cli,
    start_server,
)
from .fakes import FakeServer, serving, start_fake_openai
from .models_fixtures import MODEL_CACHE

BASE = "smollm2-135m-instruct"
PLAN = "/api/finetunes/blueprints/plan"


def converted_builtin(live: LiveServer) -> None:
    """The built-in GGUF's converted folder in the suite's model cache (made once, as serving it does)."""
    version = models_service.get_version(live.platform, Actor.system(), BASE)
    folder = MODEL_CACHE / CONVERTED / version.sha256
    if derived_check(folder, CONVERTED, version.sha256) is not None:
        path = models_service.materialize(live.platform.blobs, version, live.settings.effective_cache_dir / "m")
        convert_gguf(path, MODEL_CACHE, version.sha256)


def _serve(folder: Path, backend: str, **extra: Any) -> Iterator[LiveServer]:
    url = make_db_url(backend, folder)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PODIUM_") and "TEST" not in k}
    try:
        settings = make_settings(folder / "home", url, **extra)
        _, key = prepared_platform(settings, builtins=True)
        live = start_server(settings, key)
    finally:
        os.environ.update(saved)
    yield live
    live.stop()
    release_db_url(backend, url)


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    for srv in _serve(
        tmp_path_factory.mktemp(f"ft-{backend}"), backend, model_cache_dir=str(MODEL_CACHE), upstream_allow_private=True
    ):
        converted_builtin(srv)
        yield srv


def rows(n: int = 30, long_rows: int = 0) -> bytes:
    out = []
    for i in range(n):
        answer = f"Ticket #{1000 + i}. Your order {i} ships tomorrow.\n-- The Support Team"
        if i < long_rows:
            answer += " and more" * 200
        out.append(json.dumps({"question": f"Where is my order {i}?", "answer": answer, "n": i}))
    return ("\n".join(out) + "\n").encode()


def dataset(live: LiveServer, key: str, body: bytes) -> str:
    name = f"sup-{uuid.uuid4().hex[:8]}"
    with live.client(key) as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    assert r.status_code == 201, r.text
    return name


def plan(live: LiveServer, key: str, **body: Any) -> Any:
    with live.client(key) as c:
        return c.post(PLAN, json=body)


def choices(train: str, **extra: Any) -> dict[str, Any]:
    return {"base_model": BASE, "train": train, "prompt_field": "question", "completion_field": "answer", **extra}


def refused(r: Any, status: int, field: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["details"]["field"] == field, error
    return str(error["message"])


@pytest.fixture(scope="module")
def team(live: LiveServer) -> str:
    return project_key(live, f"ft-{uuid.uuid4().hex[:6]}", "member")


def test_plan_with_defaults_pins_versions_measures_and_estimates(live: LiveServer, team: str) -> None:
    name = dataset(live, team, rows(30))
    r = plan(live, team, **choices(name))
    assert r.status_code == 201, r.text
    planned = r.json()
    assert planned["created"] is True
    bp = planned["blueprint"]
    spec = bp["spec"]
    assert spec["base_model"] == f"{BASE}@1" and spec["data"]["train"] == f"{name}@1"
    assert spec["method"] == "lora"
    assert spec["lora"] == {
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    }
    hyper = spec["hyperparameters"]
    assert hyper["epochs"] == 3 and hyper["max_steps"] is None  # a small dataset: three epochs
    assert hyper["learning_rate"] == 2e-4 and hyper["batch_size"] == 8 and hyper["truncation"] == "truncate"
    report = bp["report"]
    train = report["train"]
    assert train["rows"] == train["measured_rows"] == 30
    assert 20 < train["median"] <= train["longest"] <= hyper["max_length"]  # max_length fits the longest row
    assert hyper["max_length"] in (64, 128, 256) and train["too_long"] == 0
    assert report["trainable_parameters"] == 1_843_200  # r=16 on q/k/v/o of SmolLM2-135M, as issue 19 measured
    est = report["estimate"]
    assert est["steps"] == 12  # ceil(30 / 8) per epoch, three epochs
    assert est["tokens"] > 0 and est["seconds"] > 0 and est["memory_bytes"] > 4 * report["base_model"]["parameters"]
    assert bp["id"] == "ftb_" + bp["content_hash"][:32]
    assert bp["content_hash"] == ft_spec.content_hash(ft_spec.load(spec))
    assert "base_model: smollm2-135m-instruct@1" in bp["source"]


def test_the_same_blueprint_is_the_same_id(live: LiveServer, team: str) -> None:
    name = dataset(live, team, rows(12))
    first = plan(live, team, **choices(name, learning_rate=1e-4))
    assert first.status_code == 201, first.text
    again = plan(live, team, **choices(f"{name}@1", base_model=f"{BASE}@1", learning_rate=1e-4))
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["blueprint"]["id"] == first.json()["blueprint"]["id"]
    with live.client(team) as c:
        listed = [b["id"] for b in c.get("/api/finetunes/blueprints").json()]
        assert listed.count(first.json()["blueprint"]["id"]) == 1
        shown = c.get(f"/api/finetunes/blueprints/{first.json()['blueprint']['id']}").json()
    assert shown["spec"] == first.json()["blueprint"]["spec"]
    other = plan(live, team, **choices(name, learning_rate=5e-5))
    assert other.status_code == 201 and other.json()["blueprint"]["id"] != first.json()["blueprint"]["id"]


def test_diff_of_two_blueprints(live: LiveServer, team: str) -> None:
    name = dataset(live, team, rows(10))
    a = plan(live, team, **choices(name)).json()["blueprint"]["id"]
    b = plan(live, team, **choices(name, learning_rate=1e-5, max_steps=40)).json()["blueprint"]["id"]
    with live.client(team) as c:
        d = c.get("/api/finetunes/blueprints/diff", params={"a": a, "b": b}).json()
        same = c.get("/api/finetunes/blueprints/diff", params={"a": a, "b": a}).json()
        missing = c.get("/api/finetunes/blueprints/diff", params={"a": a, "b": "ftb_nope"})
    changes = {ch["field"]: (ch["a"], ch["b"]) for ch in d["changes"]}
    assert changes["hyperparameters.learning_rate"] == (2e-4, 1e-5)
    assert changes["hyperparameters.max_steps"] == (None, 40) and changes["hyperparameters.epochs"] == (3, None)
    assert "-  learning_rate: 0.0002" in d["diff"] and "+  learning_rate: 1.0e-05" in d["diff"]
    assert same["changes"] == [] and same["diff"] == ""
    refused(missing, 404, "b")


def test_validation_errors_name_their_field(live: LiveServer, team: str) -> None:
    name = dataset(live, team, rows(8))
    message = refused(plan(live, team, **choices(name, prompt_field="query")), 400, "data.prompt_field")
    assert "'query'" in message and "question" in message  # the columns it has
    message = refused(plan(live, team, **choices(name, completion_field="n")), 400, "data.completion_field")
    assert "not text" in message
    message = refused(plan(live, team, **choices(name, learning_rate=0)), 400, "hyperparameters.learning_rate")
    assert "greater than 0" in message
    refused(plan(live, team, **choices(name, method="sgd")), 400, "method")
    refused(plan(live, team, **choices(name, method="qlora")), 400, "method")  # no CUDA/bitsandbytes here
    refused(plan(live, team, train=name, base_model=BASE), 400, "data")  # no field mapping at all
    refused(plan(live, team, **choices(name, base_model=None)), 400, "base_model")
    refused(plan(live, team, **choices("no-such-dataset")), 404, "data.train")
    refused(plan(live, team, **choices(name, base_model="no-such-model")), 404, "base_model")
    refused(plan(live, team, **choices(name, validation=f"{name}@7")), 404, "data.validation")
    refused(plan(live, team, **choices(name, base_model="two words")), 400, "base_model")
    refused(plan(live, team, **choices("a@b@c")), 400, "data.train")
    bad = "base_model: x@1\ndata: {train: y@1, prompt_field: q, completion_field: a}\n"
    refused(plan(live, team, source=bad + "hyperparameters: {epochs: 1}\nlora: {r: 0}\n"), 400, "lora.r")
    refused(plan(live, team, source=bad + "hyperparameters: [1, 2]\n"), 400, "hyperparameters")
    refused(plan(live, team, source=bad + "hyperparameters: {epochs: 1, max_steps: 3}\n"), 400, "hyperparameters")
    refused(plan(live, team, source=bad + "deploy: {canary_share: 101}\n"), 400, "deploy.canary_share")
    refused(plan(live, team, source="- a list\n"), 400, "source")


def test_too_long_rows_follow_the_truncation_policy(live: LiveServer, team: str) -> None:
    name = dataset(live, team, rows(10, long_rows=2))
    message = refused(
        plan(live, team, **choices(name, max_length=128, truncation="refuse")), 400, "hyperparameters.max_length"
    )
    assert "2 row(s) are longer than 128 tokens" in message
    truncated = plan(live, team, **choices(name, max_length=128, truncation="truncate"))
    assert truncated.status_code == 201, truncated.text
    report = truncated.json()["blueprint"]["report"]["train"]
    assert (report["too_long"], report["truncated"], report["dropped"]) == (2, 2, 0)
    dropped = plan(live, team, **choices(name, max_length=128, truncation="drop")).json()["blueprint"]
    assert (dropped["report"]["train"]["truncated"], dropped["report"]["train"]["dropped"]) == (0, 2)
    assert dropped["report"]["estimate"]["steps"] == 3  # 8 rows kept, 8 per step, three epochs
    default = plan(live, team, **choices(name)).json()["blueprint"]
    assert default["report"]["train"]["too_long"] == 0  # the default max_length fits the longest row
    assert default["spec"]["hyperparameters"]["max_length"] >= default["report"]["train"]["longest"]


def test_another_projects_dataset_and_blueprint_are_not_found(live: LiveServer, team: str) -> None:
    other = project_key(live, f"ft-other-{uuid.uuid4().hex[:6]}", "member")
    theirs = dataset(live, other, rows(6))
    message = refused(plan(live, team, **choices(theirs)), 404, "data.train")
    assert "other" not in message.replace(theirs, "")  # names only what the caller gave
    refused(plan(live, team, **choices(dataset(live, team, rows(6)), validation=theirs)), 404, "data.validation")
    blueprint = plan(live, other, **choices(theirs)).json()["blueprint"]["id"]
    with live.client(team) as c:
        refused(c.get(f"/api/finetunes/blueprints/{blueprint}"), 404, "id")
        assert blueprint not in [b["id"] for b in c.get("/api/finetunes/blueprints").json()]
        mine = plan(live, team, **choices(dataset(live, team, rows(6)))).json()["blueprint"]["id"]
        refused(c.get("/api/finetunes/blueprints/diff", params={"a": mine, "b": blueprint}), 404, "b")
    with live.client(other) as c:
        assert c.get(f"/api/finetunes/blueprints/{blueprint}").status_code == 200


def test_roles_a_viewer_reads_but_cannot_plan(live: LiveServer, team: str) -> None:
    project = f"ft-roles-{uuid.uuid4().hex[:6]}"
    member = project_key(live, project, "member")
    viewer = project_key(live, project, "viewer")
    name = dataset(live, member, rows(6))
    r = plan(live, viewer, **choices(name))
    assert r.status_code == 403, r.text
    made = plan(live, member, **choices(name)).json()["blueprint"]["id"]
    with live.client(viewer) as c:
        assert [b["id"] for b in c.get("/api/finetunes/blueprints").json()] == [made]
        assert c.get(f"/api/finetunes/blueprints/{made}").status_code == 200
    with live.client("pk-not-a-key") as c:
        assert c.get("/api/finetunes/blueprints").status_code == 401


def test_a_base_model_that_cannot_train_here_is_refused(live: LiveServer) -> None:
    admin = live.admin_key  # registering a remote model takes a project admin
    name = dataset(live, admin, rows(6))
    for upstream in serving(start_fake_openai):
        assert isinstance(upstream, FakeServer)
        remote = f"remote-{uuid.uuid4().hex[:6]}"
        body = {"name": remote, "provider": "openai", "base_url": upstream.url + "/v1", "upstream_model": "up"}
        with live.client(admin) as c:
            r = c.post("/api/models/remote", json=body)
            assert r.status_code == 201, r.text
        message = refused(plan(live, admin, **choices(name, base_model=remote)), 400, "base_model")
        assert "openai provider" in message


def test_a_gguf_without_its_converted_folder_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "empty-cache"
    for srv in _serve(tmp_path, "sqlite", model_cache_dir=str(cache), cache_dir=str(cache)):
        name = dataset(srv, srv.admin_key, rows(4))
        message = refused(plan(srv, srv.admin_key, **choices(name)), 400, "base_model")
        assert "converted folder" in message


# --- the command line (SQLite: the service it calls runs on both databases above) ----------------------


def cli(live: LiveServer, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("finetune", *args, env={"PODIUM_URL": live.url, "PODIUM_API_KEY": key}, timeout=300)


def test_plan_ls_show_and_diff_from_the_command_line(live: LiveServer, team: str, backend: str, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("the command line is the same on both databases")
    name = dataset(live, team, rows(10))
    args = ["plan", "--base", BASE, "--train", name, "--prompt-field", "question", "--completion-field", "answer"]
    r = cli(live, team, *args)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("Planned ftb_") and f"{BASE}@1 on {name}@1, lora" in first
    assert "estimate:" in r.stdout and "trainable parameters 1,843,200" in r.stdout
    blueprint = first.split()[1]
    assert cli(live, team, *args).stdout.startswith(f"Unchanged: {blueprint}")

    partial = tmp_path / "bp.yaml"
    partial.write_text(
        "hyperparameters: {learning_rate: 0.0001, max_steps: 5}\ndeploy: {alias: canary, canary_share: 10}\n"
    )
    r = cli(live, team, *args, "--file", str(partial), "--json")
    assert r.returncode == 0, r.stderr
    second = json.loads(r.stdout)["blueprint"]
    assert second["spec"]["hyperparameters"]["max_steps"] == 5 and second["spec"]["deploy"]["canary_share"] == 10

    assert blueprint in cli(live, team, "ls").stdout
    shown = cli(live, team, "show", blueprint).stdout
    assert "base_model: smollm2-135m-instruct@1" in shown and "truncation: truncate" in shown
    d = cli(live, team, "diff", blueprint, second["id"]).stdout
    assert "hyperparameters.max_steps" in d and "deploy.canary_share" in d

    r = cli(
        live,
        team,
        "plan",
        "--base",
        BASE,
        "--train",
        name,
        "--prompt-field",
        "question",
        "--completion-field",
        "answer",
        "--lr",
        "0",
    )
    assert r.returncode == 1 and "hyperparameters.learning_rate" in r.stderr and "Traceback" not in r.stderr
    r = cli(live, team, "show", "ftb_nope")
    assert r.returncode == 1 and "not found" in r.stderr


def test_a_messages_column_and_a_validation_set(live: LiveServer, team: str) -> None:
    chats = [
        {
            "messages": [
                {"role": "system", "content": "You answer in the house style."},
                {"role": "user", "content": f"Can I return item {i}?"},
                {"role": "assistant", "content": f"Ticket #{i}: yes, within 30 days.\n-- The Support Team"},
            ]
        }
        for i in range(9)
    ]
    body = ("\n".join(json.dumps(c) for c in chats) + "\n").encode()
    train, held_out = dataset(live, team, body), dataset(live, team, body[: body.index(b"\n") + 1])
    r = plan(live, team, base_model=BASE, train=train, validation=held_out, messages_field="messages")
    assert r.status_code == 201, r.text
    bp = r.json()["blueprint"]
    assert bp["spec"]["data"]["messages_field"] == "messages" and bp["spec"]["data"]["prompt_field"] is None
    assert bp["spec"]["data"]["validation"] == f"{held_out}@1"
    report = bp["report"]
    assert report["train"]["rows"] == 9 and report["validation"]["rows"] == 1
    assert report["validation"]["longest"] == report["train"]["longest"] > 20  # the same rendering, one row
    assert report["estimate"]["steps"] == 6  # ceil(9 / 8) per epoch, three epochs
    # a text column is not a list of messages, and a messages column is not text
    refused(plan(live, team, base_model=BASE, train=train, prompt_field="messages", completion_field="messages"),
            400, "data.prompt_field")  # fmt: skip
    plain = dataset(live, team, rows(3))
    refused(plan(live, team, base_model=BASE, train=plain, messages_field="answer"), 400, "data.messages_field")
    both = {"prompt_field": "question", "completion_field": "answer", "messages_field": "messages"}
    refused(plan(live, team, base_model=BASE, train=plain, **both), 400, "data")
