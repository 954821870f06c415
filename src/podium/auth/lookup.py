"""Finding projects, users and keys by name, id or prefix: the lookups every auth module (and every domain
that takes a project, user or key reference) starts from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from podium.auth.store import ApiKey, Membership, Project, User
from podium.core.errors import Conflict, NotFound


def find_project(session: Session, ref: str) -> Project:
    """A project by name or id, or `NotFound` (which never lists other projects: their names are theirs)."""
    row = session.scalar(select(Project).where(or_(Project.name == ref, Project.id == ref)))
    if row is None:
        raise NotFound(f"project {ref!r} not found; `podium projects ls` lists the projects you can see")
    return row


def find_user(session: Session, ref: str) -> User:
    """A user by name or id, or `NotFound`."""
    row = session.scalar(select(User).where(or_(User.name == ref, User.id == ref)))
    if row is None:
        raise NotFound(f"user {ref!r} not found")
    return row


def find_key(session: Session, ref: str) -> ApiKey:
    """A key by id or prefix, or `NotFound` / `Conflict` (a prefix shared by several keys)."""
    ref = ref.rstrip("…").rstrip(".")
    rows = session.scalars(select(ApiKey).where(or_(ApiKey.id == ref, ApiKey.prefix == ref))).all()
    if not rows:
        raise NotFound(f"API key {ref!r} not found (give its id or prefix, as `podium keys ls` shows)")
    if len(rows) > 1:
        raise Conflict(f"prefix {ref!r} matches {len(rows)} keys; give the key id instead")
    return rows[0]


@dataclass(frozen=True)
class ProjectRef:
    """A project as other domains see it: its id and name (never its row)."""

    id: str
    name: str


@dataclass(frozen=True)
class UserRef:
    """A user as other domains see it."""

    id: str
    name: str


@dataclass(frozen=True)
class KeyRef:
    """An API key as other domains see it: never its hash."""

    id: str
    prefix: str
    project_id: str
    user_id: str


def project_ref(session: Session, ref: str) -> ProjectRef:
    """The project a name or id names (`NotFound` otherwise), read in the caller's transaction."""
    p = find_project(session, ref)
    return ProjectRef(p.id, p.name)


def user_ref(session: Session, ref: str) -> UserRef:
    """The user a name or id names."""
    u = find_user(session, ref)
    return UserRef(u.id, u.name)


def key_ref(session: Session, ref: str) -> KeyRef:
    """The key an id or prefix names."""
    k = find_key(session, ref)
    return KeyRef(k.id, k.prefix, k.project_id, k.user_id)


def names_of(session: Session, wanted: Mapping[str, Iterable[str]]) -> dict[tuple[str, str], str]:
    """Display names by (scope, id) for ids of `key` (its prefix), `project` and `user` scopes."""
    names: dict[tuple[str, str], str] = {}
    for scope, model, column in (
        ("key", ApiKey, ApiKey.prefix),
        ("project", Project, Project.name),
        ("user", User, User.name),
    ):
        ids = list(wanted.get(scope, ()))
        if ids:
            for id_, name in session.execute(select(model.id, column).where(model.id.in_(ids))):
                names[(scope, id_)] = name
    return names


def find_membership(session: Session, project_id: str, user_id: str) -> Membership | None:
    """A user's membership of a project, if any."""
    return session.get(Membership, (project_id, user_id))
