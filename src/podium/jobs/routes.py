"""`/api/jobs` routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict

from podium.auth.service import Page
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.jobs import service
from podium.jobs.service import JobInfo

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


class JobSubmit(BaseModel):
    """Body of `POST /api/jobs`."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    params: dict[str, Any] = {}
    project: str | None = None


class JobKindInfo(BaseModel):
    """A job kind the server can run."""

    name: str
    role: str
    description: str


@router.get("/kinds")
def list_kinds(actor: ActorDep) -> list[JobKindInfo]:
    """Job kinds this server runs."""
    return [JobKindInfo(name=k.name, role=k.role, description=k.description) for k in service.kinds().values()]


@router.get("")
def list_jobs(
    actor: ActorDep,
    platform: PlatformDep,
    status: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[JobInfo]:
    """Jobs, newest first."""
    return service.list_jobs(platform.db, actor, status=status, kind=kind, cursor=cursor, limit=limit)


@router.post("", status_code=status.HTTP_201_CREATED)
def submit_job(body: JobSubmit, actor: ActorDep, platform: PlatformDep) -> JobInfo:
    """Queue a job of a known kind."""
    return service.submit(platform.db, actor, body.kind, body.params, project=body.project)


@router.get("/{job_id}")
def get_job(job_id: str, actor: ActorDep, platform: PlatformDep, log_tail: int = 200) -> JobInfo:
    """One job with its recent log lines."""
    return service.get_job(platform.db, actor, job_id, log_tail=max(0, min(log_tail, 10_000)))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, actor: ActorDep, platform: PlatformDep) -> JobInfo:
    """Cancel a queued or running job."""
    return service.cancel(platform.db, actor, job_id)
