"""Model workers under `podium serve`: one process per served local model, restarted if it dies,
stopped on shutdown. State files and sockets live in `<home>/run/models/` (sockets of a deep home in a
short per-user temp folder), logs in `<home>/logs/`; `served.json` there lists the models this server
serves (read by `/readyz`).

Workers start one after another, language models first: on a small machine two workers loading at once
each take about twice as long, and the chat model is the one a first request waits for. The next worker
starts two seconds after the previous one is ready (at once if it failed), or after `STAGGER` seconds if
it is still loading (a first conversion of a GGUF file). Until its worker runs, a model's state reads
`loading`, so the gateway waits for it rather than refusing it. Each model's readiness is printed when it
happens.

A local version no worker serves is started on demand: a gateway process (any of the uvicorn workers) asks
for it by writing `<version>.wanted` (JSON: version id, reference, task) beside the state files, and touches
`<version>.used` at most every few seconds while it calls a served model; the supervisor's watch loop takes
the wanted files in the order they came. At `max_model_workers` it stops the least recently used on-demand
worker (never a `serve_models` one, nor one loading or just ready) to make room, or writes the state
`refused` with what to change when only `serve_models` workers run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
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


def wanted_path(settings: Settings, version_id: str) -> Path:
    """Where a gateway process asks the supervisor to start a worker for a model version."""
    return settings.run_dir / "models" / f"{version_id}.wanted"


def used_path(settings: Settings, version_id: str) -> Path:
    """The file whose modification time says when a model version was last called (for on-demand eviction)."""
    return settings.run_dir / "models" / f"{version_id}.used"


def _served(settings: Settings) -> dict[str, object]:
    try:
        served = json.loads(served_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return served if isinstance(served, dict) else {}


def served_models(settings: Settings) -> dict[str, str]:
    """Each model the running server serves (from `serve_models` or on demand), by reference, with its
    worker's state (loading, ready, restarting, failed, ...); empty if it serves none (or is not running)."""
    models = _served(settings).get("models")
    if not isinstance(models, list):
        return {}
    try:
        return {str(m["name"]): worker_state(settings, str(m["version_id"]))[0] for m in models}
    except (KeyError, TypeError):
        return {}


def on_demand_available(settings: Settings) -> bool:
    """Whether a running `podium serve` supervisor starts workers on demand (`serve_on_demand`); false for an
    app served without one (then nothing would ever take a wanted file)."""
    served = _served(settings)
    pid = served.get("pid")
    if served.get("on_demand") is not True or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)  # a served.json left by a killed server names a process that is gone
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def request_worker(settings: Settings, version_id: str, name: str, task: str) -> bool:
    """Ask the supervisor to start a worker for a version (atomically: a wanted file appears whole or not at
    all, whichever gateway process writes it); False if it cannot be written."""
    path = wanted_path(settings, version_id)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps({"version_id": version_id, "name": name, "task": task}))
        os.replace(tmp, path)
    except OSError:
        log.warning("cannot write %s", path)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True


def mark_used(settings: Settings, version_id: str) -> None:
    """Record that a model version was just called (the file's modification time)."""
    path = used_path(settings, version_id)
    try:
        os.utime(path)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            path.touch()
    except OSError:
        pass


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
    on_demand: bool = False  # started for a call, not from serve_models: may be stopped to make room
    requested: float = 0.0  # when it was asked for (wall clock, as the used file's time)
    stopping: float = 0.0  # when it was sent SIGTERM to make room (monotonic)
    stopped_for: str = ""  # the model it made room for


@dataclass(frozen=True)
class Wanted:
    """A gateway process's request for a worker (a `.wanted` file)."""

    version_id: str
    name: str
    task: str
    at: float  # when it was written (wall clock)
    path: Path


_VERSION_ID = re.compile(r"mdv_[0-9A-Za-z]{1,64}")
_NAME = re.compile(r"[\w.:@-]{1,300}")  # a reference: it names the worker's log file
_FAILED_EXIT = 3  # a worker that could not load its model exits with 3 after writing `failed` and why


def read_wanted(path: Path) -> Wanted | None:
    """A wanted file's request, or None if it is not a well-formed one (the name must be the version id)."""
    try:
        at = path.stat().st_mtime
        with open(path, "rb") as fh:
            raw = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    vid, name, task = raw.get("version_id"), raw.get("name"), raw.get("task", "")
    if not (isinstance(vid, str) and _VERSION_ID.fullmatch(vid) and path.name == f"{vid}.wanted"):
        return None
    if not (isinstance(name, str) and _NAME.fullmatch(name) and isinstance(task, str) and len(task) <= 32):
        return None
    return Wanted(vid, name, task, at, path)


class ModelSupervisor:
    """Starts (one after another), watches and stops model worker processes; prints when each is ready; starts
    and stops on-demand workers as gateway processes ask (see the module's docstring)."""

    BACKOFF_MAX = 60.0
    STAGGER = 15.0  # seconds a loading worker holds back the next one
    GRACE = 2.0  # seconds a worker that just became ready holds back the next one (and cannot be stopped)
    TICK = 0.2  # seconds between looks at the workers
    STOP_WAIT = 15.0  # seconds a worker stopped to make room has to exit before it is killed

    def __init__(self, settings: Settings, specs: list[WorkerSpec], announce: bool = True):
        self.settings = settings
        self.specs = sorted(specs, key=lambda s: s.task == "embedding")  # stable: language models first
        self.announce = announce  # print readiness on stdout (as `podium serve` does)
        self.limit = settings.max_model_workers
        self._stopping: list[WorkerSpec] = []  # on-demand workers stopped to make room, until they exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="podium-model-supervisor", daemon=True)
        self._lock = threading.Lock()
        self._began = time.monotonic()

    def start(self) -> None:
        """Mark every model loading, list them in `served.json`, launch the first worker and the watcher
        thread (which launches the others in turn)."""
        self._began = time.monotonic()
        self._clear_previous()
        for spec in self.specs:  # overwrite a previous run's state (`ready` of a worker long gone)
            spec.state.parent.mkdir(parents=True, exist_ok=True)
            _write_state(spec.state, "loading", "starting")
        self._write_served()
        with self._lock:
            self._launch_due()
        self._thread.start()

    def _clear_previous(self) -> None:
        """Forget a previous run's requests, use times and the states of workers it started on demand (a
        `ready` left by a killed server would send calls to a socket nobody serves)."""
        folder = self.settings.run_dir / "models"
        keep = {f"{s.version_id}.state" for s in self.specs}
        try:
            entries = list(folder.iterdir())
        except OSError:
            return
        for path in entries:
            if path.suffix in (".wanted", ".used", ".tmp") or (path.suffix == ".state" and path.name not in keep):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _write_served(self) -> None:
        path = served_path(self.settings)
        models = [
            {"name": s.name, "version_id": s.version_id, "task": s.task, "on_demand": s.on_demand} for s in self.specs
        ]
        body = {
            "pid": os.getpid(),
            "on_demand": self.settings.serve_on_demand,
            "max_model_workers": self.limit,
            "models": models,
        }
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
                self._take_wanted()
                self._launch_due()
                self._reap_stopping()
                for spec in list(self.specs):
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
                    if spec.on_demand:
                        self._forget(spec, code)
                        continue
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

    def _forget(self, spec: WorkerSpec, code: int) -> None:
        """An on-demand worker exited: it is not restarted (its next call starts it again); one that failed
        to load keeps its `failed` state, so calls get the reason instead of loading it again and again."""
        self.specs.remove(spec)
        if code != _FAILED_EXIT:
            _write_state(spec.state, "stopped", f"the worker exited with {code}; the next call starts it again")
        log.warning("on-demand model worker for %s exited with %s (see %s)", spec.name, code, spec.log_file)
        self._write_served()

    # --- on demand -------------------------------------------------------------------------------

    def _take_wanted(self) -> None:
        """Start the workers gateway processes asked for, in the order they asked, within `max_model_workers`."""
        folder = self.settings.run_dir / "models"
        try:
            paths = [p for p in folder.iterdir() if p.suffix == ".wanted"]
        except OSError:
            return
        if not paths:
            return
        requests: list[Wanted] = []
        for path in paths:
            wanted = read_wanted(path)
            if wanted is None:
                log.warning("ignoring %s: not a request for a model worker", path)
                with contextlib.suppress(OSError):
                    path.unlink()
            else:
                requests.append(wanted)
        # a request nobody waits for any more (its calls gave up after model_load_wait) is dropped: a call
        # that still waits asks again when it sees the file gone
        expired = time.time() - max(self.settings.model_load_wait, 5.0) - 5.0
        freeing = len(self._stopping)  # slots that come free when those exit, taken in order
        changed = False
        for w in sorted(requests, key=lambda r: r.at):
            if w.at < expired or any(s.version_id == w.version_id for s in self.specs):
                self._done(w)
                continue
            if not self.settings.serve_on_demand:
                self._refuse(w, "serve_on_demand is off; add it to serve_models (PODIUM_SERVE_MODELS) and restart")
                continue
            if any(s.version_id == w.version_id for s in self._stopping):
                continue  # started again once its previous worker has exited
            if len(self.specs) + len(self._stopping) < self.limit:
                self._add(w)
                changed = True
            elif freeing:
                freeing -= 1
            elif (victim := self._victim()) is not None:
                self._make_room(victim, w)
                changed = True
            elif not any(s.on_demand for s in self.specs):
                served = ", ".join(s.name for s in self.specs)
                self._refuse(
                    w,
                    f"this server already runs max_model_workers = {self.limit} model workers, all for serve_models"
                    f" ({served}); raise max_model_workers (PODIUM_MAX_MODEL_WORKERS) or serve fewer models",
                )
            # else: every on-demand worker is loading or just ready; one becomes stoppable shortly
        if changed:
            self._write_served()

    def _done(self, w: Wanted) -> None:
        with contextlib.suppress(OSError):
            w.path.unlink()

    def _refuse(self, w: Wanted, why: str) -> None:
        _write_state(state_path(self.settings, w.version_id), "refused", why)
        self._done(w)  # after the state: a call that sees no wanted file reads the answer
        log.warning("not starting %s on demand: %s", w.name, why)

    def _add(self, w: Wanted) -> None:
        spec = WorkerSpec(
            name=w.name,
            version_id=w.version_id,
            socket=socket_path(self.settings, w.version_id),
            state=state_path(self.settings, w.version_id),
            log_file=self.settings.home_dir / "logs" / f"model-{w.name.replace('@', '-v')}.log",
            task=w.task,
            on_demand=True,
            requested=w.at,
        )
        _write_state(spec.state, "loading", "starting on demand")
        self.specs.append(spec)
        self._done(w)
        log.info("starting a model worker for %s on demand", w.name)
        if self.announce:
            print(f"Loading model {w.name} on demand", flush=True)

    def _last_used(self, spec: WorkerSpec) -> float:
        try:
            used = used_path(self.settings, spec.version_id).stat().st_mtime
        except OSError:
            used = 0.0
        return max(used, spec.requested)

    def _victim(self) -> WorkerSpec | None:
        """The least recently used on-demand worker that may be stopped: running and ready for `GRACE`
        seconds (a loading one has calls waiting for it; stopping it would make two models take turns)."""
        now = time.monotonic()
        candidates = [
            s
            for s in self.specs
            if s.on_demand
            and s.process is not None
            and s.ready_at
            and now - s.ready_at >= self.GRACE
            and worker_state(self.settings, s.version_id)[0] == "ready"
        ]
        return min(candidates, key=self._last_used, default=None)

    def _make_room(self, victim: WorkerSpec, w: Wanted) -> None:
        """Stop an on-demand worker (its calls in flight finish: the worker drains before it exits)."""
        self.specs.remove(victim)
        victim.stopping = time.monotonic()
        victim.stopped_for = w.name
        self._stopping.append(victim)
        # calls read `stopping` at once and wait for (or ask again for) the model instead of calling a
        # worker that no longer accepts connections
        _write_state(victim.state, "stopping", f"making room for {w.name} (max_model_workers = {self.limit})")
        assert victim.process is not None
        with contextlib.suppress(OSError):
            victim.process.send_signal(signal.SIGTERM)
        log.info("stopping model worker for %s to make room for %s", victim.name, w.name)
        if self.announce:
            line = f"Stopping model {victim.name} to make room for {w.name} (max_model_workers = {self.limit})"
            print(line, flush=True)

    def _reap_stopping(self) -> None:
        for spec in list(self._stopping):
            proc = spec.process
            assert proc is not None
            if proc.poll() is None:
                if time.monotonic() - spec.stopping > self.STOP_WAIT:
                    proc.kill()
                continue
            self._stopping.remove(spec)
            spec.process = None
            _write_state(
                spec.state,
                "stopped",
                f"stopped to make room for {spec.stopped_for} (max_model_workers = {self.limit}); the next call"
                " starts it again",
            )
            with contextlib.suppress(OSError):
                spec.socket.unlink()

    def _report(self, spec: WorkerSpec) -> None:
        """Say when a model becomes ready or fails (once per change)."""
        state, detail = worker_state(self.settings, spec.version_id)
        if state == spec.seen:
            return
        spec.seen = state
        now = time.monotonic()
        since = now - self._began
        if state == "ready":
            spec.ready_at = spec.ready_at or now
            when = "started on demand" if spec.on_demand else f"{since:.1f}s after start"
            line = f"Model {spec.name} is ready ({when}; {detail or 'loaded'})"
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
        """SIGTERM every worker (those started on demand too), wait, then SIGKILL stragglers."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            procs = [s.process for s in [*self.specs, *self._stopping] if s.process is not None]
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
