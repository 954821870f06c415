"""`/api/drift`: run a drift report (answered when done, computed on a worker thread) or queue one as a job; list
reports, read one, read a project's latest, delete one. Each handler is one service call."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from podium.core.errors import NotFound
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.drift import service
from podium.drift.report import DriftReport, DriftReportInfo, DriftSpec
from podium.jobs.service import JobInfo

router = APIRouter(prefix="/api/drift", tags=["drift"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
ProjectQuery = Annotated[str | None, Query(max_length=200, description="Project name or id.")]


@router.post("/reports", status_code=status.HTTP_201_CREATED)
def run_report(spec: DriftSpec, actor: ActorDep, platform: PlatformDep) -> DriftReport:
    """Compare the current window of a project's traces with a reference window or dataset version, store and
    answer the report (embedding and training run on a worker thread; large windows: `POST /api/drift/jobs`)."""
    return service.run_report(platform, actor, spec)


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
def start_report(spec: DriftSpec, actor: ActorDep, platform: PlatformDep) -> JobInfo:
    """Check the question and queue the report as a job; follow it at `/api/jobs/{id}`, whose result names the
    report (`report_id`)."""
    return service.start_report(platform, actor, spec)


@router.get("/reports")
def list_reports(
    actor: ActorDep,
    platform: PlatformDep,
    project: ProjectQuery = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LISTED)] = 100,
) -> list[DriftReportInfo]:
    """The reports you see, newest first."""
    return service.list_reports(platform, actor, project=project, limit=limit)


@router.get("/reports/latest")
def latest_report(actor: ActorDep, platform: PlatformDep, project: ProjectQuery = None) -> DriftReport:
    """The newest report of a project (your key's by default); 404 when it has none."""
    report = service.latest(platform, actor, project=project)
    if report is None:
        raise NotFound("this project has no drift report yet")
    return report


@router.get("/reports/{report_id}")
def get_report(report_id: str, actor: ActorDep, platform: PlatformDep) -> DriftReport:
    """One report: each field's tests, the words that changed most and the explaining examples."""
    return service.get_report(platform, actor, report_id)


@router.delete("/reports/{report_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_report(report_id: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Delete a report (reports keep example texts of traces, which purging the traces does not remove)."""
    service.delete_report(platform, actor, report_id)
