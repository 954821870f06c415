"""`podium serve` as a real process: bootstrap, port in use, graceful SIGTERM, several workers."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
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
