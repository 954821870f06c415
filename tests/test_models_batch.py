"""Batch inference end to end: `podium serve` with the built-in SmolLM2 answers a dataset version the test
uploads, through `POST /api/models/batch`, the CLI and the SDK, into a new dataset version; bad columns,
another project's dataset and unknown models are refused before a job is queued; a cancelled batch writes
no version."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import podium.models

from .conftest import run_cli
from .models_fixtures import MODEL_CACHE
from .serving import ServedPodium, start_serving

pytestmark = pytest.mark.slow
CHAT = "smollm2-135m-instruct"
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPodium]:
    s = start_serving(tmp_path_factory.mktemp("batch"), models=CHAT, env={"PODIUM_MODEL_CACHE_DIR": str(MODEL_CACHE)})
    yield s
    s.stop()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _client(served: ServedPodium, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key or served.key}"}, timeout=60)


def _upload(served: ServedPodium, name: str, rows: list[dict[str, Any]], key: str | None = None) -> dict[str, Any]:
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with _client(served, key) as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body)
    assert r.status_code == 201, r.text
    version: dict[str, Any] = r.json()["version"]
    return version


def _wait(c: httpx.Client, job_id: str, until: tuple[str, ...] = FINAL) -> dict[str, Any]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job: dict[str, Any] = c.get(f"/api/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {until}: {job}")


def _rows(c: httpx.Client, ref: str) -> list[dict[str, Any]]:
    name, _, version = ref.partition("@")
    r = c.get(f"/api/datasets/{name}/versions/{version}/rows", params={"limit": 1000})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["rows"]
    return rows


def _key(served: ServedPodium, project: str, role: str = "member") -> str:
    with _client(served) as c:
        c.post("/api/projects", json={"name": project})
        r = c.post("/api/keys", json={"name": _name("k"), "project": project, "role": role})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


QUESTIONS = [
    {"id": 1, "q": "What is the capital of France?"},
    {"id": 2, "q": "Name a primary colour."},
    {"id": 3, "q": None},  # a row that cannot be asked: kept, with its error
    {"id": 4, "q": "How many legs does a spider have?"},
    {"id": 5, "q": "Say hello."},
]


def test_a_batch_writes_a_new_version_with_every_row_answered_or_its_error(served: ServedPodium) -> None:
    name = _name("questions")
    source = _upload(served, name, QUESTIONS)
    spec = {
        "model": CHAT,
        "dataset": f"{name}@1",
        "input_column": "q",
        "system": "Answer in one short sentence.",
        "params": {"max_tokens": 16},
        "concurrency": 4,
    }
    with _client(served) as c:
        r = c.post("/api/models/batch", json=spec)
        assert r.status_code == 202, r.text
        assert r.json()["kind"] == "models.batch"
        job = _wait(c, r.json()["id"])
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert (result["ref"], result["rows"], result["failed"], result["source"]) == (f"{name}@2", 5, 1, f"{name}@1")
        assert result["route"] == CHAT and result["completion_tokens"] > 0
        rows = _rows(c, result["ref"])
        version = c.get(f"/api/datasets/{name}/versions/2").json()
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]  # the input's rows and order, nothing dropped
    assert [r["q"] for r in rows] == [q["q"] for q in QUESTIONS]
    for row in rows:
        if row["q"] is None:
            assert row["output"] is None and row["output_error"] == "the row has no value in column 'q'"
            assert row["output_trace_id"] is None and row["output_completion_tokens"] is None
            continue
        assert row["output_error"] is None, row
        assert isinstance(row["output"], str) and row["output"].strip()
        assert 0 < row["output_completion_tokens"] <= 16 and row["output_prompt_tokens"] > 0
        assert row["output_latency_ms"] > 0 and row["output_finish_reason"] in ("stop", "length")
        assert row["output_trace_id"].startswith("trc")
    columns = [c["name"] for c in version["columns"]]
    added = ["output_error", "output_latency_ms", "output_prompt_tokens", "output_completion_tokens"]
    assert columns == ["id", "q", "output", *added, "output_finish_reason", "output_trace_id"]
    assert [p["id"] for p in version["parents"]] == [source["id"]]
    lineage = version["lineage"]
    assert (lineage["kind"], lineage["source"], lineage["model"], lineage["job"]) == (
        "batch",
        source["id"],
        CHAT,
        job["id"],
    )
    assert lineage["params"] == {"max_tokens": 16} and lineage["system"] == "Answer in one short sentence."


def test_the_cli_and_sdk_answer_a_messages_column_into_another_dataset(served: ServedPodium) -> None:
    name, answers = _name("chats"), _name("answers")
    chats = [
        {"messages": [{"role": "user", "content": "Hi there!"}]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]},
    ]
    _upload(served, name, chats)
    env = {"PODIUM_URL": served.url, "PODIUM_API_KEY": served.key}
    done = run_cli(
        "models", "batch", CHAT, f"{name}@1", "--messages-column", "messages", "-o", answers,
        "--output-column", "reply", "--max-tokens", "8", "--wait", env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Wrote {answers}@1: 2 rows, 0 failed" in done.stdout
    with _client(served) as c:
        rows = _rows(c, f"{answers}@1")
        assert c.get(f"/api/datasets/{name}").json()["latest_version"] == 1  # the input dataset is unchanged
    assert all(r["reply"] and r["reply_error"] is None and r["reply_completion_tokens"] <= 8 for r in rows)
    assert rows[1]["messages"][0] == {"role": "system", "content": "Be brief."}
    # the SDK: a handle's batch, waited for (each run is a new version: its latencies and traces are its own)
    handle = podium.models.get(CHAT, url=served.url, api_key=served.key)
    job = handle.batch(f"{name}@1", messages_column="messages", output_dataset=answers, output_column="reply",
                       params={"max_tokens": 8})  # fmt: skip
    assert job["status"] == "succeeded" and job["result"]["ref"] == f"{answers}@2" and job["result"]["created"]
    bad = run_cli("models", "batch", CHAT, f"{name}@1", "-i", "prompt", "--wait", env=env)
    assert bad.returncode == 1 and "has no column 'prompt' (input_column); its columns: messages" in bad.stderr


def test_bad_batches_are_refused_before_a_job_naming_what_is_wrong(served: ServedPodium) -> None:
    name = _name("refused")
    _upload(served, name, QUESTIONS)
    base = {"model": CHAT, "dataset": f"{name}@1", "input_column": "q"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {"input_column": "question"},
            400,
            f"dataset {name}@1 has no column 'question' (input_column); its columns: id, q",
        ),
        ({"input_column": "id"}, 400, "column 'id' of " + f"{name}@1 holds int64, not text"),
        ({"messages_column": "q"}, 400, "give input_column"),
        ({"input_column": None, "messages_column": "q"}, 400, "holds string, not lists of chat messages"),
        ({"input_column": None}, 400, "give input_column"),
        ({"output_column": "q"}, 400, "already has the column q; choose another output_column"),
        ({"concurrency": 65}, 400, "concurrency"),
        ({"concurrency": 0}, 400, "concurrency"),
        ({"limit": 0}, 400, "limit"),
        ({"params": {"temperature": 5}}, 400, "temperature"),
        ({"model": "no-such-model"}, 404, "model 'no-such-model' cannot be used"),
        ({"dataset": f"{name}@7"}, 404, f"dataset {name!r} has no version 7"),
    ]
    with _client(served) as c:
        jobs_before = len(c.get("/api/jobs", params={"kind": "models.batch"}).json()["items"])
        for change, status, message in cases:
            r = c.post("/api/models/batch", json={**base, **change})
            assert r.status_code == status, (change, r.text)
            assert message in r.json()["error"]["message"], (change, r.text)
        assert len(c.get("/api/jobs", params={"kind": "models.batch"}).json()["items"]) == jobs_before
    # another project neither reads the dataset nor learns its name; a viewer runs nothing
    other = _key(served, _name("other"))
    with _client(served, other) as c:
        r = c.post("/api/models/batch", json=base)
        assert r.status_code == 404 and "not found" in r.json()["error"]["message"], r.text
        mine = _name("mine")
        _upload(served, mine, QUESTIONS, key=other)
        r = c.post("/api/models/batch", json={**base, "dataset": f"{mine}@1", "output_dataset": name})
        assert r.status_code == 409 and "taken by another project" in r.json()["error"]["message"], r.text
    viewer = _key(served, _name("viewers"), "viewer")
    with _client(served, viewer) as c:
        r = c.post("/api/models/batch", json=base)
        assert r.status_code == 403, r.text


def test_a_cancelled_batch_writes_no_version(served: ServedPodium) -> None:
    name = _name("long")
    _upload(served, name, [{"q": f"Write a long story about the number {i}."} for i in range(300)])
    spec = {"model": CHAT, "dataset": f"{name}@1", "input_column": "q", "params": {"max_tokens": 64}, "concurrency": 1}
    with _client(served) as c:
        job = c.post("/api/models/batch", json=spec).json()
        deadline = time.monotonic() + 120
        while "rows answered" not in job["message"] or job["message"].startswith("0 of"):
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.2)
            job = c.get(f"/api/jobs/{job['id']}").json()
        assert c.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
        job = _wait(c, job["id"])
        assert job["status"] == "cancelled", job
        detail = c.get(f"/api/datasets/{name}").json()
    assert detail["latest_version"] == 1 and [v["version"] for v in detail["versions"]] == [1]
