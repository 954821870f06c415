"""Shared fixtures: real databases (SQLite, and PostgreSQL when configured), real servers on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from podium.core.config import Settings, load_settings
from podium.core.db import forget_database
from podium.core.platform import Platform

pytest_plugins = ["tests.browser", "tests.models_fixtures"]

PG_URL = os.environ.get("PODIUM_TEST_DATABASE_URL")
REQUIRE_PG = os.environ.get("PODIUM_TEST_REQUIRE_POSTGRES") == "1"
VENV_BIN = Path(sys.executable).parent


def pytest_configure(config: pytest.Config) -> None:
    if REQUIRE_PG and not PG_URL:
        raise pytest.UsageError("PODIUM_TEST_REQUIRE_POSTGRES=1 but PODIUM_TEST_DATABASE_URL is not set")


MODULE_SCOPED = {"module_server", "gw", "live", "world"}  # module-scoped fixtures that take the backend


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take `backend` run on SQLite and, when PODIUM_TEST_DATABASE_URL is set, on PostgreSQL."""
    if "backend" in metafunc.fixturenames:
        backends = ["sqlite"] + (["postgresql"] if PG_URL else [])
        metafunc.parametrize(
            "backend", backends, scope="module" if MODULE_SCOPED & set(metafunc.fixturenames) else None
        )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PODIUM_* setting leaks in from the developer's shell, and no podium.toml from the cwd."""
    for name in list(os.environ):
        if name.startswith("PODIUM_") and not name.startswith("PODIUM_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def _pg_admin() -> sa.Engine:
    assert PG_URL
    url = sa.make_url(PG_URL).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; returns its URL."""
    name = f"podium_t_{uuid.uuid4().hex[:12]}"
    try:
        with _pg_admin().connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    assert PG_URL
    return sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    forget_database(url)
    name = sa.make_url(url).database
    with _pg_admin().connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def make_db_url(backend: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'podium.db'}"
    return create_pg_database()


def release_db_url(backend: str, url: str) -> None:
    if backend == "postgresql":
        drop_pg_database(url)
    else:
        forget_database(url)


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite database URL (tests that need PostgreSQL too take `backend`)."""
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    yield url
    forget_database(url)


@pytest.fixture
def backend_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the parametrised backend."""
    url = make_db_url(backend, tmp_path)
    yield url
    release_db_url(backend, url)


def make_settings(home: Path, db_url: str, **extra: object) -> Settings:
    return load_settings(home=str(home), database_url=db_url, **extra)


def prepared_platform(settings: Settings, *, builtins: bool = False) -> tuple[Platform, str]:
    """Migrate and bootstrap a database (registering the built-in models if asked); returns platform and key."""
    from podium.server.serve import prepare

    secret = prepare(settings, register_builtins=builtins)
    assert secret is not None
    return Platform.from_settings(settings), secret


@pytest.fixture
def platform(tmp_path: Path, db_url: str) -> Iterator[tuple[Platform, str]]:
    """A migrated, bootstrapped SQLite platform and its admin key."""
    settings = make_settings(tmp_path / "home", db_url)
    yield prepared_platform(settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A Podium app served by uvicorn on loopback, in a thread of the test process."""

    url: str
    admin_key: str
    platform: Platform
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread
    app: Any = None

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key if key is not None else self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_server(settings: Settings, key: str | None = None) -> LiveServer:
    """Serve `settings` on a free port; prepares (migrates, bootstraps) the database unless given its `key`
    (a second process on the same database)."""
    from podium.server.app import create_app

    if key is None:
        _, key = prepared_platform(settings)
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", key, app.state.platform, settings, server, thread, app)


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    """A live server on SQLite."""
    live = start_server(make_settings(tmp_path / "home", db_url))
    yield live
    live.stop()


def serve_for_module(backend: str, folder: Path, **extra: object) -> Iterator[LiveServer]:
    """A live server in `folder` on `backend`, free of the caller's PODIUM_* environment; stopped after."""
    url = make_db_url(backend, folder)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PODIUM_") and "TEST" not in k}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        live = start_server(make_settings(folder / "home", url, **extra))
    finally:
        os.chdir(cwd)
        os.environ.update(saved)
    yield live
    live.stop()
    release_db_url(backend, url)


@pytest.fixture(scope="module")
def module_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server shared by a module's tests, on each backend."""
    yield from serve_for_module(backend, tmp_path_factory.mktemp(f"srv-{backend}"))


def project_key(live: LiveServer, project: str, role: str = "member") -> str:
    """A key of `role` in `project` (made if missing), from the server admin."""
    with live.client() as c:
        c.post("/api/projects", json={"name": project})
        r = c.post("/api/keys", json={"name": "k-" + uuid.uuid4().hex[:6], "project": project, "role": role})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real `podium` command in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_") or k.startswith("PODIUM_TEST_")}
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [str(VENV_BIN / "podium"), *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on loopback (the Debian package; CI installs it, so there it must exist)."""
    import shutil

    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI"):
            raise pytest.UsageError("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def sign_in_http(client: Any, key: str, next_path: str = "/") -> Any:
    """Sign a dashboard client in as a browser does: fetch the form (its CSRF cookie), then post it."""
    assert client.get("/login").status_code == 200
    token = client.cookies.get("podium_login_csrf")
    return client.post("/login", data={"api_key": key, "next": next_path, "csrf": token}, follow_redirects=False)
