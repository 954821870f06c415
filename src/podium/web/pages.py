"""Shell pages: sign-in, sign-out and the overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.auth import service as auth
from podium.core.errors import Unauthorized
from podium.core.http import get_platform
from podium.jobs import service as jobs
from podium.web.shell import (
    PageSession,
    check_csrf,
    end_session,
    page_session,
    read_session,
    redirect,
    render,
    start_session,
)

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in form."""
    if read_session(request) is not None:
        return redirect(_safe_next(next))
    return render(request, "shell/login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, api_key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    """Check the key and start a session."""
    platform = get_platform(request)
    key = api_key.strip()
    try:
        auth.key_cache(platform.db).authenticate(key)
    except Unauthorized as exc:
        return render(request, "shell/login.html", None, status_code=401, next=_safe_next(next), error=exc.message)
    response = redirect(_safe_next(next))
    start_session(request, response, auth.hash_key(key))
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session."""
    check_csrf(session, csrf)
    response = redirect("/login")
    end_session(response)
    return response


@router.get("/")
def overview(request: Request, session: SessionDep) -> Response:
    """The overview: who you are, your project, recent jobs."""
    platform = get_platform(request)
    projects = auth.list_projects(platform.db, session.actor)
    recent_jobs = jobs.list_jobs(platform.db, session.actor, limit=5).items
    return render(request, "shell/overview.html", session, projects=projects, jobs=recent_jobs)
