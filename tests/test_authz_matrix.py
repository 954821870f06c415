"""The authorization matrix, generated from the OpenAPI schema: every `/api` operation (and the `/v1` ones,
which live outside FastAPI) called by every kind of caller, on SQLite and PostgreSQL.

Callers: no key, a revoked key, a viewer, a member and an admin of project A, a member of project B, and a
server admin. Project A owns a prompt (with an experiment), a remote model, a trace, a score, a dataset, an eval run,
an online evaluation rule, a knowledge base, a chain and a fine-tuning blueprint. For each
operation, path parameters name A's objects where the path has them. What must hold:
- no key and a revoked key: 401 on every operation;
- every refusal has the documented error body (`{"error": {"message", "code"}}`);
- nobody gets a 5xx, whatever the operation and however empty the body;
- a viewer never changes anything (no 2xx on POST/PUT/PATCH/DELETE, but for its own keys);
- project B's member never reaches A's objects (no 2xx on an operation whose path names one), and A's
  names and ids never appear in B's answers, lists included;
- A's member reads A's objects (so the 404s above are about the caller, not a missing object).
A new operation joins the matrix by itself; if its path parameter is new, `OBJECTS` must say what to put
there, or the test says so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from podium.models.builtin import ensure_builtin_models

from .conftest import LiveServer, serve_for_module
from .fakes import FakeServer, serving, start_fake_openai
from .models_fixtures import MODEL_CACHE
from .test_finetune_plan import converted_builtin

# operations outside the OpenAPI schema: the OpenAI-compatible surface served before FastAPI
V1 = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{name}"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
]
PUBLIC: set[tuple[str, str]] = set()  # operations anyone may call without a key (none under /api and /v1)
SELF_SERVICE = {("POST", "/api/keys")}  # a viewer may make keys for itself (no stronger than its role)
READS = {  # POSTs that change nothing
    ("POST", "/api/prompts/{name}/render"),
    ("POST", "/api/kb/{name}/search"),
    ("POST", "/api/kb/{name}/eval"),
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    yield from serving(start_fake_openai)


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory, upstream: FakeServer) -> Iterator[dict[str, Any]]:
    served = serve_for_module(backend, tmp_path_factory.mktemp(f"authz-{backend}"), model_cache_dir=str(MODEL_CACHE))
    live = next(served)
    ensure_builtin_models(live.platform)  # a blueprint's base model (its tokenizer only)
    converted_builtin(live)
    tag = uuid.uuid4().hex[:6]
    a, b = f"proj-a-{tag}", f"proj-b-{tag}"
    keys: dict[str, str | None] = {"none": None, "server-admin": live.admin_key}
    with live.client() as c:
        for project in (a, b):
            assert c.post("/api/projects", json={"name": project}).status_code == 201
        for who, project, role in (
            ("viewer-a", a, "viewer"),
            ("member-a", a, "member"),
            ("admin-a", a, "admin"),
            ("member-b", b, "member"),
        ):
            user = f"{who}-{tag}"
            assert c.post("/api/users", json={"name": user, "role": role, "project": project}).status_code == 201
            r = c.post("/api/keys", json={"name": who, "user": user, "project": project})
            assert r.status_code == 201, r.text
            keys[who] = r.json()["key"]
        r = c.post("/api/keys", json={"name": "revoked", "user": f"member-a-{tag}", "project": a})
        revoked = r.json()
        assert c.post(f"/api/keys/{revoked['prefix']}/revoke").status_code == 200
        keys["revoked"] = revoked["key"]
    objects = {"project": a, "user": f"member-a-{tag}", "tag": tag}
    with live.client(keys["admin-a"]) as c:
        model = f"model-a-{tag}"
        body = {"name": model, "provider": "openai", "base_url": upstream.url + "/v1", "upstream_model": "up"}
        assert c.post("/api/models/remote", json=body).status_code == 201
    with live.client(keys["member-a"]) as c:
        prompt = f"prompt-a-{tag}"
        for text in ("secret-a one", "secret-a two"):
            r = c.post("/api/prompts", json={"name": prompt, "template": text})
            assert r.status_code == 201, r.text
        version_id = r.json()["version"]["id"]
        assert c.put(f"/api/prompts/{prompt}/labels/prod", json={"version": 1}).status_code == 200
        exp = c.post(f"/api/prompts/{prompt}/experiments", json={"name": "e", "arms": [{"version": 1}, {"version": 2}]})
        assert exp.status_code == 201, exp.text
        trace = f"trc_a_{tag}"
        span = {"trace_id": trace, "start_time": "2026-11-30T00:00:00Z", "input": "secret-a input", "name": "root"}
        assert c.post("/api/traces/ingest", json={"spans": [span]}).status_code == 202
        assert c.post("/api/scores", json={"trace_id": trace, "name": "thumbs", "value": 1}).status_code == 201
        assert c.put(f"/api/models/{model}/aliases/prod", json={"version": 1}).status_code == 200
        dataset = f"dataset-a-{tag}"
        rows = b'{"text": "secret-a row"}\n'
        r = c.post(f"/api/datasets/{dataset}/import", params={"format": "jsonl"}, content=rows)
        assert r.status_code == 201, r.text
        assert c.put(f"/api/datasets/{dataset}/labels/prod", json={"version": 1}).status_code == 200
        run = {"dataset": f"{dataset}@1", "target": {"model": model}, "evaluators": ["contains"], "fields": {}}
        run["evaluators"] = [{"type": "contains", "value": "secret-a"}]
        r = c.post("/api/evals/runs", json={**run, "fields": {"input": "text"}})
        assert r.status_code == 202, r.text
        objects["eval_run"] = r.json()["id"]
        rule = f"rule-a-{tag}"
        assert c.put(f"/api/evals/online/{rule}", json={"evaluators": ["refusal"]}).status_code == 200
        objects["rule"] = rule
        objects["policy"] = f"policy-a-{tag}"
        r = c.post("/api/guard/policies", json={"policy": {"name": objects["policy"], "input": [{"type": "secrets"}]}})
        assert r.status_code == 201, r.text
        alert = {
            "name": f"alert-a-{tag}",
            "metric": "errors",
            "condition": {"type": "threshold", "op": ">", "value": 1, "window": "5m"},
        }
        objects["alert_rule"] = c.post("/api/alerts/rules", json=alert).json()["id"]
        kb = f"kb-a-{tag}"
        assert c.post("/api/kb", json={"name": kb, "description": "secret-a kb"}).status_code == 201
        objects["kb"] = kb
        chain = f"chain-a-{tag}"
        source = "steps:\n  - {id: a, type: transform, expression: \"'secret-a chain'\"}\n"
        assert c.post(f"/api/chains/{chain}/versions", json={"source": source}).status_code == 201
        assert c.put(f"/api/chains/{chain}/labels/prod", json={"version": 1}).status_code == 200
        chain_run = c.post(f"/api/chains/{chain}/run", json={})
        assert chain_run.status_code == 200 and chain_run.json()["output"] == "secret-a chain", chain_run.text
        objects |= {"chain": chain, "chain_run": chain_run.json()["id"]}
        plan = {"base_model": "smollm2-135m-instruct", "train": f"{dataset}@1", "prompt_field": "text"}
        r = c.post("/api/finetunes/blueprints/plan", json={**plan, "completion_field": "text"})
        assert r.status_code == 201, r.text
        objects["blueprint"] = r.json()["blueprint"]["id"]
        r = c.post("/api/finetunes/runs", json={"blueprint": objects["blueprint"]})
        assert r.status_code == 201, r.text
        objects["finetune_run"] = r.json()["id"]  # cancelled at once: a real run, without training one
        assert c.post(f"/api/finetunes/runs/{objects['finetune_run']}/cancel", json={}).status_code == 200
        run_url = f"/api/finetunes/runs/{objects['finetune_run']}"
        while (one := c.get(run_url).json())["status"] not in ("cancelled", "failed", "succeeded"):
            time.sleep(0.1)
        listed = {r["id"]: r for r in c.get("/api/finetunes/runs").json()}  # job states read in one query
        assert {k: listed[one["id"]][k] for k in ("progress", "message", "status")} == {
            k: one[k] for k in ("progress", "message", "status")
        }
        while c.get(f"/api/evals/runs/{objects['eval_run']}").json()["status"] in ("queued", "running"):
            time.sleep(0.1)
    objects |= {"model": model, "prompt": prompt, "version_id": version_id, "experiment": exp.json()["id"]}
    objects["dataset"] = dataset
    objects["trace"] = trace
    spec = httpx.get(live.url + "/api/openapi.json").json()
    yield {"live": live, "keys": keys, "objects": objects, "spec": spec}
    next(served, None)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    ops = [
        (m.upper(), path)
        for path, item in spec["paths"].items()
        for m in item
        if m in ("get", "post", "put", "patch", "delete")
    ]
    return sorted(ops + V1)


def _fill(path: str, objects: dict[str, str]) -> tuple[str, bool]:
    """The path with A's objects in its parameters, and whether it names one of A's objects."""
    values = {
        "/api/projects/{ref}": {"ref": objects["project"], "user": objects["user"]},
        "/api/users/{ref}": {"ref": objects["user"]},
        "/api/keys/{ref}": {"ref": "pk-nosuchkey"},
        "/api/jobs/{job_id}": {"job_id": "job_nosuch"},
        "/api/models/{name}": {"name": objects["model"], "version": "1", "alias": "prod"},
        "/v1/models/{name}": {"name": objects["model"]},
        "/api/traces/retention/{project}": {"project": objects["project"]},
        "/api/traces/users/{user_id}": {"user_id": "end-user-1"},
        "/api/traces/{trace_id}": {"trace_id": objects["trace"]},
        "/api/routes/{name}": {"name": f"route-{objects['tag']}"},
        "/api/limits/{scope}/{ref}": {"scope": "project", "ref": objects["project"]},
        "/api/prompts/versions/{version_id}": {"version_id": objects["version_id"]},
        "/api/prompts/{name}": {"name": objects["prompt"], "ref": "1", "label": "prod"},
        "/api/experiments/{experiment_id}": {"experiment_id": objects["experiment"]},
        "/api/datasets/{name}": {"name": objects["dataset"], "ref": "1", "label": "prod"},
        "/api/evals/runs/{run_id}": {"run_id": objects["eval_run"]},
        "/api/evals/online/{name}": {"name": objects["rule"]},
        "/api/kb/{name}": {"name": objects["kb"], "label": "prod"},
        "/api/chain-approvals/{approval_id}": {"approval_id": "cap_nosuch"},
        "/api/chains/{name}": {"name": objects["chain"], "ref": "1", "label": "prod", "run_id": objects["chain_run"]},
        "/api/finetunes/blueprints/{blueprint_id}": {"blueprint_id": objects["blueprint"]},
        "/api/finetunes/runs/{run_id}": {"run_id": objects["finetune_run"]},
        "/api/alerts/rules/{rule_id}": {"rule_id": objects["alert_rule"]},
        "/api/drift/reports/{report_id}": {"report_id": "drr_nosuch"},
        "/api/monitors/{metric}": {"metric": "requests"},
        "/api/guard/policies/{name}": {"name": objects["policy"], "version": "1"},
    }
    if "{" not in path:
        return path, False
    prefix = next((p for p in sorted(values, key=len, reverse=True) if path.startswith(p.split("{")[0]) and
                   path.split("{")[0].startswith(p.split("{")[0])), None)  # fmt: skip
    assert prefix is not None, f"the matrix does not know what to put in {path}: add it to _fill"
    filled = path
    for name, value in values[prefix].items():
        filled = filled.replace("{" + name + "}", value)
    assert "{" not in filled, f"the matrix does not know a parameter of {path}: add it to _fill"
    owned = (
        "project",
        "model",
        "prompt",
        "version_id",
        "experiment",
        "trace",
        "dataset",
        "eval_run",
        "rule",
        "kb",
        "chain",
        "chain_run",
        "blueprint",
        "finetune_run",
        "alert_rule",
        "policy",
    )
    names_a = {objects[k] for k in owned}
    return filled, any(v in filled for v in names_a)


def _error_shaped(r: httpx.Response) -> bool:
    """The documented error body: `{"error": {"message": …, "code" or "type": …}}` (the `/v1` one is OpenAI's)."""
    try:
        error = r.json().get("error")
    except ValueError:
        return False
    return (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and bool(error.get("code") or error.get("type"))
    )


def _call(live: LiveServer, key: str | None, method: str, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {} if method in MUTATING else None
    with httpx.Client(base_url=live.url, timeout=30, headers=headers) as c:
        return c.request(method, path, json=body)


def test_every_operation_answers_each_caller_as_the_tenancy_model_says(world: dict[str, Any]) -> None:
    live, keys, objects = world["live"], world["keys"], world["objects"]
    secrets_a = [objects["prompt"], objects["model"], objects["trace"], objects["experiment"], objects["dataset"]]
    secrets_a += [objects["eval_run"], objects["rule"], objects["kb"], objects["chain"], objects["chain_run"]]
    secrets_a += [objects["blueprint"], objects["policy"]]
    secrets_a.append("secret-a")
    ops = _operations(world["spec"])
    assert len(ops) > 50  # the schema was read
    problems: list[str] = []
    for method, template in ops:
        path, names_a = _fill(template, objects)
        for caller, key in keys.items():
            if caller == "server-admin" and method in MUTATING:
                continue  # a server admin may change anything; its answers are covered by the domain tests
            r = _call(live, key, method, path)
            where = f"{caller} {method} {path} -> {r.status_code}"
            if r.status_code >= 500:
                problems.append(f"{where}: a server error {r.text[:200]}")
            if r.status_code >= 400 and not _error_shaped(r):
                problems.append(f"{where}: not the documented error shape: {r.text[:200]}")
            if caller in ("none", "revoked") and (method, template) not in PUBLIC and r.status_code != 401:
                problems.append(f"{where}: expected 401")
            viewer_write = (
                caller == "viewer-a" and method in MUTATING and (method, template) not in SELF_SERVICE | READS
            )
            if viewer_write and 200 <= r.status_code < 300:
                problems.append(f"{where}: a viewer changed something")
            if caller == "member-b":
                if names_a and 200 <= r.status_code < 300:
                    problems.append(f"{where}: reached project A's object")
                leaked = [s for s in secrets_a if s in r.text and s not in path]  # not the caller's own words
                if leaked:
                    problems.append(f"{where}: project A's {leaked} in the answer")
            if caller == "member-a" and names_a and method == "GET" and r.status_code == 404:
                problems.append(f"{where}: A's member should see A's object ({r.text[:200]})")
    assert not problems, "\n".join(problems)
