"""Dashboard pages for projects, API keys and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.auth import service
from podium.core.errors import PodiumError, Unauthorized
from podium.core.http import get_platform
from podium.core.identity import ROLES
from podium.core.ratelimit import SlidingWindow
from podium.web.shell import (
    PageSession,
    check_csrf,
    end_session,
    error_page,
    login_csrf_ok,
    login_token,
    page_session,
    read_session,
    redirect,
    render,
    set_login_token,
    start_session,
)

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]


@router.get("/projects")
def projects_page(request: Request, session: SessionDep) -> Response:
    """Projects list, with a create form for admins."""
    projects = service.list_projects(get_platform(request).db, session.actor)
    return render(request, "auth/projects.html", session, projects=projects, error=None)


@router.post("/projects")
def projects_create(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Create a project from the form."""
    platform = get_platform(request)
    try:
        check_csrf(session, csrf)
        service.create_project(platform.db, session.actor, name, description)
    except PodiumError as exc:
        projects = service.list_projects(platform.db, session.actor)
        return render(
            request,
            "auth/projects.html",
            session,
            status_code=exc.status,
            projects=projects,
            error=exc.message,
        )
    return redirect("/projects")


def _keys_context(request: Request, session: PageSession) -> dict[str, Any]:
    platform = get_platform(request)
    return {
        "keys": service.list_keys(platform.db, session.actor, include_revoked=True),
        "projects": service.list_projects(platform.db, session.actor),
        "roles": ROLES,
    }


@router.get("/keys")
def keys_page(request: Request, session: SessionDep) -> Response:
    """Keys list with create and revoke forms."""
    return render(request, "auth/keys.html", session, new_key=None, error=None, **_keys_context(request, session))


@router.post("/keys")
def keys_create(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "member",
    project: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Create a key and show its secret once."""
    platform = get_platform(request)
    try:
        check_csrf(session, csrf)
        new = service.create_key(
            platform.db, session.actor, name=name, role=role, project=project or None, expires=expires or None
        )
    except PodiumError as exc:
        ctx = _keys_context(request, session)
        return render(
            request, "auth/keys.html", session, status_code=exc.status, new_key=None, error=exc.message, **ctx
        )
    return render(request, "auth/keys.html", session, new_key=new, error=None, **_keys_context(request, session))


@router.post("/keys/{ref}/revoke")
def keys_revoke(request: Request, ref: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Revoke a key from the list."""
    platform = get_platform(request)
    try:
        check_csrf(session, csrf)
        service.revoke_key(platform.db, session.actor, ref)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect("/keys")


@router.get("/audit")
def audit_page(request: Request, session: SessionDep, action: str | None = None, cursor: str | None = None) -> Response:
    """The audit log, newest first, filterable by action."""
    try:
        page = service.list_audit(get_platform(request).db, session.actor, action=action or None, cursor=cursor)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "auth/audit.html", session, page=page, action=action or "")


# --- signing in and out ----------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


def _login_page(request: Request, next: str, error: str | None = None, status_code: int = 200) -> Response:
    token = login_token(request)
    page = render(
        request, "shell/login.html", None, status_code=status_code, next=_safe_next(next), error=error, login_csrf=token
    )
    set_login_token(request, page, token)
    return page


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in form."""
    if read_session(request) is not None:
        return redirect(_safe_next(next))
    return _login_page(request, next)


class SignInFailures(SlidingWindow):
    """Failed sign-ins per client address in this server process: 10 in 5 minutes, then 429 until the
    oldest of them is 5 minutes old."""

    def __init__(self) -> None:
        super().__init__(limit=10, seconds=300.0)


@router.post("/login")
def login(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Check the key and start a session; an address that keeps failing is refused for a while (429)."""
    if not login_csrf_ok(request, csrf):
        return _login_page(request, next, "the sign-in form had expired; sign in again", 400)
    platform = get_platform(request)
    key = api_key.strip()
    address = request.client.host if request.client else "unknown"
    failures: SignInFailures = request.app.state.runtime.get(SignInFailures)
    wait = failures.wait(address)
    if wait > 0:
        message = f"too many failed sign-ins from your address; try again in {wait} s"
        refused = _login_page(request, next, message, 429)
        refused.headers["Retry-After"] = str(wait)
        return refused
    try:
        service.key_cache(platform.db).authenticate(key)
    except Unauthorized as exc:
        failures.hit(address)
        return _login_page(request, next, exc.message, 401)
    response = redirect(_safe_next(next))
    start_session(request, response, service.hash_key(key))
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session."""
    check_csrf(session, csrf)
    response = redirect("/login")
    end_session(request, session, response)
    return response
