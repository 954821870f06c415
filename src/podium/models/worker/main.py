"""Entry point of a model worker process: `python -m podium.models.worker.main --version mdv_… --socket PATH`.

It resolves the version in the registry, materialises and verifies its files, loads the model (files
derived from the weights, such as a converted GGUF or int8 weights, come from the per-user cache of
`derived` when an earlier start made them), then serves the OpenAI protocol on a unix socket. It writes
its state (loading, ready, failed) next to the socket so the gateway can say why a model is unavailable,
and dies with its parent.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podium.models.worker.app import WorkerState

log = logging.getLogger("podium.worker")


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the supervising `podium serve` dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


def write_state(path: Path, state: str, detail: str = "") -> None:
    """Record the worker's state (`loading`, `ready`, `failed`, `stopped`) and a detail line."""
    tmp = path.with_suffix(".state.tmp")
    tmp.write_text(f"{state}\n{detail}\n")
    os.replace(tmp, path)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    """Load the model and serve it until SIGTERM."""
    parser = argparse.ArgumentParser(prog="podium-model-worker")
    parser.add_argument("--version", required=True, help="Model version id (mdv_…).")
    parser.add_argument("--socket", required=True, help="Unix socket to serve on.")
    parser.add_argument("--state", default=None, help="State file (default: beside the socket).")
    parser.add_argument("--threads", type=int, default=0, help="Torch threads (0: all cores).")
    args = parser.parse_args(argv)
    _die_with_parent()
    logging.basicConfig(
        level=os.environ.get("PODIUM_LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    socket_path = Path(args.socket)
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if socket_path.parent.stat().st_uid != os.getuid():  # a shared temp dir: never bind in another user's folder
        raise SystemExit(f"{socket_path.parent} belongs to another user; remove it or use a shorter PODIUM_HOME")
    state_file = Path(args.state) if args.state else socket_path.with_suffix(".state")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    write_state(state_file, "loading")
    try:
        state, stop = load(args.version, args.threads or None)
    except Exception as exc:
        log.exception("loading %s failed", args.version)
        write_state(state_file, "failed", f"{type(exc).__name__}: {exc}")
        sys.exit(3)

    import uvicorn

    from podium.models.worker.app import build_app

    if socket_path.exists():
        socket_path.unlink()
    app = build_app(state)
    config = uvicorn.Config(
        app, uds=str(socket_path), loop="uvloop", http="httptools", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)

    orig_startup = server.startup

    async def startup(sockets: object = None) -> None:
        await orig_startup(sockets=sockets)  # type: ignore[arg-type]
        write_state(state_file, "ready", f"loaded in {time.monotonic() - state.started:.1f}s")
        log.info("%s ready on %s", state.model_name, socket_path)

    server.startup = startup  # type: ignore[method-assign]
    # uvicorn drains on SIGTERM, then raises the signal again with the handler it found: the default one
    # would end the process before the `finally` below records `stopped` and removes the socket
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        server.run()
    finally:
        stop()
        write_state(state_file, "stopped")
        if socket_path.exists():
            socket_path.unlink()


def load(version_id: str, threads: int | None) -> tuple[WorkerState, Callable[[], None]]:
    """Resolve, materialise and load a version; returns the worker state and a stop function."""
    from podium.core.config import load_settings
    from podium.core.identity import Actor
    from podium.core.platform import Platform
    from podium.models import service
    from podium.models.worker.app import WorkerState as State
    from podium.models.worker.derived import DerivedCache

    started = time.monotonic()
    settings = load_settings()
    platform = Platform.from_settings(settings)
    version = service.get_version_by_id(platform, Actor.system(), version_id)
    home_cache = settings.effective_cache_dir
    derived = DerivedCache(settings.effective_model_cache_dir, fallback=home_cache)
    path = service.materialize(platform.blobs, version, home_cache / "materialized")
    log.info("materialised %s@%d in %.1fs", version.model, version.version, time.monotonic() - started)
    state = State(model_name=version.model, version_id=version.id, task=version.task, started=started)
    if version.task == "embedding":
        from podium.models.worker.embedder import EmbedBatcher
        from podium.models.worker.loader import load_embedder

        state.embedder = EmbedBatcher(load_embedder(path, threads))
        state.embedder.start()
        return state, state.embedder.stop
    from podium.models.worker.engine import Engine
    from podium.models.worker.loader import load_causal_lm

    adapter, adapter_sha = None, None
    if version.format == "peft":
        assert version.base_version_id
        base = service.get_version_by_id(platform, Actor.system(), version.base_version_id)
        adapter, adapter_sha = path, version.sha256
        path = service.materialize(platform.blobs, base, home_cache / "materialized")
        fmt, sha = base.format, base.sha256
    else:
        fmt, sha = version.format, version.sha256
    options = version.config.get("engine") or {}
    state.lm = load_causal_lm(
        path,
        fmt=fmt,
        sha256=sha,
        cache_root=derived,
        dtype=str(options.get("dtype", settings.local_dtype)),
        adapter=adapter,
        adapter_sha256=adapter_sha,
        threads=threads,
        module=False,  # the fast path's models are mapped from their safetensors, not built in transformers
    )
    state.engine = Engine(
        state.lm,
        max_batch=int(options.get("max_batch", settings.local_max_batch)),
        max_queue=int(options.get("max_queue", settings.local_max_queue)),
        cache=derived,
    )
    state.engine.start()
    return state, state.engine.stop


if __name__ == "__main__":
    main()
