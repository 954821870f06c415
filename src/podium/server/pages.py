"""The dashboard's overview page: who you are, your project, the monitors' headline figures, the newest drift
report, the alert rules firing, recent jobs (the server composes it from the domains' services: it sits above
monitors, drift and alerts, which do not import each other's pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from podium.alerts import service as alerts
from podium.auth import service as auth
from podium.core.http import get_platform
from podium.drift import service as drift
from podium.jobs import service as jobs
from podium.monitors import service as monitors
from podium.web.shell import PageSession, page_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]


@router.get("/")
def overview(request: Request, session: SessionDep) -> Response:
    """The overview: who you are, your project, the monitors' headline figures, drift and alerts, recent jobs."""
    platform = get_platform(request)
    projects = auth.list_projects(platform.db, session.actor)
    recent_jobs = jobs.list_jobs(platform.db, session.actor, limit=5).items
    figures = monitors.summary(platform, session.actor).figures  # the last 24 hours; charts at /overview
    reports = drift.list_reports(platform, session.actor, limit=1)
    rules = alerts.list_rules(platform, session.actor)
    firing = [r for r in rules if r.state in ("firing", "pending")]
    return render(
        request,
        "shell/overview.html",
        session,
        projects=projects,
        jobs=recent_jobs,
        figures=figures,
        drift_report=reports[0] if reports else None,
        rules=len(rules),
        firing=firing,
    )
