"""API keys: creation (the secret shown once, only its hash kept), listing, revocation, and the
per-process cache that authenticates them.

Authentication never touches the database on the hot path: principals are cached per process for a
few seconds (revocation in this process applies at once, in other processes within the TTL), and
"last used" times are buffered and written in one statement per flush.
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, or_, select

from podium.auth.audit import record_audit
from podium.auth.authn import KEY_PREFIX, access_changed, hash_key, key_cache
from podium.auth.lookup import find_key, find_membership, find_project, find_user
from podium.auth.projects import DEFAULT_PROJECT
from podium.auth.store import ApiKey, Membership, Project, User
from podium.auth.users import ADMIN_USER, check_role
from podium.core.db import Database, utcnow
from podium.core.durations import parse_expiry
from podium.core.errors import Forbidden, InvalidInput
from podium.core.identity import ROLES, Actor, lowest_role
from podium.core.ids import new_id

_KEY_ALPHABET = string.ascii_letters + string.digits


class KeyInfo(BaseModel):
    """An API key as the API shows it: never the key itself."""

    id: str
    prefix: str
    name: str
    user: str
    project: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    status: str


class NewKey(KeyInfo):
    """A freshly created key: the only time the secret is shown."""

    key: str


def _key_status(k: ApiKey, now: datetime) -> str:
    if k.revoked_at is not None:
        return "revoked"
    if k.expires_at is not None and k.expires_at <= now:
        return "expired"
    return "active"


def _key_info(k: ApiKey, user: str, project: str, now: datetime) -> KeyInfo:
    return KeyInfo(
        id=k.id,
        prefix=k.prefix,
        name=k.name,
        user=user,
        project=project,
        role=k.role,
        created_at=k.created_at,
        expires_at=k.expires_at,
        revoked_at=k.revoked_at,
        last_used_at=k.last_used_at,
        status=_key_status(k, now),
    )


def _new_secret() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(40))


def create_key(
    db: Database,
    actor: Actor,
    *,
    name: str,
    role: str | None = None,
    project: str | None = None,
    user: str | None = None,
    expires: str | None = None,
) -> NewKey:
    """Create an API key and return it, with the secret shown this once. Anyone creates keys for themselves
    in their key's project, never with more than their key's role; a project's admins create keys for its
    members; a server admin for anyone in any project. A key never carries more than its user's role in
    its project (a server admin's keys any role)."""
    now = utcnow()
    expires_at = parse_expiry(expires, now)
    if not name.strip():
        raise InvalidInput("key name must not be empty", details={"field": "name"})
    p = actor.principal
    with db.session() as s:
        if user is not None:
            owner = find_user(s, user)
        elif p is not None:
            owner = find_user(s, p.user_id)
        else:
            owner = find_user(s, ADMIN_USER)
        proj = find_project(s, project) if project else find_project(s, actor.project_id or DEFAULT_PROJECT)
        if p is not None and not actor.is_admin:
            if proj.id != p.project_id:
                raise Forbidden(
                    f"your key belongs to project {p.project_name!r}; it creates keys there only",
                    details={"field": "project"},
                )
            if owner.id != p.user_id:
                actor.require("admin", "create keys for other users")
        if owner.disabled:
            raise InvalidInput(f"user {owner.name!r} is disabled", details={"field": "user"})
        if owner.is_admin:
            ceiling = "admin"
        else:
            membership = find_membership(s, proj.id, owner.id)
            if membership is None:
                raise InvalidInput(
                    f"user {owner.name!r} is not a member of project {proj.name!r}; add them first"
                    " (`podium projects members set`)",
                    details={"field": "user"},
                )
            ceiling = membership.role
        if p is not None and not actor.is_admin and owner.id == p.user_id:
            ceiling = lowest_role(ceiling, p.role)  # a key makes no key stronger than itself
        role = check_role(role or ceiling)
        if ROLES.index(role) > ROLES.index(ceiling):
            raise InvalidInput(
                f"user {owner.name!r} may act as {ceiling!r} in project {proj.name!r}; a key cannot carry more"
                f" ({role!r})",
                details={"field": "role"},
            )
        secret = _new_secret()
        row = ApiKey(
            id=new_id("key"),
            prefix=secret[: len(KEY_PREFIX) + 8],
            key_hash=hash_key(secret),
            name=name.strip(),
            user_id=owner.id,
            project_id=proj.id,
            role=role,
            created_at=now,
            expires_at=expires_at,
        )
        s.add(row)
        s.flush()
        record_audit(
            s,
            actor,
            "key.create",
            "api_key",
            row.id,
            project_id=proj.id,
            details={"prefix": row.prefix, "name": row.name, "role": role, "user": owner.name},
        )
        info = _key_info(row, owner.name, proj.name, now)
    return NewKey(**info.model_dump(), key=secret)


def list_keys(
    db: Database, actor: Actor, *, project: str | None = None, include_revoked: bool = False
) -> list[KeyInfo]:
    """Keys: every key for a server admin (filtered by project), the keys of its project for a project
    admin, the actor's own for others."""
    now = utcnow()
    p = actor.principal
    with db.read_session() as s:
        q = (
            select(ApiKey, User.name, Project.name)
            .join(User, User.id == ApiKey.user_id)
            .join(Project, Project.id == ApiKey.project_id)
            .order_by(ApiKey.created_at.desc())
        )
        if p is not None and not actor.is_admin:
            if p.has_role("admin"):
                q = q.where(or_(ApiKey.project_id == p.project_id, ApiKey.user_id == p.user_id))
            else:
                q = q.where(ApiKey.user_id == p.user_id)
        if project:
            q = q.where(ApiKey.project_id == find_project(s, project).id)
        if not include_revoked:
            q = q.where(ApiKey.revoked_at.is_(None))
        return [_key_info(k, u, pn, now) for k, u, pn in s.execute(q)]


def revoke_key(db: Database, actor: Actor, ref: str) -> KeyInfo:
    """Revoke a key (a server admin any key, a project admin its project's, others their own). Takes effect
    at once in this process."""
    now = utcnow()
    p = actor.principal
    with db.session() as s:
        k = find_key(s, ref)
        own = p is not None and k.user_id == p.user_id
        project_admin = p is not None and p.has_role("admin") and k.project_id == p.project_id
        if p is not None and not (actor.is_admin or own or project_admin):
            raise Forbidden(f"role '{p.role}' may only revoke its own keys (a project admin: its project's too)")
        if k.revoked_at is None:
            k.revoked_at = now
            record_audit(s, actor, "key.revoke", "api_key", k.id, project_id=k.project_id, details={"prefix": k.prefix})
        user = s.get(User, k.user_id)
        proj = s.get(Project, k.project_id)
        info = _key_info(k, user.name if user else "?", proj.name if proj else "?", now)
        access_changed(s)
    key_cache(db).clear()
    return info


def bootstrap(db: Database) -> str | None:
    """On a database with no users: create the `default` project, the `admin` user and an admin key.

    Returns the new key's secret (to print once and store), or None if the database was set up before.
    """
    actor = Actor.system()
    with db.session() as s:
        if s.scalar(select(func.count()).select_from(User)):
            return None
        now = utcnow()
        proj = s.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
        if proj is None:
            proj = Project(id=new_id("prj"), name=DEFAULT_PROJECT, description="Default project", created_at=now)
            s.add(proj)
        user = User(id=new_id("usr"), name=ADMIN_USER, email=None, is_admin=True, disabled=False, created_at=now)
        s.add(user)
        s.flush()
        s.add(Membership(project_id=proj.id, user_id=user.id, role="admin", created_at=now, created_by="system"))
        secret = _new_secret()
        key = ApiKey(
            id=new_id("key"),
            prefix=secret[: len(KEY_PREFIX) + 8],
            key_hash=hash_key(secret),
            name="bootstrap admin key",
            user_id=user.id,
            project_id=proj.id,
            role="admin",
            created_at=now,
        )
        s.add(key)
        s.flush()
        record_audit(s, actor, "project.create", "project", proj.id, project_id=proj.id, details={"name": proj.name})
        record_audit(s, actor, "user.create", "user", user.id, details={"name": ADMIN_USER, "role": "admin"})
        record_audit(s, actor, "key.create", "api_key", key.id, project_id=proj.id, details={"prefix": key.prefix})
    return secret
