"""`/api/models`: the model registry over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.jobs import service as jobs
from podium.jobs.service import JobInfo
from podium.models import service
from podium.models.service import AliasRollback, ModelDetail, ModelInfo, VersionInfo

router = APIRouter(prefix="/api/models", tags=["models"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class RegisterLocal(_Strict):
    """Body of `POST /api/models`: a new version from a path on the server, `pip:PACKAGE` or a hub id."""

    name: str
    source: str
    task: str | None = None
    description: str = ""
    sha256: str | None = Field(None, description="Expected sha256; registration fails whole if it differs.")
    base: str | None = Field(None, description="For LoRA adapters: the base model reference.")
    lineage: dict[str, Any] = {}
    config: dict[str, Any] = {}
    message: str = ""


class RegisterRemote(_Strict):
    """Body of `POST /api/models/remote`: a model behind an OpenAI-compatible or Anthropic endpoint."""

    name: str
    provider: str
    base_url: str | None = None
    upstream_model: str
    api_key: str | None = None
    task: str = "chat"
    context_length: int | None = None
    description: str = ""
    message: str = ""
    lineage: dict[str, Any] = {}


class AliasBody(_Strict):
    """Body of `PUT /api/models/{name}/aliases/{alias}`."""

    version: str | int


@router.get("")
def list_models(
    actor: ActorDep, platform: PlatformDep, include_archived: bool = False, task: str | None = None
) -> list[ModelInfo]:
    """Registered models."""
    return service.list_models(platform, actor, include_archived=include_archived, task=task)


@router.post("", status_code=status.HTTP_201_CREATED)
def register_local(body: RegisterLocal, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """Register a version from files the server can read (synchronous; use `/pull` for downloads)."""
    return service.register_local(
        platform,
        actor,
        body.name,
        body.source,
        task=body.task,
        description=body.description,
        sha256=body.sha256,
        base=body.base,
        lineage=body.lineage,
        config=body.config,
        message=body.message,
    )


@router.post("/pull", status_code=status.HTTP_201_CREATED)
def pull(body: RegisterLocal, actor: ActorDep, platform: PlatformDep) -> JobInfo:
    """Register a version as a background job (downloads from the hub can take minutes)."""
    actor.require("member", "register models")
    return jobs.submit(platform.db, actor, "models.pull", body.model_dump())


@router.post("/remote", status_code=status.HTTP_201_CREATED)
def register_remote(body: RegisterRemote, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """Register a remote model; its API key is stored encrypted and never returned."""
    return service.register_remote(
        platform,
        actor,
        body.name,
        provider=body.provider,
        base_url=body.base_url,
        upstream_model=body.upstream_model,
        api_key=body.api_key,
        task=body.task,
        context_length=body.context_length,
        description=body.description,
        message=body.message,
        lineage=body.lineage,
    )


@router.get("/{name}")
def get_model(name: str, actor: ActorDep, platform: PlatformDep) -> ModelDetail:
    """A model with its versions and alias history."""
    return service.get_model(platform, actor, name)


@router.get("/{name}/versions/{version}")
def get_version(name: str, version: str, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """One version, by number or alias."""
    return service.get_version(platform, actor, f"{name}@{version}")


@router.put("/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasBody, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """Point an alias at a version (atomic; the move is recorded)."""
    return service.set_alias(platform, actor, name, alias, body.version)


@router.post("/{name}/aliases/{alias}/rollback")
def rollback_alias(name: str, alias: str, actor: ActorDep, platform: PlatformDep) -> AliasRollback:
    """Move an alias back to the version it pointed at before its latest move (atomic, recorded, audited)."""
    return service.rollback_alias(platform, actor, name, alias)


@router.delete("/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
def remove_alias(name: str, alias: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Delete an alias."""
    service.remove_alias(platform, actor, name, alias)


@router.delete("/{name}")
def archive(name: str, actor: ActorDep, platform: PlatformDep) -> ModelInfo:
    """Archive a model: hidden from lists and routing, versions kept for lineage."""
    return service.archive_model(platform, actor, name)
