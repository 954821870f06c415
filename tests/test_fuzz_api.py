"""schemathesis against both API surfaces, on SQLite and PostgreSQL (bounded: 10 examples per operation):
- the management API, from `/api/openapi.json`: every operation;
- the OpenAI-compatible gateway, from `/v1/openapi.json`: chat, completions and embeddings sent to a remote
  model registered on a stand-in OpenAI server (so generated bodies reach a real upstream call), and models.
No answer may be a server error, and every error answer must have the documented body (the check in
`schemathesis_hooks.py`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from .conftest import LiveServer
from .fakes import FakeServer, serving, start_fake_openai

HOOKS = Path(__file__).parent


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    yield from serving(start_fake_openai)


def schemathesis(schema: str, key: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe is not None, "schemathesis is a dev dependency: run make install"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(HOOKS)}
    args = [exe, "run", schema, *extra, "-H", f"Authorization: Bearer {key}"]
    args += ["--checks", "not_a_server_error,error_has_documented_shape"]
    if "--max-examples" not in extra:
        args += ["--max-examples", "10"]
    args += ["--phases", "examples,fuzzing", "--seed", "20261130", "--no-color"]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def _failures(out: str) -> str:
    """The failures section of a schemathesis report, with long runs of one character shortened (a fuzzed
    path of 5,000 repeated characters would otherwise hide the check that failed)."""
    import re

    start = out.find("FAILURES")
    text = out[start:] if start >= 0 else out
    text = re.sub(r"(.{1,6}?)\1{20,}", lambda m: m.group(1) * 3 + "…", text)
    return text[:8000]


def passed(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, _failures(run.stdout) + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.split("Test cases:")[-1], run.stdout[-3000:]


def test_fuzzed_management_requests_never_get_a_server_error(module_server: LiveServer, tmp_path: Path) -> None:
    passed(schemathesis(module_server.url + "/api/openapi.json", module_server.admin_key, tmp_path))


def test_fuzzed_gateway_requests_never_get_a_server_error(
    module_server: LiveServer, upstream: FakeServer, tmp_path: Path
) -> None:
    with module_server.client() as c:
        for name, task in (("fuzz-chat", "chat"), ("fuzz-embed", "embedding")):
            body = {"name": name, "provider": "openai", "base_url": upstream.url + "/v1", "upstream_model": "up"}
            r = c.post("/api/models/remote", json={**body, "task": task})
            assert r.status_code in (201, 409), r.text
        document: dict[str, Any] = c.get("/v1/openapi.json").json()
    # generated model names would nearly all be unknown (404): aim the bodies at the registered models, and at
    # one name that does not exist
    schemas = document["components"]["schemas"]
    for name, model in (
        ("ChatCompletionRequest", "fuzz-chat"),
        ("CompletionRequest", "fuzz-chat"),
        ("EmbeddingRequest", "fuzz-embed"),
    ):
        schemas[name]["properties"]["model"] = {"type": "string", "enum": [model, "no-such-model"]}
    path = tmp_path / "v1.json"
    path.write_bytes(orjson.dumps(document))
    before = len(upstream.requests)
    run = schemathesis(str(path), module_server.admin_key, tmp_path, "--url", module_server.url, "--max-examples", "40")
    passed(run)
    reached = upstream.requests[before:]
    assert any("messages" in b for b in reached) and any("input" in b for b in reached), "bodies never reached upstream"
    assert any("prompt" in b and "messages" not in b for b in reached), "no completion reached the upstream"
