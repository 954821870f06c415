"""Who is acting: the principal behind an API key, the actor of a service call, and the role ladder.

These are the types every domain's services take, so they live in core; the auth domain creates them
(keys, users, projects) and provides the `Authenticator` that turns a key into a `Principal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from podium.core.errors import Forbidden

ROLES = ("viewer", "member", "admin")


def lowest_role(*roles: str) -> str:
    """The least of some roles (an unknown role counts as none: `viewer`)."""
    return min(roles, key=lambda r: ROLES.index(r) if r in ROLES else 0)


@dataclass(frozen=True)
class Principal:
    """The identity behind a valid API key."""

    key_id: str
    key_prefix: str
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    role: str  # its role in its project: the lower of the key's role and its user's membership role
    expires_at: datetime | None
    admin: bool = False  # a server admin's admin key: manages every project and the global objects

    def has_role(self, needed: str) -> bool:
        """True if this principal's role in its project is at least `needed`."""
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

    @property
    def is_admin(self) -> bool:
        """A server admin (or the system): may act on every project and on global objects."""
        return self.principal is None or self.principal.admin

    def require(self, role: str, action: str) -> None:
        """Raise `Forbidden` unless the actor holds `role` in its project (the system holds every role)."""
        if self.principal is not None and not self.principal.has_role(role):
            raise Forbidden(
                f"role '{self.principal.role}' may not {action}; it needs role '{role}'",
                details={"role": self.principal.role, "needed": role},
            )

    def require_admin(self, action: str) -> None:
        """Raise `Forbidden` unless the actor is a server admin (with an admin key)."""
        if not self.is_admin:
            raise Forbidden(f"only a server admin may {action}", details={"needed": "server admin"})

    def scope(self) -> frozenset[str | None] | None:
        """The projects whose objects the actor sees: None for all (a server admin), else its own and the
        global ones (`None`)."""
        if self.is_admin:
            return None
        assert self.principal is not None
        return frozenset({None, self.principal.project_id})

    def sees(self, project_id: str | None) -> bool:
        """Whether objects of `project_id` are visible to the actor: its own project's, global ones
        (`None`), and every project's for a server admin."""
        return (
            project_id is None
            or self.is_admin
            or (self.principal is not None and project_id == self.principal.project_id)
        )

    def require_in(self, project_id: str | None, role: str, action: str) -> None:
        """Raise unless the actor may `action` objects of `project_id` with `role`: a server admin may
        anywhere; others only in their own project (global objects, `None`, take a server admin)."""
        if self.is_admin:
            return
        if project_id is None:
            self.require_admin(action)
        assert self.principal is not None
        if project_id != self.principal.project_id:
            raise Forbidden(
                f"your key belongs to project {self.principal.project_name!r}; it may not {action} elsewhere",
                details={"needed": "a key of that project"},
            )
        self.require(role, action)


class Authenticator(Protocol):
    """Turns a raw API key (or its stored hash) into a `Principal`, or raises `Unauthorized` saying why."""

    def authenticate(self, raw: str | None) -> Principal:
        """The principal for a raw key; may read the database on a cache miss."""

    async def authenticate_async(self, raw: str | None) -> Principal:
        """The same, for the event loop: a cache miss is read in a worker thread."""

    def authenticate_hash(self, digest: str) -> Principal:
        """The principal for a key's stored hash (dashboard sessions carry the hash, not the key)."""

    def session_ended(self, session_id: str) -> bool:
        """Whether a dashboard session was signed out (on any server process)."""

    def end_session(self, session_id: str, until: datetime) -> None:
        """Record that a dashboard session was signed out; its cookie is refused until it would expire."""
