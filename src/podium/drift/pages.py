"""Dashboard pages for drift: the reports (verdict, score, windows, reference) with a form that queues a new one
as a job, and one report (per field: each test's score against its threshold, the descriptor distributions as
bar charts of reference and current shares, the words that rose and fell, and the examples the domain classifier
finds most current-like and most reference-like).

Every figure comes from `drift.service`, called as the signed-in user; this module only shapes it for the
templates, which escape everything (texts from traces are never markup).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.core.durations import parse_time
from podium.core.errors import PodiumError
from podium.core.http import get_platform
from podium.drift import service
from podium.drift.report import DriftSpec, TestResult
from podium.web.charts import BarChart, grouped_bars
from podium.web.shell import PageSession, check_csrf, error_page, page_session, redirect, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]
REFERENCE, CURRENT = "#868e96", "#e8590c"
TEST_TITLES = {
    "embedding": "Embedding (domain classifier)",
    "length_chars": "Length in characters",
    "length_words": "Length in words",
    "language": "Language",
    "toxicity": "Toxicity",
    "sentiment": "Sentiment",
}


def bar_chart(test: TestResult) -> BarChart | None:
    """The chart of a descriptor test's two distributions (None for tests without bins)."""
    if not test.bins:
        return None
    sides = [("reference", test.reference_shares, REFERENCE), ("current", test.current_shares, CURRENT)]
    return grouped_bars(test.name, TEST_TITLES.get(test.name, test.name), test.bins, sides)


@router.get("/drift")
def drift_page(request: Request, session: SessionDep) -> Response:
    """The drift reports the user sees, newest first, (for members) a form to run one, and with `?job=` the state
    of a report queued from it (the page reloads until it ends, then links the report)."""
    platform = get_platform(request)
    job_id = (request.query_params.get("job") or "").strip()
    try:
        reports = service.list_reports(platform, session.actor)
        job = service.get_report_job(platform, session.actor, job_id) if job_id else None
    except PodiumError as exc:
        return error_page(request, session, exc)
    running = job is not None and job.status in ("queued", "running")
    return render(request, "drift/list.html", session, reports=reports, job=job, refresh=2 if running else None)


@router.post("/drift")
def run_page(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    reference_from: Annotated[str, Form()] = "",
    reference_to: Annotated[str, Form()] = "",
    current_from: Annotated[str, Form()] = "",
    current_to: Annotated[str, Form()] = "",
) -> Response:
    """Queue a report of the user's project as a job and follow it on the list."""
    platform = get_platform(request)
    try:
        check_csrf(session, csrf)
        spec = DriftSpec(
            reference_from=parse_time(reference_from or "8d", "reference_from"),
            reference_to=parse_time(reference_to or "1d", "reference_to"),
            current_from=parse_time(current_from or "1d", "current_from"),
            current_to=parse_time(current_to or "0s", "current_to"),
        )
        job = service.start_report(platform, session.actor, spec)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/drift?job={job.id}")


@router.get("/drift/reports/{report_id}")
def report_page(request: Request, report_id: str, session: SessionDep) -> Response:
    """One report: per field, its tests, the distributions compared, the changed words and the examples."""
    platform = get_platform(request)
    try:
        report = service.get_report(platform, session.actor, report_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    charts = {f.field: [c for c in (bar_chart(t) for t in f.tests) if c is not None] for f in report.fields}
    return render(
        request,
        "drift/report.html",
        session,
        report=report,
        charts=charts,
        titles=TEST_TITLES,
        colors={"reference": REFERENCE, "current": CURRENT},
    )
