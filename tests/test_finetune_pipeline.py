"""The fine-tuning pipeline (issue 19) end to end on a real `podium serve` with the built-in SmolLM2, on SQLite
only (training is the same on every database; the stages' rows are plain tables both run):

- the demonstration: the example's 200 house-style support answers, a LoRA of SmolLM2-135M, the style eval
  moving from about 0 (base) to >= 0.8 (tuned), the gate passing, a 20% canary through a route with the
  `openai` SDK, promotion, and rollback with `podium models rollback`;
- a gate that fails (nothing registered), a cancelled run, a run killed with its server and resumed from its
  checkpoint by the next server, and the Ray backend on a local Ray.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import VENV_BIN, sign_in_http
from .serving import ServedPodium, start_serving

pytestmark = pytest.mark.timeout(1500)

BASE = "smollm2-135m-instruct"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune-support"
STYLE = r"^Ticket [^\n]+\n.+\n— Acme Support$"  # the house style: a ticket line, the answer, the sign-off


def example_rows() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The example's training and held-out rows, made by its script."""
    spec = importlib.util.spec_from_file_location("make_dataset", EXAMPLE / "make_dataset.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    everything = module.rows(240, seed=19)
    return everything[:200], everything[200:]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("finetune")


def serve(folder: Path) -> ServedPodium:
    return start_serving(folder, models=BASE, env={"PODIUM_JOB_WORKERS": "1"})


@pytest.fixture(scope="module")
def served(folder: Path) -> Iterator[list[ServedPodium]]:
    """The server, in a list: the kill test replaces it with the next one on the same home."""
    box = [serve(folder)]
    yield box
    box[0].stop()


def client(srv: ServedPodium) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=120)


def upload(srv: ServedPodium, rows: list[dict[str, str]], prefix: str = "support") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    with client(srv) as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    assert r.status_code == 201, r.text
    return f"{name}@1"


def plan(srv: ServedPodium, blueprint: dict[str, Any]) -> str:
    with client(srv) as c:
        r = c.post("/api/finetunes/blueprints/plan", json={"blueprint": blueprint})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["blueprint"]["id"])


def blueprint(train: str, held_out: str | None, **over: Any) -> dict[str, Any]:
    bp: dict[str, Any] = {
        "base_model": BASE,
        "data": {"train": train, "prompt_field": "question", "completion_field": "answer"},
        "method": "lora",
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "hyperparameters": {"max_steps": 2, "learning_rate": 1e-3, "batch_size": 8, "max_length": 256},
    }
    if held_out is not None:
        bp["eval"] = {
            "dataset": held_out,
            "evaluators": [{"type": "regex", "name": "style", "pattern": STYLE, "flags": "s", "match": "full"}],
            "max_new_tokens": 96,
        }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(bp.get(key), dict):
            bp[key] = {**bp[key], **value}
        else:
            bp[key] = value
    return bp


def start(srv: ServedPodium, blueprint_id: str, **extra: Any) -> str:
    with client(srv) as c:
        r = c.post("/api/finetunes/runs", json={"blueprint": blueprint_id, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def get(srv: ServedPodium, run_id: str) -> dict[str, Any]:
    with client(srv) as c:
        r = c.get(f"/api/finetunes/runs/{run_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait(srv: ServedPodium, run_id: str, timeout: float = 1200, until: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = get(srv, run_id)
        if until(run) if until is not None else run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not get there in {timeout}s: {get(srv, run_id)}")


def cli(srv: ServedPodium, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_") or k.startswith("PODIUM_TEST_")}
    env.update({"PODIUM_URL": srv.url, "PODIUM_API_KEY": srv.key})
    return subprocess.run(
        [str(VENV_BIN / "podium"), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def model_versions(srv: ServedPodium, name: str) -> list[dict[str, Any]]:
    with client(srv) as c:
        r = c.get(f"/api/models/{name}")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return list(r.json()["versions"])


# --- the demonstration ---------------------------------------------------------------------------------


def test_demonstration_style_tune_gate_canary_promote_and_rollback(served: list[ServedPodium]) -> None:
    srv = served[0]
    train_rows, held_rows = example_rows()
    train, held = upload(srv, train_rows), upload(srv, held_rows, "held")
    model = f"support-{uuid.uuid4().hex[:6]}"
    route = f"{model}-live"
    bp = blueprint(
        train,
        held,
        hyperparameters={"max_steps": None, "epochs": 2, "learning_rate": 1e-3},
        eval={"min_score": 0.8, "better_than_base_by": 0.5},
        deploy={"model": model, "alias": "canary", "route": route, "canary_share": 20},
    )
    blueprint_id = plan(srv, bp)
    t0 = time.monotonic()
    done = cli(srv, "finetune", "run", blueprint_id, "--wait", timeout=1200)
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(cli(srv, "finetune", "ls", "--runs", "--json").stdout)[0]["id"]
    run = get(srv, run_id)
    assert run["status"] == "succeeded", run
    stages = run["stages"]
    assert [s for s in stages if stages[s]["status"] == "done"] == [
        "prepare",
        "train",
        "evaluate",
        "gate",
        "register",
        "deploy",
    ]
    gate = stages["gate"]["outputs"]
    assert gate["base"] <= 0.1 and gate["tuned"] >= 0.8 and gate["passed"], gate
    assert gate["p_value"] < 0.05
    # telemetry: a loss per step, falling
    train_points = [m["values"] for m in run["metrics"] if m["kind"] == "train" and "loss" in m["values"]]
    assert len(train_points) == stages["train"]["outputs"]["steps"]
    assert train_points[-1]["loss"] < train_points[0]["loss"]
    assert all(p["tokens_per_second"] > 0 for p in train_points)
    # the registry: version 1 is the base's weights (stable), version 2 the adapter, with its lineage
    versions = {v["version"]: v for v in model_versions(srv, model)}
    tuned = versions[stages["register"]["outputs"]["version"]]
    assert tuned["format"] == "peft" and tuned["base_ref"] == f"{BASE}@1"
    lineage = tuned["lineage"]
    assert lineage["finetune_run"] == run_id and lineage["blueprint"] == blueprint_id
    assert lineage["train"] == train and lineage["eval_runs"]["tuned_run"] == stages["evaluate"]["outputs"]["tuned_run"]
    assert "canary" in tuned["aliases"] and "stable" in versions[1]["aliases"]
    with httpx.Client(base_url=srv.url, timeout=60) as page:  # the model's page shows the lineage
        sign_in_http(page, srv.key)
        shown = page.get(f"/models/{model}")
        assert shown.status_code == 200 and run_id in shown.text, shown.text[:2000]
    # the canary: 20% of the route's calls reach the tuned version through the gateway (openai SDK)
    import openai

    oa = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.key, max_retries=0, timeout=300)
    question = held_rows[0]["question"]

    def styled(n: int) -> list[bool]:
        out = []
        for _ in range(n):
            answer = oa.chat.completions.create(
                model=route, messages=[{"role": "user", "content": question}], max_tokens=96, temperature=0
            )
            out.append(answer.choices[0].message.content.startswith("Ticket "))
        return out

    share = styled(30)
    assert 1 <= sum(share) <= 15, share  # 20% of 30 is 6; the weighted choice is random
    direct = oa.chat.completions.create(
        model=f"{model}@canary", messages=[{"role": "user", "content": question}], max_tokens=96, temperature=0
    )
    assert direct.choices[0].message.content.startswith("Ticket ")
    # promotion sends everything to the tuned version; rolling `stable` back sends everything to the base
    promoted = cli(srv, "finetune", "promote", run_id)
    assert promoted.returncode == 0 and f"{model}@stable is version {tuned['version']}" in promoted.stdout
    settled(styled, True)
    back = cli(srv, "models", "rollback", f"{model}@stable")
    assert back.returncode == 0, back.stdout + back.stderr
    settled(styled, False)
    with client(srv) as c:
        audit = c.get("/api/audit", params={"action": "model.alias.rollback"}).json()
    assert any(a.get("details", {}).get("alias") == "stable" for a in audit["items"]), audit
    print(f"demonstration: {elapsed:.0f} s from run to deployed; gate {gate}")


def settled(styled: Any, expected: bool, within: float = 60) -> None:
    """The gateway re-reads routes and aliases every couple of seconds: once a call gets the new answer, the
    next four do too."""
    deadline = time.monotonic() + within
    while styled(1) != [expected]:
        assert time.monotonic() < deadline, f"the gateway still serves the old version after {within}s"
        time.sleep(0.5)
    assert styled(4) == [expected] * 4


# --- failing, cancelling, killing -------------------------------------------------------------------------


def test_a_failed_gate_stops_before_register_and_says_why(served: list[ServedPodium]) -> None:
    srv = served[0]
    train_rows, held_rows = example_rows()
    train, held = upload(srv, train_rows[:24]), upload(srv, held_rows[:6], "held")
    model = f"never-{uuid.uuid4().hex[:6]}"
    bp = blueprint(train, held, eval={"min_score": 0.99}, deploy={"model": model})
    import podium
    from podium.finetune.sdk import RunFailed

    planned = podium.finetune.plan(bp, url=srv.url, api_key=srv.key)  # the SDK, as a script would
    with pytest.raises(RunFailed) as failed:
        podium.finetune.run(planned["id"], wait=True, url=srv.url, api_key=srv.key)
    run = failed.value.run
    assert run["status"] == "failed" and run["stage"] == "gate", run
    assert "the gate failed: style >= 0.99" in run["error"] and "nothing was registered" in run["error"]
    assert run["stages"]["gate"]["status"] == "failed"
    assert "register" not in run["stages"]
    assert model_versions(srv, model) == []
    evaluated = run["stages"]["evaluate"]["outputs"]
    with client(srv) as c:
        for key in ("base_run", "tuned_run"):
            ev = c.get(f"/api/evals/runs/{evaluated[key]}").json()
            assert ev["status"] == "succeeded" and ev["rows_done"] == 6


def test_cancel_stops_training_and_registers_nothing(served: list[ServedPodium]) -> None:
    srv = served[0]
    train_rows, _ = example_rows()
    train = upload(srv, train_rows[:40])
    model = f"cancelled-{uuid.uuid4().hex[:6]}"
    run_id = start(srv, plan(srv, blueprint(train, None, hyperparameters={"max_steps": 50}, deploy={"model": model})))
    wait(srv, run_id, until=lambda r: any(m["kind"] == "train" for m in r["metrics"]))
    out = cli(srv, "finetune", "cancel", run_id)
    assert out.returncode == 0, out.stdout + out.stderr
    run = wait(srv, run_id, timeout=120)
    assert run["status"] == "cancelled" and run["stages"]["train"]["status"] == "cancelled", run
    work = srv.home / "finetune" / run_id
    assert not (work / "compute.pid").exists() and not (work / "adapter").exists()
    assert model_versions(srv, model) == []


def test_a_run_killed_with_its_server_resumes_from_its_checkpoint(served: list[ServedPodium], folder: Path) -> None:
    srv = served[0]
    train_rows, _ = example_rows()
    train = upload(srv, train_rows[:48])
    model = f"resumed-{uuid.uuid4().hex[:6]}"
    bp = blueprint(train, None, hyperparameters={"max_steps": 6}, deploy={"model": model, "alias": "candidate"})
    run_id = start(srv, plan(srv, bp), save_steps=2)
    checkpoints = srv.home / "finetune" / run_id / "checkpoints"

    def has_checkpoint(_: Any) -> bool:
        return (checkpoints / "checkpoint-2" / "trainer_state.json").exists()

    wait(srv, run_id, until=has_checkpoint)
    srv.proc.kill()  # SIGKILL: no shutdown, no requeue; the job stays "running" with a dead worker
    srv.proc.wait(30)
    _kill_compute(srv.home / "finetune" / run_id)
    served[0] = srv = serve(folder)  # the same home and database: the job is requeued at start
    run = wait(srv, run_id)
    assert run["status"] == "succeeded", run
    trained = run["stages"]["train"]["outputs"]
    assert trained["resumed_from_step"] >= 2 and trained["steps"] == 6
    steps = sorted(m["step"] for m in run["metrics"] if m["kind"] == "train")
    assert steps == [1, 2, 3, 4, 5, 6]
    versions = model_versions(srv, model)
    assert [v["format"] for v in sorted(versions, key=lambda v: v["version"])] == ["gguf", "peft"]
    assert "candidate" in next(v for v in versions if v["format"] == "peft")["aliases"]


def _kill_compute(work: Path) -> None:
    """The trainer child outlives a SIGKILL of its server only until its next step; don't wait for that."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((work / "compute.pid").read_text()), signal.SIGKILL)


def test_ray_backend_runs_the_same_pipeline_on_a_local_ray(served: list[ServedPodium]) -> None:
    srv = served[0]
    train_rows, held_rows = example_rows()
    train, held = upload(srv, train_rows[:16]), upload(srv, held_rows[:4], "held")
    model = f"ray-{uuid.uuid4().hex[:6]}"
    bp = blueprint(train, held, backend="ray", deploy={"model": model})
    out = cli(srv, "finetune", "run", plan(srv, bp), "--wait", "--json", timeout=900)
    run = json.loads(out.stdout)
    assert run["backend"] == "ray"
    assert run["stages"]["train"]["status"] == "done" and run["stages"]["evaluate"]["status"] == "done", run
    assert any(m["kind"] == "train" for m in run["metrics"])
    shown = cli(srv, "finetune", "show", run["id"])
    assert shown.returncode == 0 and "train" in shown.stdout and "deploy" in shown.stdout, shown.stdout
