"""A real `podium serve` process with the built-in models loaded, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from .conftest import VENV_BIN, free_port
from .models_fixtures import MODEL_CACHE, TEST_CACHE


@dataclass
class ServedPodium:
    url: str
    key: str
    home: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def worker_states(self) -> dict[str, str]:
        folder = self.home / "run" / "models"
        return {p.stem: p.read_text().split("\n")[0] for p in folder.glob("*.state")} if folder.exists() else {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_serving(
    folder: Path,
    *,
    models: str = "smollm2-135m-instruct,minilm-l6-v2",
    env: dict[str, str] | None = None,
    timeout: float = 300,
    wait_models: bool = True,
) -> ServedPodium:
    """Start `podium serve` in `folder` and wait until every model worker is ready (or, with
    `wait_models=False`, only until the server answers `/readyz`)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_") or k.startswith("PODIUM_TEST_")}
    full_env.update(
        {
            "PODIUM_SERVE_MODELS": models,
            "PODIUM_CACHE_DIR": str(TEST_CACHE),
            "PODIUM_MODEL_CACHE_DIR": str(MODEL_CACHE),  # the suite's servers share one model cache
            "PODIUM_JOB_WORKERS": "1",
        }
    )
    full_env.update(env or {})
    log = folder / "serve.log"
    out = open(log, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(VENV_BIN / "podium"), "serve", "--port", str(port)],
        cwd=folder,
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    home = folder / ".podium"
    url = f"http://127.0.0.1:{port}"
    served = ServedPodium(url, "", home, proc, log)
    expected = len([m for m in models.split(",") if m])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"podium serve exited:\n{served.output()}")
        states = served.worker_states()
        if any(s == "failed" for s in states.values()):
            logs = "\n".join(p.read_text()[-3000:] for p in (home / "logs").glob("*.log"))
            raise AssertionError(f"a model worker failed:\n{logs}")
        if not wait_models or (len(states) == expected and all(s == "ready" for s in states.values())):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    served.key = (home / "admin.key").read_text().strip()
                    return served
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    served.stop()
    raise AssertionError(f"models not ready in {timeout}s: {served.worker_states()}\n{served.output()}")


@contextmanager
def worker_http(state: Any) -> Iterator[str]:
    """A model worker's HTTP app (`podium.models.worker.app`) for a loaded `WorkerState`, served by uvicorn on
    loopback in this process; yields its base URL and stops the server and the state's engine after."""
    from podium.models.worker.app import build_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        if state.engine is not None:
            state.engine.stop()
