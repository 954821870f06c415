"""`/api` routes for projects, users, keys, the audit log and `whoami`: thin wrappers over the service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field

from podium.auth import service
from podium.auth.service import AuditInfo, KeyInfo, MemberInfo, NewKey, Page, ProjectInfo, UserInfo
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform

router = APIRouter(prefix="/api", tags=["identity"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Strict):
    """Body of `POST /api/projects`."""

    name: str = Field(min_length=1, max_length=100)
    description: str = ""


class ProjectUpdate(_Strict):
    """Body of `PATCH /api/projects/{ref}`."""

    description: str


class UserCreate(_Strict):
    """Body of `POST /api/users`: `role` makes the user a member of `project` (the caller's by default);
    `admin` makes a server admin."""

    name: str = Field(min_length=1, max_length=100)
    role: str | None = None
    project: str | None = None
    admin: bool = False
    email: str | None = None


class UserUpdate(_Strict):
    """Body of `PATCH /api/users/{ref}`: `role` in `project` (the caller's by default), `disabled`, `admin`."""

    role: str | None = None
    project: str | None = None
    disabled: bool | None = None
    admin: bool | None = None


class MemberSet(_Strict):
    """Body of `PUT /api/projects/{ref}/members/{user}`."""

    role: str


class KeyCreate(_Strict):
    """Body of `POST /api/keys`. `expires` is a duration (`30d`, `12h`) or an ISO-8601 time."""

    name: str = Field(min_length=1, max_length=100)
    role: str | None = None
    project: str | None = None
    user: str | None = None
    expires: str | None = None


class WhoAmI(BaseModel):
    """The identity behind the key sent."""

    user: str
    user_id: str
    role: str
    admin: bool
    project: str
    project_id: str
    key_id: str
    key_prefix: str
    expires_at: datetime | None


@router.get("/whoami")
def whoami(actor: ActorDep) -> WhoAmI:
    """Who the API key belongs to."""
    p = actor.principal
    assert p is not None
    return WhoAmI(
        user=p.user_name,
        user_id=p.user_id,
        role=p.role,
        admin=p.admin,
        project=p.project_name,
        project_id=p.project_id,
        key_id=p.key_id,
        key_prefix=p.key_prefix,
        expires_at=p.expires_at,
    )


@router.get("/projects")
def list_projects(actor: ActorDep, platform: PlatformDep) -> list[ProjectInfo]:
    """Projects visible to the caller."""
    return service.list_projects(platform.db, actor)


@router.post("/projects", status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, actor: ActorDep, platform: PlatformDep) -> ProjectInfo:
    """Create a project (server admin)."""
    return service.create_project(platform.db, actor, body.name, body.description)


@router.get("/projects/{ref}")
def get_project(ref: str, actor: ActorDep, platform: PlatformDep) -> ProjectInfo:
    """One project by name or id."""
    return service.get_project(platform.db, actor, ref)


@router.patch("/projects/{ref}")
def update_project(ref: str, body: ProjectUpdate, actor: ActorDep, platform: PlatformDep) -> ProjectInfo:
    """Change a project's description (its admins)."""
    return service.update_project(platform.db, actor, ref, body.description)


@router.get("/projects/{ref}/members")
def list_members(ref: str, actor: ActorDep, platform: PlatformDep) -> list[MemberInfo]:
    """A project's members and their roles."""
    return service.list_members(platform.db, actor, ref)


@router.put("/projects/{ref}/members/{user}")
def set_member(ref: str, user: str, body: MemberSet, actor: ActorDep, platform: PlatformDep) -> MemberInfo:
    """Add a user to a project (server admin) or change their role there (its admins)."""
    return service.set_member(platform.db, actor, ref, user, body.role)


@router.delete("/projects/{ref}/members/{user}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(ref: str, user: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Take a user out of a project; their keys there stop working (its admins)."""
    service.remove_member(platform.db, actor, ref, user)


@router.get("/users")
def list_users(actor: ActorDep, platform: PlatformDep) -> list[UserInfo]:
    """Every user (server admin), or the members of the caller's project (its admins)."""
    return service.list_users(platform.db, actor)


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, actor: ActorDep, platform: PlatformDep) -> UserInfo:
    """Create a user (server admin)."""
    return service.create_user(
        platform.db, actor, body.name, body.role, body.email, admin=body.admin, project=body.project
    )


@router.patch("/users/{ref}")
def update_user(ref: str, body: UserUpdate, actor: ActorDep, platform: PlatformDep) -> UserInfo:
    """Change a user's role in a project (its admins), disable them or make them a server admin (server admin)."""
    return service.update_user(
        platform.db, actor, ref, role=body.role, disabled=body.disabled, admin=body.admin, project=body.project
    )


@router.get("/keys")
def list_keys(
    actor: ActorDep,
    platform: PlatformDep,
    project: str | None = None,
    include_revoked: bool = False,
) -> list[KeyInfo]:
    """API keys (admins: all; others: their own). Secrets are never returned."""
    return service.list_keys(platform.db, actor, project=project, include_revoked=include_revoked)


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, actor: ActorDep, platform: PlatformDep) -> NewKey:
    """Create an API key (admin). The response is the only time the key is shown."""
    return service.create_key(
        platform.db,
        actor,
        name=body.name,
        role=body.role,
        project=body.project,
        user=body.user,
        expires=body.expires,
    )


@router.post("/keys/{ref}/revoke")
def revoke_key(ref: str, actor: ActorDep, platform: PlatformDep) -> KeyInfo:
    """Revoke a key by id or prefix."""
    return service.revoke_key(platform.db, actor, ref)


@router.get("/audit")
def list_audit(
    actor: ActorDep,
    platform: PlatformDep,
    action: str | None = Query(None, description="Action, `*` as wildcard (e.g. `key.*`)."),
    object_type: str | None = None,
    object_id: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[AuditInfo]:
    """Audit rows, newest first (admin)."""
    return service.list_audit(
        platform.db,
        actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        project=project,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
