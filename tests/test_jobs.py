"""Background jobs: run, progress, failure, cancellation, requeue on shutdown, CLI and API."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from podium.core.errors import Conflict, InvalidInput
from podium.core.identity import Actor
from podium.jobs import service as jobs
from podium.jobs.service import JobContext, LocalBackend, job_kind

from .conftest import LiveServer, run_cli

gate = threading.Event()


@job_kind("test.count", description="Count to n, reporting progress.")
def _count(ctx: JobContext) -> dict[str, Any]:
    n = int(ctx.params.get("n", 5))
    for i in range(n):
        ctx.log(f"step {i}")
        ctx.progress((i + 1) / n, f"{i + 1}/{n}", force=True)
    return {"counted": n}


@job_kind("test.fail")
def _fail(ctx: JobContext) -> None:
    raise ValueError("the data had a hole in it")


@job_kind("test.wait")
def _wait(ctx: JobContext) -> dict[str, Any]:
    while not gate.is_set():
        ctx.progress(0.5, "waiting")
        time.sleep(0.05)
    return {"waited": True}


def _until(fn: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_job_runs_with_progress_and_log(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/jobs", json={"kind": "test.count", "params": {"n": 4}})
        assert r.status_code == 201
        job_id = r.json()["id"]
        done = _until(lambda: (j := c.get(f"/api/jobs/{job_id}").json())["status"] == "succeeded" and j)
    assert done["result"] == {"counted": 4}
    assert done["progress"] == 1.0
    assert done["logs"] == ["step 0", "step 1", "step 2", "step 3"]
    assert done["started_at"] and done["finished_at"]


def test_failing_job_records_error(server: LiveServer) -> None:
    with server.client() as c:
        job_id = c.post("/api/jobs", json={"kind": "test.fail"}).json()["id"]
        done = _until(lambda: (j := c.get(f"/api/jobs/{job_id}").json())["status"] == "failed" and j)
    assert done["error"] == "ValueError: the data had a hole in it"
    assert "error: ValueError: the data had a hole in it" in done["logs"]


def test_cancel_running_and_finished(server: LiveServer) -> None:
    gate.clear()
    with server.client() as c:
        job_id = c.post("/api/jobs", json={"kind": "test.wait"}).json()["id"]
        _until(lambda: c.get(f"/api/jobs/{job_id}").json()["status"] == "running")
        r = c.post(f"/api/jobs/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["cancel_requested"] is True
        done = _until(lambda: (j := c.get(f"/api/jobs/{job_id}").json())["status"] == "cancelled" and j)
        assert done["message"] == "cancelled while running"
        r = c.post(f"/api/jobs/{job_id}/cancel")
        assert r.status_code == 409 and "already cancelled" in r.json()["error"]["message"]


def test_unknown_kind_and_bad_filters(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/jobs", json={"kind": "nope"})
        assert r.status_code == 400
        assert "unknown job kind 'nope'" in r.json()["error"]["message"]
        assert "artifacts.verify" in r.json()["error"]["message"]
        assert c.get("/api/jobs", params={"status": "sleeping"}).status_code == 400
        assert c.get("/api/jobs/job_missing").status_code == 404


def test_queued_job_cancels_at_once_and_shutdown_requeues(platform: tuple[Any, str]) -> None:
    plat, _ = platform
    actor = Actor.system()
    queued = jobs.submit(plat.db, actor, "test.count", {"n": 1})
    cancelled = jobs.cancel(plat.db, actor, queued.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(Conflict):
        jobs.cancel(plat.db, actor, queued.id)
    with pytest.raises(InvalidInput):
        jobs.submit(plat.db, actor, "missing.kind")

    gate.clear()
    backend = LocalBackend(plat, workers=1)
    backend.start()
    try:
        job = jobs.submit(plat.db, actor, "test.wait")
        _until(lambda: jobs.get_job(plat.db, actor, job.id).status == "running")
    finally:
        backend.stop(timeout=5)
    after = jobs.get_job(plat.db, actor, job.id)
    assert after.status == "queued"
    assert after.logs and "requeued" in after.logs[-1]
    # a new backend picks the requeued job up and finishes it
    gate.set()
    backend = LocalBackend(plat, workers=1)
    backend.start()
    try:
        done = _until(lambda: (j := jobs.get_job(plat.db, actor, job.id)).status == "succeeded" and j)
        assert done.attempts == 2
    finally:
        backend.stop(timeout=5)


def test_artifacts_verify_job_and_cli(server: LiveServer, tmp_path: Path) -> None:
    blobs = server.platform.blobs
    good = blobs.put(b"fine")
    bad = blobs.put(b"will rot")
    Path(blobs.path(bad)).write_bytes(b"rotten")
    env = {"PODIUM_URL": server.url, "PODIUM_API_KEY": server.admin_key}
    result = run_cli("artifacts", "verify", "--json", env=env)
    assert result.returncode == 1, result.stderr
    import json

    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["result"] == {"checked": 2, "corrupt": [bad]}
    assert good not in job["result"]["corrupt"]
    listed = run_cli("jobs", "ls", "--json", env=env)
    assert listed.returncode == 0
    assert json.loads(listed.stdout)["items"][0]["id"] == job["id"]
    shown = run_cli("jobs", "show", job["id"], env=env)
    assert shown.returncode == 0
    assert f"corrupt: sha256:{bad}" in shown.stdout
    followed = run_cli("jobs", "show", job["id"], "--follow", env=env)
    assert followed.returncode == 0
    assert "100%" in followed.stderr


def test_a_member_runs_jobs_in_its_own_project_only(server: LiveServer) -> None:
    with server.client() as c:
        assert c.post("/api/projects", json={"name": "other-team"}).status_code == 201
        assert c.post("/api/users", json={"name": "job-member", "role": "member"}).status_code == 201
        key = c.post("/api/keys", json={"name": "k", "user": "job-member"}).json()["key"]
    with server.client(key) as c:
        r = c.post("/api/jobs", json={"kind": "test.count", "params": {"n": 1}, "project": "other-team"})
        assert r.status_code == 403, r.text
        assert "project" in r.json()["error"]["message"]
        assert c.post("/api/jobs", json={"kind": "test.count", "params": {"n": 1}}).status_code == 201
        assert (
            c.post("/api/jobs", json={"kind": "test.count", "params": {"n": 1}, "project": "default"}).status_code
            == 201
        )
    with server.client() as c:  # an admin may run them anywhere
        assert (
            c.post("/api/jobs", json={"kind": "test.count", "params": {"n": 1}, "project": "other-team"}).status_code
            == 201
        )
