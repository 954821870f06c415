"""Model workers under `podium serve`: one process per served local model, restarted if it dies,
stopped on shutdown. State files and sockets live in `<home>/run/models/` (sockets of a deep home in a
short per-user temp folder), logs in `<home>/logs/`."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess  # nosec B404  # runs our own modules with a fixed argv
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from podium.core.config import Settings

log = logging.getLogger("podium.supervisor")


# A Unix socket path holds at most 107 bytes on Linux (103 on macOS): a deep home would make the worker
# fail to bind ("AF_UNIX path too long"), so such homes keep their sockets in a short per-user directory
# named after the home instead.
_MAX_SOCKET_PATH = 100


def socket_path(settings: Settings, version_id: str) -> Path:
    """Where the worker of a model version listens."""
    path = settings.run_dir / "models" / f"{version_id}.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    tag = hashlib.sha256(os.fsencode(settings.run_dir)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"podium-{os.getuid()}-{tag}" / f"{version_id}.sock"


def state_path(settings: Settings, version_id: str) -> Path:
    """Where the worker of a model version records its state (always under the home)."""
    return settings.run_dir / "models" / f"{version_id}.state"


def worker_state(settings: Settings, version_id: str) -> tuple[str, str]:
    """(state, detail) written by the worker: loading, ready, failed, stopped; or `absent`."""
    path = state_path(settings, version_id)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return "absent", ""
    return (lines[0] if lines else "unknown"), (lines[1] if len(lines) > 1 else "")


def _write_state(path: Path, state: str, detail: str) -> None:
    tmp = path.with_suffix(".state.tmp")
    try:
        tmp.write_text(f"{state}\n{detail}\n")
        os.replace(tmp, path)
    except OSError:
        log.warning("cannot write %s", path)


@dataclass
class WorkerSpec:
    """One model version to keep running."""

    name: str
    version_id: str
    socket: Path
    state: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    history: list[float] = field(default_factory=list)


class ModelSupervisor:
    """Starts, watches and stops model worker processes."""

    BACKOFF_MAX = 60.0

    def __init__(self, settings: Settings, specs: list[WorkerSpec]):
        self.settings = settings
        self.specs = specs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="podium-model-supervisor", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Launch every worker and the watcher thread."""
        for spec in self.specs:
            self._launch(spec)
        self._thread.start()

    def _launch(self, spec: WorkerSpec) -> None:
        spec.state.parent.mkdir(parents=True, exist_ok=True)
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "podium.models.worker.main",
            "--version",
            spec.version_id,
            "--socket",
            str(spec.socket),
            "--state",
            str(spec.state),
        ]
        if self.settings.worker_threads:
            cmd += ["--threads", str(self.settings.worker_threads)]
        out = open(spec.log_file, "ab")  # noqa: SIM115 - the child owns it
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        spec.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # nosec B603  # our own module, fixed argv, no shell
        out.close()
        spec.started_at = time.monotonic()
        log.info(
            "model worker for %s (%s) started, pid %d, log %s",
            spec.name,
            spec.version_id,
            spec.process.pid,
            spec.log_file,
        )

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                for spec in self.specs:
                    proc = spec.process
                    if proc is None:
                        if time.monotonic() >= spec.next_start:
                            self._launch(spec)
                        continue
                    code = proc.poll()
                    if code is None:
                        if time.monotonic() - spec.started_at > 120:
                            spec.restarts = 0  # stable for two minutes: forget earlier crashes
                        continue
                    spec.process = None
                    spec.restarts += 1
                    delay = min(self.BACKOFF_MAX, 2 ** min(spec.restarts - 1, 6))
                    spec.next_start = time.monotonic() + delay
                    _write_state(spec.state, "restarting", f"the worker exited with {code}; restarting in {delay:.0f}s")
                    log.warning(
                        "model worker for %s exited with %s; restarting in %.0fs (see %s)",
                        spec.name,
                        code,
                        delay,
                        spec.log_file,
                    )

    def pids(self) -> dict[str, int | None]:
        """Current process id of each worker."""
        with self._lock:
            return {s.name: (s.process.pid if s.process else None) for s in self.specs}

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every worker, wait, then SIGKILL stragglers."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        procs = [s.process for s in self.specs if s.process is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
