"""Dashboard shell: templates, signed session cookies, CSRF tokens, navigation.

A session cookie carries the signed hash of the API key used to sign in (never the key), so every
page re-checks that the key is still valid through the same cached lookup the API uses.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from podium.core.domains import nav_entries
from podium.core.errors import Forbidden, InvalidInput, PodiumError, Unauthorized
from podium.core.http import bearer_token, current_actor, get_authenticator, request_id
from podium.core.identity import Actor, Principal
from podium.core.version import __version__

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "podium_session"
SESSION_MAX_AGE = 12 * 3600


env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["dt"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S UTC") if v else "—"


def _serializer(request: Request) -> URLSafeTimedSerializer:
    secret = request.app.state.secret_key
    return URLSafeTimedSerializer(secret, salt="podium-session")


@dataclass(frozen=True)
class PageSession:
    """A signed-in dashboard visitor."""

    principal: Principal
    csrf: str
    actor: Actor
    session_id: str


def read_session(request: Request) -> PageSession | None:
    """The visitor's session, or None if absent, tampered with, expired, or its key no longer valid."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(request).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    keys = get_authenticator(request)
    try:
        principal = keys.authenticate_hash(str(data["h"]))
        if keys.session_ended(str(data["s"])):  # signed out, on this process or another
            return None
    except (Unauthorized, KeyError):
        return None
    if principal.expires_at is not None:
        from podium.core.db import utcnow

        if principal.expires_at <= utcnow():
            return None
    return PageSession(principal, str(data["c"]), Actor(principal, request_id(request)), str(data["s"]))


def start_session(request: Request, response: Response, key_hash: str) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, Secure when served over HTTPS."""
    data = {"h": key_hash, "c": secrets.token_urlsafe(24), "s": secrets.token_urlsafe(24)}
    token = _serializer(request).dumps(data)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def end_session(request: Request, session: PageSession, response: Response) -> None:
    """Sign the session out on the server (a copy of its cookie no longer works) and clear the cookie."""
    until = datetime.now(UTC) + timedelta(seconds=SESSION_MAX_AGE)
    get_authenticator(request).end_session(session.session_id, until)
    response.delete_cookie(SESSION_COOKIE, path="/")


LOGIN_CSRF_COOKIE = "podium_login_csrf"


def login_token(request: Request) -> str:
    """The sign-in form's CSRF token (double submit: the same random value in a cookie and in the form,
    so another site cannot sign a visitor in with its own key): the visitor's, or a new one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def set_login_token(request: Request, response: Response, token: str) -> None:
    """Give the visitor the sign-in form's CSRF cookie."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


def login_csrf_ok(request: Request, token: str) -> bool:
    """Whether the sign-in form's token matches its cookie."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    return bool(token) and hmac.compare_digest(token, cookie)


class LoginRequired(Exception):
    """Raised by `page_session` to redirect to the sign-in page."""

    def __init__(self, next_path: str):
        self.next_path = next_path


def page_session(request: Request) -> PageSession:
    """FastAPI dependency for pages: the session, or a redirect to sign-in."""
    session = read_session(request)
    if session is None:
        raise LoginRequired(request.url.path)
    return session


CSRF_HEADER = "x-csrf-token"


def key_or_session_actor(request: Request) -> Actor:
    """FastAPI dependency for `/api` endpoints the dashboard also calls: the API key if the request carries
    one, else the dashboard session with its CSRF token in the `X-CSRF-Token` header (401 without either,
    403 with a missing or stale token)."""
    if bearer_token(request.headers):
        return current_actor(request)
    session = read_session(request)
    if session is None:
        raise Unauthorized(
            "send an API key ('Authorization: Bearer pk-…') or sign in to the dashboard; its session has ended"
        )
    check_csrf(session, request.headers.get(CSRF_HEADER))
    return session.actor


def check_csrf(session: PageSession, token: str | None) -> None:
    """Reject a form post whose CSRF token does not match the session's."""
    if not token or not hmac.compare_digest(token, session.csrf):
        raise Forbidden("the form's CSRF token is missing or stale; reload the page and try again")


def render(
    request: Request, template: str, session: PageSession | None, *, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    """Render a dashboard template with the shell's context (navigation, user, CSRF token)."""
    nav = [i for i in nav_entries() if session is None or session.principal.has_role(i.role)]
    html = env.get_template(template).render(
        request=request,
        session=session,
        principal=session.principal if session else None,
        csrf=session.csrf if session else "",
        nav=nav,
        path=request.url.path,
        version=__version__,
        **ctx,
    )
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, session: PageSession | None, exc: PodiumError) -> HTMLResponse:
    """An error shown inside the shell, with the API's status."""
    return render(request, "shell/error.html", session, status_code=exc.status, error=exc)


def redirect(path: str) -> RedirectResponse:
    """A 303 redirect (after a form post)."""
    return RedirectResponse(path, status_code=303)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter between `low` and `high`, or `InvalidInput` naming it
    (the pages' paging and limits)."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, not {text!r}", details={"field": name}) from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", details={"field": name})
    return value
