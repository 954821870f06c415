"""`podium serve` as a real process: bootstrap, port in use, graceful SIGTERM, several workers."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from .conftest import VENV_BIN, free_port, run_cli


class ServeProcess:
    def __init__(self, cwd: Path, port: int, *args: str, env: dict[str, str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
        full_env.update(env or {})
        self.log = cwd / f"serve-{port}.log"
        self._out = open(self.log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "podium"), "serve", "--port", str(port), *args],
            cwd=cwd,
            env=full_env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve not ready:\n{self.output()}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text()

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM; True if the server shut down gracefully (uvicorn re-raises SIGTERM after draining)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code in (0, -signal.SIGTERM) and "Application shutdown complete" in self.output()


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[object]:
    started: list[ServeProcess] = []

    def start(*args: str, port: int | None = None, env: dict[str, str] | None = None) -> ServeProcess:
        p = ServeProcess(tmp_path, port or free_port(), *args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def test_first_start_creates_admin_key_once(serve_factory, tmp_path: Path) -> None:
    srv = serve_factory()
    srv.wait_ready()
    key_file = tmp_path / ".podium" / "admin.key"
    key = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key in srv.output()
    r = httpx.get(srv.url + "/api/projects", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()[0]["name"] == "default"
    # the home and what the server keeps in it are its user's alone (traces are other people's data)
    home = tmp_path / ".podium"
    big = {"spans": [{"trace_id": "trc_modes", "start_time": "2026-11-30T00:00:00Z", "input": "x" * 40_000}]}
    r = httpx.post(srv.url + "/api/traces/ingest", json=big, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 202, r.text
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [home, *home.rglob("*")] if not p.is_symlink()}
    loose = {str(p): oct(m) for p, m in modes.items() if m & 0o077}
    assert not loose, loose
    assert (home / "artifacts") in modes and (home / "podium.db") in modes
    assert srv.stop()
    again = serve_factory()
    again.wait_ready()
    assert key not in again.output()
    assert "Created the first admin API key" not in again.output()
    assert key_file.read_text().strip() == key
    assert again.stop()


def test_port_in_use_is_one_line(serve_factory, tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = run_cli("serve", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use; stop the other process or pick another with --port"
    )


def test_sigterm_drains_in_flight_and_flushes(serve_factory, tmp_path: Path) -> None:
    srv = serve_factory()
    srv.wait_ready()
    key = (tmp_path / ".podium" / "admin.key").read_text().strip()
    assert httpx.get(srv.url + "/api/whoami", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    body = orjson.dumps({"name": "drained", "description": "arrived during shutdown"})
    head = (
        f"POST /api/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(head + body[:10])
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.7)
    assert srv.proc.poll() is None, "server exited with a request in flight"
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/healthz", timeout=2)
    sock.sendall(body[10:])
    response = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        response += chunk
    sock.close()
    assert response.startswith(b"HTTP/1.1 201"), response[:200]
    assert srv.stop()

    engine = sa.create_engine(f"sqlite:///{tmp_path / '.podium' / 'podium.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT description FROM projects WHERE name='drained'")).scalar() == (
            "arrived during shutdown"
        )
        last_used = conn.execute(sa.text("SELECT last_used_at FROM api_keys")).scalar()
        audit = conn.execute(sa.text("SELECT COUNT(*) FROM audit_log WHERE action='project.create'")).scalar()
    engine.dispose()
    assert last_used is not None, "the buffered last-used time was not flushed at shutdown"
    assert audit == 2  # the default project and the drained one


def test_two_workers_share_metrics(serve_factory, tmp_path: Path) -> None:
    srv = serve_factory("--workers", "2")
    srv.wait_ready(90)
    for _ in range(40):
        assert httpx.get(srv.url + "/healthz").status_code == 200
    metrics = httpx.get(srv.url + "/metrics").text
    line = next(
        m for m in metrics.splitlines() if m.startswith('podium_http_requests_total{method="GET",route="/healthz"')
    )
    assert float(line.rsplit(" ", 1)[1]) == 40.0
    assert srv.stop()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)  # keeps the mtime, so the cache trusts the file without hashing it


def test_readyz_lists_a_loading_model_and_a_call_waits_for_it(tmp_path: Path) -> None:
    """While the chat model cannot finish loading (its converted weights are being built by "another
    process": this test, holding that cache entry's lock), `/readyz` lists it as loading and a chat call
    waits for it instead of failing; once the entry appears the call is answered, `/readyz` says ready and
    `podium serve` prints that the model is ready."""
    from openai import OpenAI

    from podium.models.builtin import BUILTINS
    from podium.models.worker.loader import convert_gguf

    from .models_fixtures import MODEL_CACHE, smollm_gguf
    from .serving import start_serving

    chat = "smollm2-135m-instruct"
    sha = next(b for b in BUILTINS if b.name == chat).weights[1]
    made = Path(convert_gguf(smollm_gguf(), MODEL_CACHE, sha))  # the suite's shared copy (built once per machine)
    cache = tmp_path / "model-cache"
    if (MODEL_CACHE / "int8").exists():  # calibrated int8 weights, if the suite made them: else calibrated here
        shutil.copytree(MODEL_CACHE / "int8", cache / "int8", copy_function=_link_or_copy)
    staging = cache / "converted" / ".staging"
    shutil.copytree(made, staging, copy_function=_link_or_copy)
    lock = open(cache / "converted" / f".{sha}.lock", "ab")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    served = start_serving(
        tmp_path,
        models=chat,
        env={"PODIUM_MODEL_CACHE_DIR": str(cache), "PODIUM_CACHE_DIR": str(tmp_path / "home-cache")},
        wait_models=False,
    )
    try:
        body = httpx.get(served.url + "/readyz", timeout=10).json()
        ref = f"{chat}@1"  # the version this server serves
        assert body["status"] == "ready" and body["models"] == {ref: "loading"} and body["loading"] == [ref]
        worker_log = served.home / "logs" / f"model-{chat}.log"
        deadline = time.monotonic() + 180
        while "another process is building" not in (worker_log.read_text() if worker_log.exists() else ""):
            assert time.monotonic() < deadline, served.output()
            time.sleep(0.2)
        key = (served.home / "admin.key").read_text().strip()
        client = OpenAI(base_url=served.url + "/v1", api_key=key, timeout=300, max_retries=0)
        answers: list[object] = []

        def ask() -> None:
            try:
                answers.append(
                    client.chat.completions.create(
                        model=chat, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0
                    )
                )
            except Exception as exc:  # handed to the test's thread
                answers.append(exc)

        caller = threading.Thread(target=ask)
        caller.start()
        caller.join(2)  # before this change the gateway refused it at once (503 model_loading)
        assert caller.is_alive() and not answers, answers
        assert httpx.get(served.url + "/readyz", timeout=10).json()["models"] == {ref: "loading"}
        os.rename(staging, cache / "converted" / sha)  # "the other process" finishes the entry
        fcntl.flock(lock, fcntl.LOCK_UN)
        caller.join(300)
        assert len(answers) == 1 and not isinstance(answers[0], Exception), answers
        answer = answers[0]
        assert answer.choices[0].message.content  # type: ignore[attr-defined]
        body = httpx.get(served.url + "/readyz", timeout=10).json()
        assert body["models"] == {ref: "ready"} and body["loading"] == []
        deadline = time.monotonic() + 10
        while f"Model {ref} is ready" not in served.output():
            assert time.monotonic() < deadline, served.output()
            time.sleep(0.2)
    finally:
        lock.close()
        served.stop()
