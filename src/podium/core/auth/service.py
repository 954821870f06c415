"""Identity logic: projects, users, API keys, authentication and the audit log.

Authentication never touches the database on the hot path: principals are cached per process for a
few seconds (revocation in this process applies at once, in other processes within the TTL), and
"last used" times are buffered and written in one statement per flush.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.core.auth.store import ROLES, ApiKey, AuditRow, Project, User
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from podium.core.ids import new_id

T = TypeVar("T")
KEY_PREFIX = "pk-"
_KEY_ALPHABET = string.ascii_letters + string.digits
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
DEFAULT_PROJECT = "default"
ADMIN_USER = "admin"


# --- who is acting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """The identity behind a valid API key."""

    key_id: str
    key_prefix: str
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    role: str
    expires_at: datetime | None

    def has_role(self, needed: str) -> bool:
        """True if this principal's role is at least `needed`."""
        return ROLES.index(self.role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Actor:
    """Who performs a service call, and in which request; `principal` is None for the system."""

    principal: Principal | None
    request_id: str | None = None

    @classmethod
    def system(cls, request_id: str | None = None) -> Actor:
        """The platform itself (bootstrap, periodic jobs)."""
        return cls(None, request_id)

    @property
    def label(self) -> str:
        """How the audit log names this actor."""
        if self.principal is None:
            return "system"
        return f"{self.principal.user_name} ({self.principal.key_prefix}…)"

    @property
    def project_id(self) -> str | None:
        """The project the actor's key is scoped to."""
        return self.principal.project_id if self.principal else None

    def require(self, role: str, action: str) -> None:
        """Raise `Forbidden` unless the actor holds `role` (the system holds every role)."""
        if self.principal is not None and not self.principal.has_role(role):
            raise Forbidden(
                f"role '{self.principal.role}' may not {action}; it needs role '{role}'",
                details={"role": self.principal.role, "needed": role},
            )


# --- views returned to routes and the CLI -------------------------------------------------------


class ProjectInfo(BaseModel):
    """A project as the API shows it."""

    id: str
    name: str
    description: str
    created_at: datetime


class UserInfo(BaseModel):
    """A user as the API shows it."""

    id: str
    name: str
    email: str | None
    role: str
    disabled: bool
    created_at: datetime


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


class AuditInfo(BaseModel):
    """One audit row."""

    id: str
    at: datetime
    actor: str
    actor_user_id: str | None
    actor_key_id: str | None
    action: str
    object_type: str
    object_id: str | None
    project_id: str | None
    request_id: str | None
    details: dict[str, Any]


class Page(BaseModel, Generic[T]):
    """A page of results and the cursor for the next one (None at the end)."""

    items: list[T]
    next_cursor: str | None = None


# --- helpers ------------------------------------------------------------------------------------


def hash_key(raw: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(raw.encode()).hexdigest()


def _check_name(kind: str, name: str) -> str:
    name = name.strip()
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"{kind} name {name!r} is not valid: use 1-100 lowercase letters, digits, '.', '_' or '-',"
            " starting with a letter or digit",
            details={"field": "name"},
        )
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}", details={"field": "role"})
    return role


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(value: str | None, now: datetime | None = None) -> datetime | None:
    """`30d`, `12h`, `90m` or an ISO-8601 time (UTC if no zone) to an aware datetime."""
    if value is None or value == "":
        return None
    now = now or utcnow()
    match = _DURATION.match(value.strip().lower())
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        if seconds <= 0:
            raise InvalidInput("expiry must be in the future", details={"field": "expires"})
        return now + timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"expiry {value!r} is neither a duration like 30d/12h/15m nor an ISO-8601 time",
            details={"field": "expires"},
        ) from None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    if parsed <= now:
        raise InvalidInput(f"expiry {value} is in the past", details={"field": "expires"})
    return parsed


def record_audit(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | None,
    *,
    project_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an audit row inside the caller's transaction, so it lands with the change or not at all."""
    p = actor.principal
    session.add(
        AuditRow(
            id=new_id("aud"),
            at=utcnow(),
            actor_user_id=p.user_id if p else None,
            actor_key_id=p.key_id if p else None,
            actor=actor.label,
            action=action,
            object_type=object_type,
            object_id=object_id,
            project_id=project_id if project_id is not None else actor.project_id,
            request_id=actor.request_id,
            details=details or {},
        )
    )


def _project_info(p: Project) -> ProjectInfo:
    return ProjectInfo(id=p.id, name=p.name, description=p.description, created_at=p.created_at)


def _user_info(u: User) -> UserInfo:
    return UserInfo(id=u.id, name=u.name, email=u.email, role=u.role, disabled=u.disabled, created_at=u.created_at)


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


# --- projects -----------------------------------------------------------------------------------


def find_project(session: Session, ref: str) -> Project:
    """A project by name or id, or `NotFound` listing the known names."""
    row = session.scalar(select(Project).where(or_(Project.name == ref, Project.id == ref)))
    if row is None:
        names = session.scalars(select(Project.name).order_by(Project.name).limit(20)).all()
        raise NotFound(f"project {ref!r} not found; known: {', '.join(names) or 'none'}")
    return row


def create_project(db: Database, actor: Actor, name: str, description: str = "") -> ProjectInfo:
    """Create a project (admin)."""
    actor.require("admin", "create projects")
    name = _check_name("project", name)
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
    """Projects the actor may see: every one for admins, their own for others."""
    with db.read_session() as s:
        q = select(Project).order_by(Project.name)
        if actor.principal is not None and not actor.principal.has_role("admin"):
            q = q.where(Project.id == actor.principal.project_id)
        return [_project_info(p) for p in s.scalars(q)]


def get_project(db: Database, actor: Actor, ref: str) -> ProjectInfo:
    """One project by name or id, if the actor may see it."""
    with db.read_session() as s:
        p = find_project(s, ref)
        if actor.principal is not None and not actor.principal.has_role("admin") and p.id != actor.project_id:
            raise NotFound(f"project {ref!r} not found")
        return _project_info(p)


def update_project(db: Database, actor: Actor, ref: str, description: str) -> ProjectInfo:
    """Change a project's description (admin)."""
    actor.require("admin", "change projects")
    with db.session() as s:
        p = find_project(s, ref)
        p.description = description
        record_audit(s, actor, "project.update", "project", p.id, project_id=p.id)
        return _project_info(p)


# --- users --------------------------------------------------------------------------------------


def find_user(session: Session, ref: str) -> User:
    """A user by name or id, or `NotFound`."""
    row = session.scalar(select(User).where(or_(User.name == ref, User.id == ref)))
    if row is None:
        raise NotFound(f"user {ref!r} not found")
    return row


def create_user(db: Database, actor: Actor, name: str, role: str, email: str | None = None) -> UserInfo:
    """Create a user (admin)."""
    actor.require("admin", "create users")
    name = _check_name("user", name)
    _check_role(role)
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
            changes["role"] = [u.role, _check_role(role)]
            u.role = role
        if disabled is not None:
            if disabled and actor.principal is not None and u.id == actor.principal.user_id:
                raise InvalidInput("you cannot disable yourself; ask another admin")
            changes["disabled"] = [u.disabled, disabled]
            u.disabled = disabled
        record_audit(s, actor, "user.update", "user", u.id, details=changes)
        return _user_info(u)


# --- keys ---------------------------------------------------------------------------------------


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
        role = _check_role(role or owner.role)
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


def find_key(session: Session, ref: str) -> ApiKey:
    """A key by id or prefix, or `NotFound` / `Conflict` (a prefix shared by several keys)."""
    ref = ref.rstrip("…").rstrip(".")
    rows = session.scalars(select(ApiKey).where(or_(ApiKey.id == ref, ApiKey.prefix == ref))).all()
    if not rows:
        raise NotFound(f"API key {ref!r} not found (give its id or prefix, as `podium keys ls` shows)")
    if len(rows) > 1:
        raise Conflict(f"prefix {ref!r} matches {len(rows)} keys; give the key id instead")
    return rows[0]


def revoke_key(db: Database, actor: Actor, ref: str, cache: KeyCache | None = None) -> KeyInfo:
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
    if cache is not None:
        cache.clear()
    return info


# --- authentication -----------------------------------------------------------------------------


def _load_principal(db: Database, key_hash_value: str) -> tuple[Principal | None, str]:
    """Look a key up; returns the principal or None with the reason."""
    with db.read_session() as s:
        row = s.execute(
            select(ApiKey, User, Project)
            .join(User, User.id == ApiKey.user_id)
            .join(Project, Project.id == ApiKey.project_id)
            .where(ApiKey.key_hash == key_hash_value)
        ).first()
    if row is None:
        return None, "invalid API key"
    k, u, p = row
    if k.revoked_at is not None:
        return None, f"API key {k.prefix}… was revoked"
    if u.disabled:
        return None, f"user {u.name!r} is disabled"
    principal = Principal(
        key_id=k.id,
        key_prefix=k.prefix,
        user_id=u.id,
        user_name=u.name,
        project_id=p.id,
        project_name=p.name,
        role=k.role,
        expires_at=k.expires_at,
    )
    return principal, ""


@dataclass
class KeyCache:
    """Per-process cache of key lookups (positive and negative) with a short TTL, plus last-used buffer."""

    db: Database
    ttl: float = 5.0
    max_entries: int = 10_000
    _entries: OrderedDict[str, tuple[float, Principal | None, str]] = field(default_factory=OrderedDict)
    _used: dict[str, datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, raw: str | None) -> Principal:
        """The principal for a raw key, or `Unauthorized` saying why."""
        if not raw:
            raise Unauthorized("missing API key: send 'Authorization: Bearer pk-…' (see `podium keys create`)")
        if not raw.startswith(KEY_PREFIX):
            raise Unauthorized("invalid API key: Podium keys start with 'pk-'")
        return self.authenticate_hash(hash_key(raw))

    def authenticate_hash(self, digest: str) -> Principal:
        """The principal for a key's stored hash (dashboard sessions carry the hash, not the key)."""
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(digest)
        if hit is None or now - hit[0] > self.ttl:
            principal, reason = _load_principal(self.db, digest)
            with self._lock:
                self._entries[digest] = (now, principal, reason)
                self._entries.move_to_end(digest)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        else:
            _, principal, reason = hit
        if principal is None:
            raise Unauthorized(reason)
        wall = utcnow()
        if principal.expires_at is not None and principal.expires_at <= wall:
            raise Unauthorized(f"API key {principal.key_prefix}… expired at {principal.expires_at.isoformat()}")
        with self._lock:
            self._used[principal.key_id] = wall
        return principal

    def clear(self) -> None:
        """Forget every cached lookup (after a revocation or role change)."""
        with self._lock:
            self._entries.clear()

    def flush_usage(self) -> int:
        """Write buffered last-used times; returns how many keys were updated."""
        with self._lock:
            used, self._used = self._used, {}
        if not used:
            return 0
        with self.db.session() as s:
            for key_id, at in used.items():
                s.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
                    .values(last_used_at=at)
                )
        return len(used)


# --- audit --------------------------------------------------------------------------------------


def list_audit(
    db: Database,
    actor: Actor,
    *,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[AuditInfo]:
    """Audit rows, newest first, with cursor pagination (admin)."""
    actor.require("admin", "read the audit log")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", details={"field": "limit"})
    with db.read_session() as s:
        q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit + 1)
        if action:
            q = q.where(AuditRow.action.like(action.replace("*", "%")))
        if object_type:
            q = q.where(AuditRow.object_type == object_type)
        if object_id:
            q = q.where(AuditRow.object_id == object_id)
        if project:
            q = q.where(AuditRow.project_id == find_project(s, project).id)
        if since:
            q = q.where(AuditRow.at >= since)
        if until:
            q = q.where(AuditRow.at < until)
        if cursor:
            q = q.where(AuditRow.id < cursor)
        rows = list(s.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        AuditInfo(
            id=r.id,
            at=r.at,
            actor=r.actor,
            actor_user_id=r.actor_user_id,
            actor_key_id=r.actor_key_id,
            action=r.action,
            object_type=r.object_type,
            object_id=r.object_id,
            project_id=r.project_id,
            request_id=r.request_id,
            details=r.details,
        )
        for r in rows
    ]
    return Page[AuditInfo](items=items, next_cursor=rows[-1].id if more and rows else None)


# --- bootstrap ----------------------------------------------------------------------------------


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
