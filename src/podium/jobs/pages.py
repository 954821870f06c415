"""Dashboard pages for background jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.core.errors import PodiumError
from podium.core.http import get_platform
from podium.jobs import service
from podium.web.shell import PageSession, check_csrf, error_page, page_session, redirect, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]


@router.get("/jobs")
def jobs_page(request: Request, session: SessionDep, status: str | None = None, cursor: str | None = None) -> Response:
    """Jobs list."""
    try:
        page = service.list_jobs(get_platform(request).db, session.actor, status=status or None, cursor=cursor)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "jobs/jobs.html", session, page=page, status_filter=status or "")


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, session: SessionDep) -> Response:
    """One job: status, progress, result and log."""
    try:
        job = service.get_job(get_platform(request).db, session.actor, job_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "jobs/job.html", session, job=job)


@router.post("/jobs/{job_id}/cancel")
def job_cancel(request: Request, job_id: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Cancel a job from its page."""
    try:
        check_csrf(session, csrf)
        service.cancel(get_platform(request).db, session.actor, job_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/jobs/{job_id}")
