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
from sqlalchemy import func, select

from podium.auth.audit import record_audit
from podium.auth.authn import KEY_PREFIX, hash_key, key_cache
from podium.auth.lookup import find_key, find_project, find_user
from podium.auth.projects import DEFAULT_PROJECT
from podium.auth.store import ApiKey, Project, User
from podium.auth.users import ADMIN_USER, check_role
from podium.core.db import Database, utcnow
from podium.core.durations import parse_expiry
from podium.core.errors import Forbidden, InvalidInput
from podium.core.identity import ROLES, Actor
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
    """Create an API key (admin) and return it, with the secret shown this once."""
    actor.require("admin", "create API keys")
    now = utcnow()
    expires_at = parse_expiry(expires, now)
    if not name.strip():
        raise InvalidInput("key name must not be empty", details={"field": "name"})
    with db.session() as s:
        if user is not None:
            owner = find_user(s, user)
        elif actor.principal is not None:
            owner = find_user(s, actor.principal.user_id)
        else:
            owner = find_user(s, ADMIN_USER)
        role = check_role(role or owner.role)
        if ROLES.index(role) > ROLES.index(owner.role):
            raise InvalidInput(
                f"user {owner.name!r} has role {owner.role!r}; a key cannot carry more ({role!r})",
                details={"field": "role"},
            )
        if owner.disabled:
            raise InvalidInput(f"user {owner.name!r} is disabled", details={"field": "user"})
        proj = find_project(s, project) if project else find_project(s, actor.project_id or DEFAULT_PROJECT)
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
    """Keys: all of them (filtered by project) for admins, the actor's own for others."""
    now = utcnow()
    with db.read_session() as s:
        q = (
            select(ApiKey, User.name, Project.name)
            .join(User, User.id == ApiKey.user_id)
            .join(Project, Project.id == ApiKey.project_id)
            .order_by(ApiKey.created_at.desc())
        )
        if actor.principal is not None and not actor.principal.has_role("admin"):
            q = q.where(ApiKey.user_id == actor.principal.user_id)
        if project:
            q = q.where(ApiKey.project_id == find_project(s, project).id)
        if not include_revoked:
            q = q.where(ApiKey.revoked_at.is_(None))
        return [_key_info(k, u, p, now) for k, u, p in s.execute(q)]


def revoke_key(db: Database, actor: Actor, ref: str) -> KeyInfo:
    """Revoke a key (admins any key, others their own). Takes effect at once in this process."""
    now = utcnow()
    with db.session() as s:
        k = find_key(s, ref)
        p = actor.principal
        if p is not None and not p.has_role("admin") and k.user_id != p.user_id:
            raise Forbidden(f"role '{p.role}' may only revoke its own keys")
        if k.revoked_at is None:
            k.revoked_at = now
            record_audit(s, actor, "key.revoke", "api_key", k.id, project_id=k.project_id, details={"prefix": k.prefix})
        user = s.get(User, k.user_id)
        proj = s.get(Project, k.project_id)
        info = _key_info(k, user.name if user else "?", proj.name if proj else "?", now)
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
        user = User(id=new_id("usr"), name=ADMIN_USER, email=None, role="admin", disabled=False, created_at=now)
        s.add(user)
        s.flush()
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
