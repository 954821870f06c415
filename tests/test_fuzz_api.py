"""schemathesis against the management API: examples and fuzzed requests for every `/api` operation of the
OpenAPI schema (bounded: 10 examples each), on SQLite and PostgreSQL. None may answer with a server error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import LiveServer


def test_fuzzed_requests_never_get_a_server_error(module_server: LiveServer, tmp_path: Path) -> None:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe is not None, "schemathesis is a dev dependency: run make install"
    run = subprocess.run(
        [
            exe,
            "run",
            module_server.url + "/api/openapi.json",
            "-H",
            f"Authorization: Bearer {module_server.admin_key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "10",
            "--phases",
            "examples,fuzzing",
            "--seed",
            "20261130",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.split("Test cases:")[-1], run.stdout[-3000:]
