"""Users: people or service accounts, each holding a role."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from podium.auth.audit import record_audit
from podium.auth.authn import key_cache
from podium.auth.lookup import find_user
from podium.auth.store import User
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput
from podium.core.identity import ROLES, Actor
from podium.core.ids import new_id
from podium.core.names import check_name

ADMIN_USER = "admin"


class UserInfo(BaseModel):
    """A user as the API shows it."""

    id: str
    name: str
    email: str | None
    role: str
    disabled: bool
    created_at: datetime


def check_role(role: str) -> str:
    """`role` if it is one of the roles, else `InvalidInput`."""
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}", details={"field": "role"})
    return role


def _user_info(u: User) -> UserInfo:
    return UserInfo(id=u.id, name=u.name, email=u.email, role=u.role, disabled=u.disabled, created_at=u.created_at)


def create_user(db: Database, actor: Actor, name: str, role: str, email: str | None = None) -> UserInfo:
    """Create a user (admin)."""
    actor.require("admin", "create users")
    name = check_name(name, "user", max_length=100)
    check_role(role)
    with db.session() as s:
        if s.scalar(select(User.id).where(User.name == name)):
            raise Conflict(f"user {name!r} exists already")
        row = User(id=new_id("usr"), name=name, email=email, role=role, disabled=False, created_at=utcnow())
        s.add(row)
        s.flush()
        record_audit(s, actor, "user.create", "user", row.id, details={"name": name, "role": role})
        return _user_info(row)


def list_users(db: Database, actor: Actor) -> list[UserInfo]:
    """Every user (admin)."""
    actor.require("admin", "list users")
    with db.read_session() as s:
        return [_user_info(u) for u in s.scalars(select(User).order_by(User.name))]


def update_user(
    db: Database, actor: Actor, ref: str, *, role: str | None = None, disabled: bool | None = None
) -> UserInfo:
    """Change a user's role or disable them (admin). Disabling a user stops all their keys."""
    actor.require("admin", "change users")
    with db.session() as s:
        u = find_user(s, ref)
        changes: dict[str, Any] = {}
        if role is not None:
            changes["role"] = [u.role, check_role(role)]
            u.role = role
        if disabled is not None:
            if disabled and actor.principal is not None and u.id == actor.principal.user_id:
                raise InvalidInput("you cannot disable yourself; ask another admin")
            changes["disabled"] = [u.disabled, disabled]
            u.disabled = disabled
        record_audit(s, actor, "user.update", "user", u.id, details=changes)
        info = _user_info(u)
    key_cache(db).clear()  # the user's keys now act with the new role (or not at all)
    return info
