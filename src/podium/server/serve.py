"""`podium serve`: prepare the home and database, start the model workers (those of `serve_models`; the
supervisor starts others on demand), then run uvicorn."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from podium.auth.service import bootstrap
from podium.core.config import Settings
from podium.core.db import get_database
from podium.core.errors import DatabaseError, PodiumError
from podium.core.migrate import schema_state, upgrade
from podium.core.platform import load_secret_key

if TYPE_CHECKING:
    from podium.models.supervisor import WorkerSpec

log = logging.getLogger("podium.serve")


def _rotate_secrets(settings: Settings) -> None:
    """After a secret key rotation: stored provider secrets re-encrypted under the new key."""
    from podium.core.platform import Platform
    from podium.gateway.admin import rotate_secrets as rotate_routes
    from podium.models.service import rotate_secrets as rotate_models

    platform = Platform.from_settings(settings)
    routes, models = rotate_routes(platform), rotate_models(platform)
    log.info("re-encrypted the secrets of %d routes and %d model versions under the current key", routes, models)


def _private(path: Path, mode: int) -> None:
    """Restrict a file or folder Podium made to its owner (one made by an earlier version, or under
    another umask); left alone if it is not ours."""
    try:
        if path.stat().st_uid == os.getuid():
            path.chmod(mode)
    except OSError:
        pass


def prepare(settings: Settings, *, register_builtins: bool = True) -> str | None:
    """Create the home, migrate the database as allowed, create the first admin key.

    Returns the new admin key if one was made (the caller prints it once).
    """
    from podium.gateway.admin import config_route_specs

    config_route_specs(settings)  # a bad [[routes]] table stops here, in one line, before any worker starts
    home = settings.home_dir
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private(home, 0o700)
    db = get_database(settings.effective_database_url)
    state = schema_state(db)
    if state.status == "ahead":
        from podium.core.migrate import newer_database_error

        raise newer_database_error(db, state)
    if state.status == "fresh" or (state.status == "behind" and settings.auto_upgrade):
        upgrade(db)
    elif state.status == "behind":
        raise DatabaseError(f"database is {state.describe}; auto_upgrade is off, so run `podium db upgrade` first")
    if db.backend == "sqlite" and db.engine.url.database:
        for suffix in ("", "-wal", "-shm"):
            _private(Path(db.engine.url.database + suffix), 0o600)
    from podium.gateway.limits import check_stored_limits

    check_stored_limits(settings, db)  # several workers count limits apart unless Redis is shared
    load_secret_key(settings)
    if settings.secret_key_previous:
        _rotate_secrets(settings)
    secret = bootstrap(db)
    if secret is not None:
        write_admin_key(settings, secret)
    if register_builtins:
        from podium.core.platform import Platform
        from podium.models.builtin import ensure_builtin_models

        ensure_builtin_models(Platform.from_settings(settings))
    return secret


def model_workers(settings: Settings) -> list[WorkerSpec]:
    """The local models to serve (`serve_models`), each resolved to the version its worker loads."""
    from podium.core.platform import Platform
    from podium.models import service
    from podium.models.supervisor import WorkerSpec, socket_path, state_path

    platform = Platform.from_settings(settings)
    specs: list[WorkerSpec] = []
    for ref in settings.serve_models:
        try:
            resolved = service.resolve(platform, ref)
        except PodiumError as exc:
            log.warning("not serving %s: %s", ref, exc.message)
            continue
        if resolved.model.provider != "local":
            log.warning("not serving %s: it is a %s model, served by its provider", ref, resolved.model.provider)
            continue
        vid = resolved.version.id
        specs.append(
            WorkerSpec(
                name=resolved.ref,
                version_id=vid,
                socket=socket_path(settings, vid),
                state=state_path(settings, vid),
                log_file=settings.home_dir / "logs" / f"model-{resolved.model.name}.log",
                task=resolved.model.task,
            )
        )
    return specs


def write_admin_key(settings: Settings, secret: str) -> None:
    """Write the bootstrap admin key to `<home>/admin.key`, readable by its owner only."""
    path = settings.admin_key_path
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def check_port(host: str, port: int) -> None:
    """Fail with one line if the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PodiumError(
                    f"port {port} on {host} is already in use; stop the other process or pick another with --port"
                ) from None
            raise PodiumError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def export_settings(settings: Settings) -> None:
    """Pass the effective settings to worker processes through the environment."""
    os.environ["PODIUM_HOME"] = str(settings.home_dir)
    os.environ["PODIUM_DATABASE_URL"] = settings.effective_database_url
    os.environ["PODIUM_ARTIFACTS_URL"] = settings.effective_artifacts_url
    os.environ["PODIUM_HOST"] = settings.host
    os.environ["PODIUM_PORT"] = str(settings.port)
    os.environ["PODIUM_WORKERS"] = str(settings.workers)
    os.environ["PODIUM_LOG_LEVEL"] = settings.log_level
    if settings.workers > 1:
        metrics_dir = settings.home_dir / "run" / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def run(settings: Settings) -> None:
    """Prepare, then serve until SIGTERM/SIGINT (uvicorn drains in-flight requests, then the app flushes)."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    check_port(settings.host, settings.port)
    # what the server creates (database, write-ahead log, artifacts, spill files, sockets, logs) is its
    # user's alone: traces and payloads are other people's data
    os.umask(0o077)
    secret = prepare(settings)
    if secret is not None:
        print(
            "\nCreated the first admin API key (shown once; also saved to "
            f"{settings.admin_key_path}, mode 0600):\n\n    {secret}\n",
            flush=True,
        )
    export_settings(settings)
    from podium.models.supervisor import ModelSupervisor

    specs = model_workers(settings)
    if len(specs) >= settings.max_model_workers and settings.serve_on_demand:
        log.warning(
            "serve_models fills max_model_workers (%d): no model can be started on demand; raise max_model_workers",
            settings.max_model_workers,
        )
    supervisor = ModelSupervisor(settings, specs)
    supervisor.start()
    if specs:
        print(f"Loading models: {', '.join(s.name for s in specs)} (logs in {settings.home_dir / 'logs'})", flush=True)
    print(
        f"Podium serving on http://{settings.host}:{settings.port}  (dashboard at /, API at /api/docs)",
        flush=True,
    )
    try:
        _run_uvicorn(settings)
    finally:
        supervisor.stop()


def _run_uvicorn(settings: Settings) -> None:
    uvicorn.run(
        "podium.server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=int(settings.graceful_timeout) or None,
        # X-Forwarded-* are believed from the configured proxies only (else a client could choose its address)
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )
