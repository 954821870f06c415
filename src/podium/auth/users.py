"""Users: people or service accounts. A server admin manages everything; others act in the projects they
are members of (see `members`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from podium.auth.audit import record_audit
from podium.auth.authn import access_changed, key_cache
from podium.auth.lookup import find_membership, find_project, find_user
from podium.auth.store import Membership, Project, User
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput
from podium.core.identity import ROLES, Actor
from podium.core.ids import new_id
from podium.core.names import check_name

ADMIN_USER = "admin"


class UserInfo(BaseModel):
    """A user as the API shows it: whether they are a server admin, their role in the caller's project
    (None if not a member), and their roles in the projects the caller may see."""

    id: str
    name: str
    email: str | None
    admin: bool
    role: str | None
    projects: dict[str, str]
    disabled: bool
    created_at: datetime


def check_role(role: str) -> str:
    """`role` if it is one of the roles, else `InvalidInput`."""
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}", details={"field": "role"})
    return role


def _infos(s: Any, actor: Actor, users: list[User]) -> list[UserInfo]:
    """Views of `users` with the memberships the actor may see (every one for a server admin)."""
    ids = [u.id for u in users]
    q = (
        select(Membership.user_id, Membership.project_id, Project.name, Membership.role)
        .join(Project, Project.id == Membership.project_id)
        .where(Membership.user_id.in_(ids))
    )
    if not actor.is_admin:
        q = q.where(Membership.project_id == actor.project_id)
    roles: dict[str, dict[str, str]] = {}
    here: dict[str, str] = {}
    for uid, pid, pname, role in s.execute(q):
        roles.setdefault(uid, {})[pname] = role
        if pid == actor.project_id:
            here[uid] = role
    return [
        UserInfo(
            id=u.id,
            name=u.name,
            email=u.email,
            admin=u.is_admin,
            role=here.get(u.id),
            projects=roles.get(u.id, {}),
            disabled=u.disabled,
            created_at=u.created_at,
        )
        for u in users
    ]


def set_membership(s: Any, actor: Actor, project: Project, user: User, role: str) -> str | None:
    """Give `user` `role` in `project` (in the caller's transaction, audited); returns the role before."""
    check_role(role)
    row = find_membership(s, project.id, user.id)
    before = row.role if row is not None else None
    if row is None:
        s.add(
            Membership(project_id=project.id, user_id=user.id, role=role, created_at=utcnow(), created_by=actor.label)
        )
    else:
        row.role = role
    details = {"user": user.name, "role": [before, role]}
    record_audit(
        s, actor, "member.set", "membership", f"{project.id}:{user.id}", project_id=project.id, details=details
    )
    return before


def _project_for(s: Any, actor: Actor, project: str | None) -> Project:
    """The project named, else the actor's own (the default project for the system)."""
    from podium.auth.projects import DEFAULT_PROJECT

    return find_project(s, project or actor.project_id or DEFAULT_PROJECT)


def create_user(
    db: Database,
    actor: Actor,
    name: str,
    role: str | None = None,
    email: str | None = None,
    *,
    admin: bool = False,
    project: str | None = None,
) -> UserInfo:
    """Create a user (server admin): a server admin if `admin`, and with `role` a member of `project` (the
    caller's project by default)."""
    actor.require_admin("create users")
    name = check_name(name, "user", max_length=100)
    if role is not None:
        check_role(role)
    with db.session() as s:
        if s.scalar(select(User.id).where(User.name == name)):
            raise Conflict(f"user {name!r} exists already")
        row = User(id=new_id("usr"), name=name, email=email, is_admin=admin, disabled=False, created_at=utcnow())
        s.add(row)
        s.flush()
        record_audit(s, actor, "user.create", "user", row.id, details={"name": name, "admin": admin})
        if role is not None:
            set_membership(s, actor, _project_for(s, actor, project), row, role)
            s.flush()
        return _infos(s, actor, [row])[0]


def list_users(db: Database, actor: Actor) -> list[UserInfo]:
    """Every user for a server admin; the members of its project for a project admin."""
    if not actor.is_admin:
        actor.require("admin", "list users")
    with db.read_session() as s:
        q = select(User).order_by(User.name)
        if not actor.is_admin:
            q = q.join(Membership, Membership.user_id == User.id).where(Membership.project_id == actor.project_id)
        return _infos(s, actor, list(s.scalars(q)))


def update_user(
    db: Database,
    actor: Actor,
    ref: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    admin: bool | None = None,
    project: str | None = None,
) -> UserInfo:
    """Change a user: their `role` in `project` (the caller's by default; its admins may), whether they are
    disabled or a server admin (server admins only). Disabling stops all their keys at once."""
    if role is None and disabled is None and admin is None:  # else anyone could read any user through it
        raise InvalidInput("nothing to change: give role (with project), disabled or admin", details={"field": "role"})
    with db.session() as s:
        u = find_user(s, ref)
        changes: dict[str, Any] = {}
        if disabled is not None or admin is not None:
            actor.require_admin("disable users or make server admins")
        if role is not None:
            target = _project_for(s, actor, project)
            actor.require_in(target.id, "admin", f"change roles in project {target.name!r}")
            if not actor.is_admin and find_membership(s, target.id, u.id) is None:
                raise InvalidInput(
                    f"user {u.name!r} is not a member of project {target.name!r}; ask a server admin to add them",
                    details={"field": "user"},
                )
            set_membership(s, actor, target, u, role)
        if disabled is not None:
            if disabled and actor.principal is not None and u.id == actor.principal.user_id:
                raise InvalidInput("you cannot disable yourself; ask another admin")
            changes["disabled"] = [u.disabled, disabled]
            u.disabled = disabled
        if admin is not None:
            if not admin and actor.principal is not None and u.id == actor.principal.user_id:
                raise InvalidInput("you cannot take your own server admin role away; ask another admin")
            changes["admin"] = [u.is_admin, admin]
            u.is_admin = admin
        if changes:
            record_audit(s, actor, "user.update", "user", u.id, details=changes)
        s.flush()
        info = _infos(s, actor, [u])[0]
        access_changed(s)
    key_cache(db).clear()  # the user's keys now act with the new roles (or not at all)
    return info
