"""`/api/prompts`: the prompt registry over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response, status
from pydantic import BaseModel, ConfigDict

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.prompts import service
from podium.prompts.service import Created, Diff, PromptDetail, PromptInfo, Rendered, VersionInfo

router = APIRouter(prefix="/api/prompts", tags=["prompts"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


class LabelBody(BaseModel):
    """Body of `PUT /api/prompts/{name}/labels/{label}`: a version number, `latest`, or a version id."""

    model_config = ConfigDict(extra="forbid")

    version: str | int


class RenderBody(BaseModel):
    """Body of `POST /api/prompts/{name}/render`."""

    model_config = ConfigDict(extra="forbid")

    version: str | int | None = None
    label: str | None = None
    variables: dict[str, Any] = {}


@router.get("")
def list_prompts(actor: ActorDep, platform: PlatformDep) -> list[PromptInfo]:
    """Every prompt with its latest version and labels."""
    return service.list_prompts(platform.db)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_version(
    response: Response,
    actor: ActorDep,
    platform: PlatformDep,
    body: Annotated[Any, Body()] = None,
    dry_run: bool = False,
) -> Created:
    """Push a version (template or messages, variables, model parameters, tools, response schema).
    Content equal to the latest version creates nothing: 200 with `created: false`. `?dry_run=true`
    validates and answers what would happen, writing nothing."""
    result = service.create_version(platform.db, actor, body, dry_run=dry_run)
    if not result.created or dry_run:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/versions/{version_id}")
def get_version_by_id(version_id: str, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """One version by id (`prv_…`), as traces link to it."""
    return service.get_version_by_id(platform.db, version_id)


@router.get("/{name}")
def get_prompt(name: str, actor: ActorDep, platform: PlatformDep) -> PromptDetail:
    """A prompt with its versions and label history."""
    return service.get_prompt(platform.db, name)


@router.get("/{name}/versions/{ref}")
def get_version(name: str, ref: str, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """One version, by number, label or `latest`."""
    return service.get_version(platform.db, name, ref)


@router.get("/{name}/diff")
def diff(name: str, a: str, b: str, actor: ActorDep, platform: PlatformDep) -> Diff:
    """Compare two versions (numbers or labels)."""
    return service.diff(platform.db, name, a, b)


@router.put("/{name}/labels/{label}")
def set_label(name: str, label: str, body: LabelBody, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """Point a label at a version of this prompt (atomic; the move is recorded)."""
    return service.set_label(platform.db, actor, name, label, body.version)


@router.delete("/{name}/labels/{label}", status_code=status.HTTP_204_NO_CONTENT)
def remove_label(name: str, label: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Delete a label."""
    service.remove_label(platform.db, actor, name, label)


@router.post("/{name}/render")
def render(name: str, body: RenderBody, actor: ActorDep, platform: PlatformDep) -> Rendered:
    """Render a version (by `version` or `label`; latest by default) with variables."""
    ref = body.version if body.version is not None else body.label
    return service.render(platform.db, name, ref, body.variables)
