"""`POST /api/models/batch`: queue batch inference (the models' interface, served by the batch domain)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from podium.batch import service
from podium.batch.service import BatchSpec
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.jobs.service import JobInfo

router = APIRouter(prefix="/api/models", tags=["models"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


@router.post("/batch", status_code=status.HTTP_202_ACCEPTED)
def start_batch(spec: BatchSpec, actor: ActorDep, platform: PlatformDep) -> JobInfo:
    """Check a batch (model, dataset version, columns, the right to write the output) and queue it as a job;
    follow it at `/api/jobs/{id}`, whose result names the dataset version written."""
    return service.start_batch(platform, actor, spec)
