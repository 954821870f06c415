"""Jobs: submit long work, follow its progress and log, cancel it.

Callers only use `submit`, `get_job`, `list_jobs` and `cancel`; which backend runs the work (threads
in the server process today, Ray later) is the server's choice, behind the `JobBackend` protocol.
A job kind is a function registered with `@job_kind("name")`, taking a `JobContext`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from sqlalchemy import select, update

from podium.auth.service import principal_of_key, project_ref, record_audit
from podium.core.db import Database, utcnow
from podium.core.domains import import_job_kinds
from podium.core.errors import Conflict, Forbidden, InvalidInput, NotFound, PodiumError
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.paging import Page
from podium.jobs.store import FINAL, STATUSES, Job, JobLog

if TYPE_CHECKING:
    from podium.core.platform import Platform

log = logging.getLogger("podium.jobs")
Handler = Callable[["JobContext"], dict[str, Any] | None]


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled (or the server is stopping)."""


@dataclass(frozen=True)
class JobKind:
    """A registered kind of job."""

    name: str
    handler: Handler
    role: str
    description: str
    api: bool = True  # may be submitted through `POST /api/jobs`; else only by its domain's service


_KINDS: dict[str, JobKind] = {}


def _registered() -> dict[str, JobKind]:
    """The kinds every installed domain registers (their job modules are imported on first use)."""
    import_job_kinds()
    return _KINDS


SERVER_ADMIN = "server-admin"  # the role of job kinds that act on the whole server (not one project)


def job_kind(
    name: str, *, role: str = "member", description: str = "", api: bool = True
) -> Callable[[Handler], Handler]:
    """Register a handler for jobs of kind `name`; `role` is the least role that may submit it. A kind with
    `api=False` is queued only by its domain's service (its parameters are trusted: they name who acts)."""

    def deco(fn: Handler) -> Handler:
        _KINDS[name] = JobKind(name, fn, role, description or (fn.__doc__ or "").strip().split("\n")[0], api)
        return fn

    return deco


def kinds() -> dict[str, JobKind]:
    """Every registered job kind."""
    return dict(_registered())


class JobInfo(BaseModel):
    """A job as the API shows it."""

    id: str
    kind: str
    project_id: str | None
    status: str
    progress: float
    message: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    attempts: int
    logs: list[str] | None = None


def _info(j: Job, logs: list[str] | None = None) -> JobInfo:
    return JobInfo(
        id=j.id,
        kind=j.kind,
        project_id=j.project_id,
        status=j.status,
        progress=j.progress,
        message=j.message,
        params=j.params,
        result=j.result,
        error=j.error,
        created_by=j.created_by,
        created_at=j.created_at,
        started_at=j.started_at,
        finished_at=j.finished_at,
        cancel_requested=j.cancel_requested,
        attempts=j.attempts,
        logs=logs,
    )


# --- the service ---------------------------------------------------------------------------------


class JobBackend(Protocol):
    """Runs queued jobs. The local thread pool is one; a Ray backend would be another."""

    def start(self) -> None:
        """Begin taking queued jobs."""

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""

    def stop(self, timeout: float) -> None:
        """Stop taking jobs; give running ones `timeout` seconds, then requeue them."""


_backends: list[JobBackend] = []


def submit(
    db: Database,
    actor: Actor,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    project: str | None = None,
    internal: bool = False,
) -> JobInfo:
    """Queue a job of a registered kind (`internal`: by its domain's service, which checked its parameters)."""
    spec = _registered().get(kind)
    if spec is not None and not spec.api and not internal:
        raise InvalidInput(
            f"jobs of kind {kind!r} are queued through their own API, not /api/jobs", details={"field": "kind"}
        )
    if spec is None:
        raise InvalidInput(
            f"unknown job kind {kind!r}; known: {', '.join(sorted(_registered())) or 'none'}",
            details={"field": "kind"},
        )
    if spec.role == SERVER_ADMIN:
        actor.require_admin(f"run {kind} jobs")
    else:
        actor.require(spec.role, f"run {kind} jobs")
    with db.session() as s:
        project_id = project_ref(s, project).id if project else actor.project_id
        p = actor.principal
        if p is not None and not actor.is_admin and project_id != p.project_id:
            raise Forbidden(
                f"your key belongs to project {p.project_name!r}; it may run jobs there only",
                details={"field": "project"},
            )
        job = Job(
            id=new_id("job"),
            kind=kind,
            project_id=project_id,
            status="queued",
            params=params or {},
            created_by=actor.label,
            created_at=utcnow(),
        )
        s.add(job)
        s.flush()
        record_audit(s, actor, "job.submit", "job", job.id, project_id=project_id, details={"kind": kind})
        info = _info(job)
    for backend in _backends:
        backend.wake()
    return info


def get_job(db: Database, actor: Actor, job_id: str, *, with_logs: bool = True, log_tail: int = 200) -> JobInfo:
    """One job, with the last `log_tail` log lines."""
    with db.read_session() as s:
        job = s.get(Job, job_id)
        if job is None or not _visible(actor, job):
            raise NotFound(f"job {job_id!r} not found")
        logs = None
        if with_logs:
            rows = s.scalars(
                select(JobLog.line).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(log_tail)
            ).all()
            logs = list(reversed(rows))
        return _info(job, logs)


def get_jobs(db: Database, actor: Actor, job_ids: Collection[str]) -> dict[str, JobInfo]:
    """The jobs among `job_ids` that the actor sees, by id, without logs (one query, for listings)."""
    if not job_ids:
        return {}
    with db.read_session() as s:
        rows = s.scalars(select(Job).where(Job.id.in_(list(job_ids))))
        return {j.id: _info(j) for j in rows if _visible(actor, j)}


def _visible(actor: Actor, job: Job) -> bool:
    p = actor.principal
    return actor.is_admin or (p is not None and job.project_id == p.project_id)


def list_jobs(
    db: Database,
    actor: Actor,
    *,
    status: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[JobInfo]:
    """Jobs newest first; non-admins see their project's."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status {status!r} is not one of {', '.join(STATUSES)}", details={"field": "status"})
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500", details={"field": "limit"})
    with db.read_session() as s:
        q = select(Job).order_by(Job.id.desc()).limit(limit + 1)
        if status:
            q = q.where(Job.status == status)
        if kind:
            q = q.where(Job.kind == kind)
        if cursor:
            q = q.where(Job.id < cursor)
        p = actor.principal
        if p is not None and not actor.is_admin:
            q = q.where(Job.project_id == p.project_id)
        rows = list(s.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[JobInfo](items=[_info(j) for j in rows], next_cursor=rows[-1].id if more and rows else None)


def cancel(db: Database, actor: Actor, job_id: str) -> JobInfo:
    """Cancel a job: a queued one at once, a running one at its next progress report."""
    actor.require("member", "cancel jobs")
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None or not _visible(actor, job):
            raise NotFound(f"job {job_id!r} not found")
        if job.status in FINAL:
            raise Conflict(f"job {job_id} has already {job.status}; nothing to cancel")
        if job.status == "queued":
            job.status = "cancelled"
            job.finished_at = utcnow()
            job.message = "cancelled before it started"
        job.cancel_requested = True
        record_audit(s, actor, "job.cancel", "job", job.id, project_id=job.project_id)
        return _info(job)


# --- running jobs ---------------------------------------------------------------------------------


class JobContext:
    """What a handler sees: its parameters, and ways to report progress and notice cancellation."""

    PROGRESS_INTERVAL = 0.5
    CANCEL_CHECK_INTERVAL = 0.5

    def __init__(self, platform: Platform, job: Job, stopping: threading.Event):
        self.platform = platform
        self.db = platform.db
        self.job_id = job.id
        self.kind = job.kind
        self.params: dict[str, Any] = dict(job.params)
        self.project_id = job.project_id
        self.created_by = job.created_by
        self._stopping = stopping
        self._last_write = 0.0
        self._last_check = 0.0
        self._cancelled = False

    def acting(self) -> Actor:
        """Who the job acts as: the key that queued it (`params["key_id"]`), with the rights its user has now
        (a key revoked or a member removed since then stops the job), in the project it was queued in; the
        system when no key queued it."""
        key_id = self.params.get("key_id")
        if key_id is None:
            return Actor.system(request_id=f"job:{self.job_id}")
        principal = principal_of_key(self.platform.db, key_id)
        if principal.project_id != self.project_id and not principal.admin:
            raise Forbidden("the key that queued this job now belongs to another project")
        return Actor(principal, request_id=f"job:{self.job_id}")

    def log(self, line: str) -> None:
        """Append a line to the job's log."""
        with self.db.session() as s:
            s.add(JobLog(job_id=self.job_id, at=utcnow(), line=line[:10_000]))

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        """Report progress in [0, 1]; written at most twice a second. Raises `JobCancelled` if cancelled."""
        now = time.monotonic()
        if force or now - self._last_write >= self.PROGRESS_INTERVAL:
            self._last_write = now
            values: dict[str, Any] = {"progress": max(0.0, min(1.0, fraction)), "heartbeat_at": utcnow()}
            if message is not None:
                values["message"] = message[:2000]
            with self.db.session() as s:
                s.execute(update(Job).where(Job.id == self.job_id).values(**values))
        self.check_cancelled()

    @property
    def stopping(self) -> bool:
        """True once the server started stopping (the job will be requeued, not cancelled)."""
        return self._stopping.is_set()

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or the server started stopping."""
        if self._cancelled or self._stopping.is_set():
            return True
        now = time.monotonic()
        if now - self._last_check >= self.CANCEL_CHECK_INTERVAL:
            self._last_check = now
            with self.db.read_session() as s:
                self._cancelled = bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise `JobCancelled` if the job should stop."""
        if self.cancelled:
            raise JobCancelled()


def _dead_here(worker: str | None, host: str) -> bool:
    """Whether `worker` (`host:pid`) was a process of this host that has ended."""
    name, _, pid = (worker or "").rpartition(":")
    if name != host or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class LocalBackend:
    """Runs jobs on threads in this process; any number of processes can share one database."""

    POLL = 1.0
    HEARTBEAT = 15.0
    STALE_AFTER = timedelta(seconds=90)

    def __init__(self, platform: Platform, workers: int = 2):
        self.platform = platform
        self.db = platform.db
        self.workers = workers
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Requeue jobs orphaned by a dead worker, then start the threads."""
        self._requeue_stale()
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"podium-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat_loop, name="podium-job-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)
        _backends.append(self)

    def wake(self) -> None:
        """Look for queued jobs now."""
        with self._wake:
            self._wake.notify_all()

    def stop(self, timeout: float) -> None:
        """Signal running jobs to stop, wait up to `timeout`, requeue whatever is left."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = set(self._running)
        if left:
            self._requeue(left, "server stopped before the job finished; requeued")
        if self in _backends:
            _backends.remove(self)

    def _requeue_stale(self) -> None:
        """Requeue running jobs whose worker is gone: silent for `STALE_AFTER`, or (at once) a process of this
        host that no longer exists, as after a crash or a kill of the server that ran it."""
        cutoff = utcnow() - self.STALE_AFTER
        host = socket.gethostname()
        with self.db.session() as s:
            rows = s.execute(select(Job.id, Job.worker, Job.heartbeat_at).where(Job.status == "running")).all()
        ids = {job_id for job_id, worker, beat in rows if beat is None or beat < cutoff or _dead_here(worker, host)}
        if ids:
            self._requeue(ids, "the worker running this job stopped; requeued")

    def _requeue(self, ids: set[str], reason: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(Job)
                .where(Job.id.in_(ids))
                .where(Job.status == "running")
                .values(status="queued", worker=None, message=reason, progress=0.0)
            )
            for job_id in ids:
                s.add(JobLog(job_id=job_id, at=utcnow(), line=reason))

    def _claim(self) -> Job | None:
        names = list(_registered())
        if not names:
            return None
        with self.db.session() as s:
            candidates = s.scalars(
                select(Job.id)
                .where(Job.status == "queued")
                .where(Job.kind.in_(names))
                .order_by(Job.created_at)
                .limit(5)
            ).all()
            now = utcnow()
            for job_id in candidates:
                claimed = s.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .where(Job.status == "queued")
                    .values(
                        status="running",
                        worker=self.name,
                        started_at=now,
                        heartbeat_at=now,
                        attempts=Job.attempts + 1,
                    )
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    s.flush()
                    return s.get(Job, job_id)
        return None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._claim()
            except Exception:
                log.exception("could not claim a job")
                job = None
            if job is None:
                with self._wake:
                    self._wake.wait(self.POLL)
                continue
            with self._lock:
                self._running.add(job.id)
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running.discard(job.id)

    def _run(self, job: Job) -> None:
        ctx = JobContext(self.platform, job, self._stopping)
        spec = _registered()[job.kind]
        status, result, error, message = "succeeded", None, None, "done"
        try:
            result = spec.handler(ctx)
        except JobCancelled:
            if self._stopping.is_set() and not ctx._cancelled:
                self._requeue({job.id}, "server stopped before the job finished; requeued")
                return
            status, message = "cancelled", "cancelled while running"
        except PodiumError as exc:
            status, error, message = "failed", exc.message, "failed"
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            status, error, message = "failed", f"{type(exc).__name__}: {exc}", "failed"
        with self.db.session() as s:
            values: dict[str, Any] = {
                "status": status,
                "result": result,
                "error": error,
                "message": message,
                "finished_at": utcnow(),
            }
            if status == "succeeded":
                values["progress"] = 1.0
            s.execute(update(Job).where(Job.id == job.id).values(**values))
            if error:
                s.add(JobLog(job_id=job.id, at=utcnow(), line=f"error: {error}"))

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.HEARTBEAT):
            with self._lock:
                ids = set(self._running)
            if ids:
                try:
                    with self.db.session() as s:
                        s.execute(update(Job).where(Job.id.in_(ids)).values(heartbeat_at=utcnow()))
                except Exception:
                    log.exception("job heartbeat failed")
