"""Dashboard pages for the model registry: models, versions, aliases and lineage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.core.errors import PodiumError
from podium.core.http import get_platform
from podium.models import service
from podium.models.supervisor import worker_state
from podium.web.shell import PageSession, check_csrf, error_page, page_session, redirect, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]


def _params(n: int | None) -> str:
    if not n:
        return "—"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


@router.get("/models")
def models_page(request: Request, session: SessionDep) -> Response:
    """Every registered model with its latest version and aliases."""
    platform = get_platform(request)
    models = service.list_models(platform, session.actor)
    return render(request, "models/list.html", session, models=models)


@router.get("/models/{name}")
def model_page(request: Request, name: str, session: SessionDep) -> Response:
    """A model: versions (format, size, hashes, lineage), aliases and their history, serving state."""
    platform = get_platform(request)
    try:
        detail = service.get_model(platform, session.actor, name)
    except PodiumError as exc:
        return error_page(request, session, exc)
    states = {v.id: worker_state(platform.settings, v.id)[0] for v in detail.versions}
    return render(request, "models/detail.html", session, model=detail, states=states, fmt_params=_params)


@router.post("/models/{name}/aliases")
def model_alias(
    request: Request,
    name: str,
    session: SessionDep,
    alias: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Move an alias from the model page."""
    try:
        check_csrf(session, csrf)
        service.set_alias(get_platform(request), session.actor, name, alias.strip(), version.strip())
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/models/{name}")
