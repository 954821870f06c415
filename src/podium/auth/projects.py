"""Projects: the unit that owns models, prompts, traces, keys and every later object, and their members."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from podium.auth.audit import record_audit
from podium.auth.authn import access_changed, key_cache
from podium.auth.lookup import find_membership, find_project, find_user
from podium.auth.store import Membership, Project, User
from podium.auth.users import set_membership
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.names import check_name

DEFAULT_PROJECT = "default"


class ProjectInfo(BaseModel):
    """A project as the API shows it."""

    id: str
    name: str
    description: str
    created_at: datetime


class MemberInfo(BaseModel):
    """A user's role in a project."""

    user: str
    user_id: str
    role: str
    admin: bool
    disabled: bool
    since: datetime


def _project_info(p: Project) -> ProjectInfo:
    return ProjectInfo(id=p.id, name=p.name, description=p.description, created_at=p.created_at)


def _visible(s: object, actor: Actor, ref: str) -> Project:
    """A project the actor may see (a server admin: any; others: the projects they are members of)."""
    p = find_project(s, ref)  # type: ignore[arg-type]
    if actor.is_admin:
        return p
    assert actor.principal is not None
    if p.id != actor.project_id and find_membership(s, p.id, actor.principal.user_id) is None:  # type: ignore[arg-type]
        raise NotFound(f"project {ref!r} not found; `podium projects ls` lists the projects you can see")
    return p


def create_project(db: Database, actor: Actor, name: str, description: str = "") -> ProjectInfo:
    """Create a project (server admin)."""
    actor.require_admin("create projects")
    name = check_name(name, "project", max_length=100)
    try:
        with db.session() as s:
            if s.scalar(select(Project.id).where(Project.name == name)):
                raise Conflict(f"project {name!r} exists already")
            row = Project(id=new_id("prj"), name=name, description=description, created_at=utcnow())
            s.add(row)
            s.flush()
            record_audit(s, actor, "project.create", "project", row.id, project_id=row.id, details={"name": name})
    except IntegrityError:
        raise Conflict(f"project {name!r} exists already") from None
    return _project_info(row)


def list_projects(db: Database, actor: Actor) -> list[ProjectInfo]:
    """Projects the actor may see: every one for a server admin, the ones its user is a member of for others."""
    with db.read_session() as s:
        q = select(Project).order_by(Project.name)
        if not actor.is_admin:
            assert actor.principal is not None
            q = q.join(Membership, Membership.project_id == Project.id).where(
                Membership.user_id == actor.principal.user_id
            )
        return [_project_info(p) for p in s.scalars(q)]


def get_project(db: Database, actor: Actor, ref: str) -> ProjectInfo:
    """One project by name or id, if the actor may see it."""
    with db.read_session() as s:
        return _project_info(_visible(s, actor, ref))


def update_project(db: Database, actor: Actor, ref: str, description: str) -> ProjectInfo:
    """Change a project's description (its admins)."""
    with db.session() as s:
        p = _visible(s, actor, ref)
        actor.require_in(p.id, "admin", "change projects")
        p.description = description
        record_audit(s, actor, "project.update", "project", p.id, project_id=p.id)
        return _project_info(p)


def list_members(db: Database, actor: Actor, ref: str) -> list[MemberInfo]:
    """A project's members and their roles (anyone who may see the project)."""
    with db.read_session() as s:
        p = _visible(s, actor, ref)
        rows = s.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.project_id == p.id)
            .order_by(User.name)
        )
        return [
            MemberInfo(
                user=u.name, user_id=u.id, role=m.role, admin=u.is_admin, disabled=u.disabled, since=m.created_at
            )
            for m, u in rows
        ]


def set_member(db: Database, actor: Actor, ref: str, user: str, role: str) -> MemberInfo:
    """Add a user to a project with `role`, or change their role there (the project's admins; only a
    server admin adds someone who is not a member yet)."""
    with db.session() as s:
        p = _visible(s, actor, ref)
        actor.require_in(p.id, "admin", f"manage the members of project {p.name!r}")
        u = find_user(s, user)
        if find_membership(s, p.id, u.id) is None and not actor.is_admin:
            raise InvalidInput(
                f"only a server admin adds users to a project; {u.name!r} is not a member of {p.name!r}",
                details={"field": "user"},
            )
        set_membership(s, actor, p, u, role)
        access_changed(s)
        s.flush()
        m = find_membership(s, p.id, u.id)
        assert m is not None
        info = MemberInfo(
            user=u.name, user_id=u.id, role=m.role, admin=u.is_admin, disabled=u.disabled, since=m.created_at
        )
    key_cache(db).clear()
    return info


def remove_member(db: Database, actor: Actor, ref: str, user: str) -> None:
    """Take a user out of a project: their keys there stop working at once (the project's admins)."""
    with db.session() as s:
        p = _visible(s, actor, ref)
        actor.require_in(p.id, "admin", f"manage the members of project {p.name!r}")
        u = find_user(s, user)
        m = find_membership(s, p.id, u.id)
        if m is None:
            raise NotFound(f"user {u.name!r} is not a member of project {p.name!r}")
        if actor.principal is not None and u.id == actor.principal.user_id and not actor.is_admin:
            raise InvalidInput("you cannot remove yourself from a project; ask another of its admins")
        s.delete(m)
        access_changed(s)
        record_audit(
            s, actor, "member.remove", "membership", f"{p.id}:{u.id}", project_id=p.id, details={"user": u.name}
        )
    key_cache(db).clear()
