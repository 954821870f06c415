"""Model workers under `podium serve`: one process per served local model, restarted if it dies,
stopped on shutdown. State files and sockets live in `<home>/run/models/` (sockets of a deep home in a
short per-user temp folder), logs in `<home>/logs/`; `served.json` there lists the models this server
serves (read by `/readyz`).

Workers start one after another, language models first: on a small machine two workers loading at once
each take about twice as long, and the chat model is the one a first request waits for. The next worker
starts two seconds after the previous one is ready (at once if it failed), or after `STAGGER` seconds if
it is still loading (a first conversion of a GGUF file). Until its worker runs, a model's state reads
`loading`, so the gateway waits for it rather than refusing it. Each model's readiness is printed when it
happens."""

from __future__ import annotations

import contextlib
import hashlib
import json
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


def served_path(settings: Settings) -> Path:
    """Where `podium serve` lists the local models it serves."""
    return settings.run_dir / "models" / "served.json"


def served_models(settings: Settings) -> dict[str, str]:
    """Each model the running server serves, by name, with its worker's state (loading, ready, restarting,
    failed, ...); empty if the server serves none (or is not running)."""
    try:
        served = json.loads(served_path(settings).read_text())
        return {str(m["name"]): worker_state(settings, str(m["version_id"]))[0] for m in served}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


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
    task: str = ""  # chat, completion or embedding: language models start first
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    history: list[float] = field(default_factory=list)
    launched: bool = False  # started at least once (the staggered start has reached it)
    ready_at: float = 0.0  # when the supervisor saw it ready (monotonic), since its latest launch
    seen: str = ""  # the last state reported (printed when it changes to ready or failed)


class ModelSupervisor:
    """Starts (one after another), watches and stops model worker processes; prints when each is ready."""

    BACKOFF_MAX = 60.0
    STAGGER = 15.0  # seconds a loading worker holds back the next one
    GRACE = 2.0  # seconds a worker that just became ready holds back the next one
    TICK = 0.2  # seconds between looks at the workers

    def __init__(self, settings: Settings, specs: list[WorkerSpec], announce: bool = True):
        self.settings = settings
        self.specs = sorted(specs, key=lambda s: s.task == "embedding")  # stable: language models first
        self.announce = announce  # print readiness on stdout (as `podium serve` does)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="podium-model-supervisor", daemon=True)
        self._lock = threading.Lock()
        self._began = time.monotonic()

    def start(self) -> None:
        """Mark every model loading, list them in `served.json`, launch the first worker and the watcher
        thread (which launches the others in turn)."""
        self._began = time.monotonic()
        for spec in self.specs:  # overwrite a previous run's state (`ready` of a worker long gone)
            spec.state.parent.mkdir(parents=True, exist_ok=True)
            _write_state(spec.state, "loading", "starting")
        self._write_served()
        with self._lock:
            self._launch_due()
        self._thread.start()

    def _write_served(self) -> None:
        path = served_path(self.settings)
        body = [{"name": s.name, "version_id": s.version_id, "task": s.task} for s in self.specs]
        tmp = path.with_suffix(".json.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(body))
            os.replace(tmp, path)
        except OSError:
            log.warning("cannot write %s", path)

    def _launch_due(self) -> None:
        """Launch the next worker in order once the one before it no longer holds it back."""
        now = time.monotonic()
        for spec in self.specs:
            if spec.launched:
                if spec.process is not None and self._holds(spec, now):
                    return
                continue
            spec.launched = True
            self._launch(spec)
            return

    def _holds(self, spec: WorkerSpec, now: float) -> bool:
        """Whether a running worker holds back the next one: while it loads (for up to `STAGGER` seconds),
        and for `GRACE` seconds once ready, so that the calls that waited for it are answered before the
        next worker's loading competes with them for the cores (on 2 cores, a first chat answer took
        1.2-1.9 s instead of 0.2-0.3 s while the embedding worker loaded)."""
        state = worker_state(self.settings, spec.version_id)[0]
        if state == "loading":
            return now - spec.started_at < self.STAGGER
        if state == "ready":
            spec.ready_at = spec.ready_at or now
            return now - spec.ready_at < self.GRACE
        return False

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
        spec.ready_at = 0.0
        log.info(
            "model worker for %s (%s) started, pid %d, log %s",
            spec.name,
            spec.version_id,
            spec.process.pid,
            spec.log_file,
        )

    def _watch(self) -> None:
        while not self._stop.wait(self.TICK):
            with self._lock:
                self._launch_due()
                for spec in self.specs:
                    if not spec.launched:
                        continue
                    self._report(spec)
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

    def _report(self, spec: WorkerSpec) -> None:
        """Say when a model becomes ready or fails (once per change)."""
        state, detail = worker_state(self.settings, spec.version_id)
        if state == spec.seen:
            return
        spec.seen = state
        since = time.monotonic() - self._began
        if state == "ready":
            line = f"Model {spec.name} is ready ({since:.1f}s after start; {detail or 'loaded'})"
            log.info("model %s is ready (%s)", spec.name, detail)
        elif state == "failed":
            line = f"Model {spec.name} failed to load: {detail} (see {spec.log_file})"
            log.warning("model %s failed to load: %s", spec.name, detail)
        else:
            return
        if self.announce:
            print(line, flush=True)

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
        with contextlib.suppress(OSError):
            served_path(self.settings).unlink()
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
