"""Runs of blueprints: start one (a job runs its stages, see `pipeline`), read it with its stages and training
metrics, cancel it, promote what it deployed."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from podium.auth.service import record_audit
from podium.core.db import utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.finetune import spec as ft_spec
from podium.finetune.service import get_blueprint
from podium.finetune.store import FinetuneMetric, FinetuneRun
from podium.jobs import service as jobs

MAX_LISTED = 500
MAX_POINTS = 5000  # metric rows a run returns (one per logged step)
FINAL = ("succeeded", "failed", "cancelled")


class RunRequest(BaseModel):
    """What `start` takes: the blueprint, and optionally another backend than the blueprint's."""

    model_config = ConfigDict(extra="forbid")

    blueprint: str = Field(min_length=1, max_length=40)
    backend: str | None = Field(None, max_length=10)
    save_steps: int | None = Field(None, ge=1, le=100_000, description="Steps between checkpoints (default 10).")


class RunInfo(BaseModel):
    """A run as lists show it."""

    id: str
    blueprint_id: str
    job_id: str | None
    backend: str
    status: str
    stage: str
    progress: float
    message: str
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None


class Metric(BaseModel):
    """One logged training step."""

    step: int
    kind: str
    values: dict[str, Any]


class RunDetail(RunInfo):
    """A run whole: each stage's status and outputs, its result, metrics and the job's last log lines."""

    stages: dict[str, Any]
    result: dict[str, Any]
    metrics: list[Metric]
    logs: list[str]


def _info(r: FinetuneRun, job: jobs.JobInfo | None) -> RunInfo:
    return RunInfo(
        id=r.id,
        blueprint_id=r.blueprint_id,
        job_id=r.job_id,
        backend=r.backend,
        status=r.status,
        stage=r.stage,
        progress=job.progress if job else (1.0 if r.status == "succeeded" else 0.0),
        message=job.message if job else "",
        error=r.error,
        created_by=r.created_by,
        created_at=r.created_at,
        finished_at=r.finished_at,
    )


def _job(platform: Platform, actor: Actor, r: FinetuneRun, logs: bool = False) -> jobs.JobInfo | None:
    if r.job_id is None:
        return None
    try:
        return jobs.get_job(platform.db, actor, r.job_id, with_logs=logs, log_tail=100)
    except NotFound:
        return None


def start(platform: Platform, actor: Actor, req: RunRequest) -> RunInfo:
    """Queue a run of a stored blueprint (the caller's project's); its job acts as the caller's key."""
    actor.require("member", "run fine-tunes")
    detail = get_blueprint(platform, actor, req.blueprint)
    bp = ft_spec.load(detail.spec)
    backend = req.backend or bp.backend
    if backend not in ("local", "ray"):
        raise InvalidInput(f"backend {backend!r} is not local or ray", details={"field": "backend"})
    if backend != bp.backend:
        bp = bp.model_copy(update={"backend": backend})
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise InvalidInput(
            "backend: ray is not installed on this server; install podium's ray extra (pip install 'podium[ray]')"
            " or run with backend local",
            details={"field": "backend"},
        )
    if bp.deploy.route and not actor.is_admin:
        raise InvalidInput(
            f"deploy.route: routes are server-wide and only a server admin may change them; run this blueprint"
            f" with an admin key, or plan it without deploy.route (the {bp.deploy.alias!r} alias still moves)",
            details={"field": "deploy.route"},
        )
    if actor.principal is None:
        raise InvalidInput("a fine-tune runs as its caller: use an API key or a dashboard session")
    run_id = new_id("ftrun")
    with platform.db.session() as s:
        s.add(
            FinetuneRun(
                id=run_id,
                project_id=actor.project_id,
                blueprint_id=detail.id,
                backend=backend,
                status="queued",
                stages={},
                result={},
                created_by=actor.label,
                created_at=utcnow(),
            )
        )
        record_audit(s, actor, "finetune.run.start", "finetune_run", run_id, details={"blueprint": detail.id})
    params = {
        "run_id": run_id,
        "blueprint_id": detail.id,
        "blueprint": bp.model_dump(mode="json"),
        "key_id": actor.principal.key_id,
        "save_steps": req.save_steps,
    }
    job = jobs.submit(platform.db, actor, "finetune.run", params, internal=True)
    with platform.db.session() as s:
        s.execute(update(FinetuneRun).where(FinetuneRun.id == run_id).values(job_id=job.id))
    return get_run(platform, actor, run_id)


def _find(platform: Platform, actor: Actor, run_id: str) -> FinetuneRun:
    with platform.db.read_session() as s:
        r = s.get(FinetuneRun, run_id)
        if r is None or not actor.sees(r.project_id):
            raise NotFound(f"fine-tune run {run_id!r} not found")
        s.expunge(r)
        return r


def get_run(platform: Platform, actor: Actor, run_id: str) -> RunDetail:
    """One run with its stages, result, training metrics and log tail."""
    actor.require("viewer", "read fine-tune runs")
    r = _find(platform, actor, run_id)
    job = _job(platform, actor, r, logs=True)
    with platform.db.read_session() as s:
        rows = s.scalars(
            select(FinetuneMetric)
            .where(FinetuneMetric.run_id == run_id)
            .order_by(FinetuneMetric.step, FinetuneMetric.kind)
            .limit(MAX_POINTS)
        ).all()
        metrics = [Metric(step=m.step, kind=m.kind, values=m.values) for m in rows]
    return RunDetail(
        **_info(r, job).model_dump(),
        stages=r.stages or {},
        result=r.result or {},
        metrics=metrics,
        logs=(job.logs or []) if job else [],
    )


def list_runs(platform: Platform, actor: Actor, *, blueprint: str | None = None) -> list[RunInfo]:
    """The runs the actor sees, newest first."""
    actor.require("viewer", "read fine-tune runs")
    scope = actor.scope()
    with platform.db.read_session() as s:
        q = select(FinetuneRun).order_by(FinetuneRun.created_at.desc()).limit(MAX_LISTED)
        if scope is not None:
            q = q.where(FinetuneRun.project_id.in_([p for p in scope if p is not None]))
        if blueprint:
            q = q.where(FinetuneRun.blueprint_id == blueprint)
        rows = list(s.scalars(q))
        for r in rows:
            s.expunge(r)
    found = jobs.get_jobs(platform.db, actor, [r.job_id for r in rows if r.job_id is not None])
    return [_info(r, found.get(r.job_id) if r.job_id else None) for r in rows]


def cancel(platform: Platform, actor: Actor, run_id: str) -> RunInfo:
    """Stop a run: a queued one at once, a running one at its next look (its compute process is stopped;
    checkpoints stay, nothing is registered)."""
    actor.require("member", "cancel fine-tunes")
    r = _find(platform, actor, run_id)
    if r.status in FINAL:
        raise Conflict(f"fine-tune run {run_id} has already {r.status}; nothing to cancel")
    if r.job_id is not None:
        job = jobs.cancel(platform.db, actor, r.job_id)
        if job.status == "cancelled":
            finish(platform, run_id, "cancelled", "cancelled before it started")
    with platform.db.session() as s:
        record_audit(s, actor, "finetune.run.cancel", "finetune_run", run_id)
    return _info(_find(platform, actor, run_id), None)


def finish(
    platform: Platform, run_id: str, status: str, error: str | None, result: dict[str, Any] | None = None
) -> None:
    """Record how a run ended."""
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow()}
    if result is not None:
        values["result"] = result
    with platform.db.session() as s:
        s.execute(update(FinetuneRun).where(FinetuneRun.id == run_id).values(**values))


class Promoted(BaseModel):
    """What a promotion moved."""

    run: str
    model: str
    version: int
    route: str | None


def promote(platform: Platform, actor: Actor, run_id: str) -> Promoted:
    """Give a deployed run's tuned version all the traffic: its model's `stable` alias moves to it (audited,
    and `podium models rollback MODEL@stable` moves it back) and its route sends everything to `stable`."""
    from podium.finetune.pipeline import STABLE, set_route
    from podium.models import service as models_service

    actor.require("member", "promote fine-tuned models")
    r = _find(platform, actor, run_id)
    deployed = ((r.stages or {}).get("deploy") or {}).get("outputs")
    if r.status != "succeeded" or not deployed:
        raise Conflict(
            f"fine-tune run {run_id} has not deployed anything (status {r.status}, stage {r.stage or 'none'});"
            " only a run that passed its gate and deployed can be promoted"
        )
    model, version, route = deployed["model"], int(deployed["version"]), deployed.get("route")
    if route and not actor.is_admin:
        raise InvalidInput(
            f"run {run_id} deployed through route {route!r}; only a server admin may change routes",
            details={"field": "route"},
        )
    models_service.set_alias(platform, actor, model, STABLE, version)
    if route:
        set_route(platform, actor, route, model, deployed["alias"], 0)
    with platform.db.session() as s:
        record_audit(
            s, actor, "finetune.run.promote", "finetune_run", run_id, details={"model": model, "version": version}
        )
    return Promoted(run=run_id, model=model, version=version, route=route)
