"""`/api/finetunes`: fine-tuning blueprints (plan, list, show, diff) and runs (start, list, show, cancel,
promote) over HTTP; each handler is one service call."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.finetune import runs, service
from podium.finetune.runs import Promoted, RunDetail, RunInfo, RunRequest
from podium.finetune.service import BlueprintDetail, BlueprintInfo, Diff, Planned, PlanRequest

router = APIRouter(prefix="/api/finetunes", tags=["finetune"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
BlueprintId = Annotated[str, Query(min_length=1, max_length=40)]


@router.post("/blueprints/plan", status_code=status.HTTP_201_CREATED)
def plan(body: PlanRequest, actor: ActorDep, platform: PlatformDep, response: Response) -> Planned:
    """Build a blueprint from a few choices (or a whole or partial one), check it against the base model and
    the data, estimate it and store it (200, not 201, when the same blueprint is stored already)."""
    planned = service.plan(platform, actor, body)
    if not planned.created:
        response.status_code = status.HTTP_200_OK
    return planned


@router.get("/blueprints")
def list_blueprints(actor: ActorDep, platform: PlatformDep) -> list[BlueprintInfo]:
    """The blueprints you see, newest first."""
    return service.list_blueprints(platform, actor)


@router.get("/blueprints/diff")
def diff(actor: ActorDep, platform: PlatformDep, a: BlueprintId, b: BlueprintId) -> Diff:
    """The settings that differ between two blueprints, and a unified diff of their YAML."""
    return service.diff(platform, actor, a, b)


@router.get("/blueprints/{blueprint_id}")
def get_blueprint(blueprint_id: str, actor: ActorDep, platform: PlatformDep) -> BlueprintDetail:
    """One blueprint: its settings, YAML, content hash and what planning measured."""
    return service.get_blueprint(platform, actor, blueprint_id)


@router.post("/runs", status_code=status.HTTP_201_CREATED)
def start_run(body: RunRequest, actor: ActorDep, platform: PlatformDep) -> RunInfo:
    """Run a stored blueprint through the pipeline, as a job acting as you."""
    return runs.start(platform, actor, body)


@router.get("/runs")
def list_runs(
    actor: ActorDep, platform: PlatformDep, blueprint: Annotated[str | None, Query(max_length=40)] = None
) -> list[RunInfo]:
    """The runs you see, newest first (of one blueprint with `blueprint`)."""
    return runs.list_runs(platform, actor, blueprint=blueprint)


@router.get("/runs/{run_id}")
def get_run(run_id: str, actor: ActorDep, platform: PlatformDep) -> RunDetail:
    """One run: its stages, result, training metrics and log tail."""
    return runs.get_run(platform, actor, run_id)


@router.post("/runs/{run_id}/cancel")
def cancel_run(run_id: str, actor: ActorDep, platform: PlatformDep) -> RunInfo:
    """Stop a queued or running run (checkpoints stay; nothing is registered)."""
    return runs.cancel(platform, actor, run_id)


@router.post("/runs/{run_id}/promote")
def promote_run(run_id: str, actor: ActorDep, platform: PlatformDep) -> Promoted:
    """Give a deployed run's tuned version all of its route's traffic (its model's `stable` alias moves)."""
    return runs.promote(platform, actor, run_id)
