"""Authentication: the per-process cache that turns an API key into a `Principal`.

The hot path never touches the database: principals are cached per process for a few seconds (positive
and negative). A change that takes access away (revocation, role change, removal, disabling) clears this
process's cache at once and moves the access epoch in the same transaction; every other process reads the
epoch each second (`watch`, off the event loop) and clears its cache when it moved. "Last used" times are
buffered and written in one statement per flush.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from podium.auth.store import AccessEpoch, ApiKey, EndedSession, Membership, Project, User
from podium.core.db import Database
from podium.core.errors import Unauthorized
from podium.core.identity import Principal, lowest_role

KEY_PREFIX = "pk-"
WATCH_EVERY = 1.0  # seconds between reads of the access epoch: how late another process may honour a revocation


def access_changed(session: Session) -> None:
    """Move the access epoch in the caller's transaction (so other processes drop their cached keys)."""
    moved = session.execute(update(AccessEpoch).where(AccessEpoch.id == 1).values(value=AccessEpoch.value + 1))
    if not moved.rowcount:  # type: ignore[attr-defined]
        session.execute(insert(AccessEpoch).values(id=1, value=1))


def hash_key(raw: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(raw.encode()).hexdigest()


def principal_of_key(db: Database, key_id: str) -> Principal:
    """The principal of a key by its id, with the rights its user has now (for work done later on a key's
    behalf, such as a job); `Unauthorized` saying why when the key may no longer act."""
    with db.read_session() as s:
        digest = s.scalar(select(ApiKey.key_hash).where(ApiKey.id == key_id))
    principal, reason = _load_principal(db, digest) if digest is not None else (None, "the API key no longer exists")
    if principal is None:
        raise Unauthorized(reason)
    if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
        raise Unauthorized(f"API key {principal.key_prefix}… expired at {principal.expires_at.isoformat()}")
    return principal


def _load_principal(db: Database, key_hash_value: str) -> tuple[Principal | None, str]:
    """Look a key up; returns the principal or None with the reason."""
    with db.read_session() as s:
        row = s.execute(
            select(ApiKey, User, Project, Membership.role)
            .join(User, User.id == ApiKey.user_id)
            .join(Project, Project.id == ApiKey.project_id)
            .outerjoin(
                Membership, (Membership.project_id == ApiKey.project_id) & (Membership.user_id == ApiKey.user_id)
            )
            .where(ApiKey.key_hash == key_hash_value)
        ).first()
    if row is None:
        return None, "invalid API key"
    k, u, p, member_role = row
    if k.revoked_at is not None:
        return None, f"API key {k.prefix}… was revoked"
    if u.disabled:
        return None, f"user {u.name!r} is disabled"
    if u.is_admin:  # a server admin's key acts with its own role, in every project if it is an admin key
        role, admin = k.role, k.role == "admin"
    elif member_role is None:
        return (
            None,
            f"user {u.name!r} is no longer a member of project {p.name!r}, which API key {k.prefix}… belongs to",
        )
    else:
        role, admin = lowest_role(k.role, member_role), False  # a key never does more than its user can now
    principal = Principal(
        key_id=k.id,
        key_prefix=k.prefix,
        user_id=u.id,
        user_name=u.name,
        project_id=p.id,
        project_name=p.name,
        role=role,
        expires_at=k.expires_at,
        admin=admin,
    )
    return principal, ""


@dataclass
class KeyCache:
    """Per-process cache of key lookups (positive and negative) with a short TTL, plus last-used buffer."""

    db: Database
    ttl: float = 5.0
    max_entries: int = 10_000
    # digest -> (when loaded (monotonic), principal or None, why not, expiry as epoch seconds or inf)
    _entries: OrderedDict[str, tuple[float, Principal | None, str, float]] = field(default_factory=OrderedDict)
    _used: dict[str, float] = field(default_factory=dict)  # key id -> last use (epoch seconds)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _epoch: int | None = None  # the access epoch last read by `watch`
    _generation: int = 0  # moved by `clear`: a lookup that began before a clear is not kept

    def authenticate(self, raw: str | None) -> Principal:
        """The principal for a raw key, or `Unauthorized` saying why."""
        if not raw:
            raise Unauthorized("missing API key: send 'Authorization: Bearer pk-…' (see `podium keys create`)")
        if not raw.startswith(KEY_PREFIX):
            raise Unauthorized("invalid API key: Podium keys start with 'pk-'")
        return self.authenticate_hash(hash_key(raw))

    def session_ended(self, session_id: str) -> bool:
        """Whether a dashboard session was signed out (read from the database: every process sees it at once)."""
        with self.db.read_session() as s:
            return s.get(EndedSession, session_id) is not None

    def end_session(self, session_id: str, until: datetime) -> None:
        """Sign a dashboard session out everywhere until its cookie would expire (and forget expired ones)."""
        with self.db.session() as s:
            s.execute(delete(EndedSession).where(EndedSession.expires_at < datetime.now(UTC)))
            if s.get(EndedSession, session_id) is None:
                s.add(EndedSession(session_id=session_id, expires_at=until))

    def authenticate_hash(self, digest: str) -> Principal:
        """The principal for a key's stored hash (dashboard sessions carry the hash, not the key)."""
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is None or now - hit[0] > self.ttl:
            generation = self._generation
            principal, reason = _load_principal(self.db, digest)
            expiry = principal.expires_at.timestamp() if principal and principal.expires_at else math.inf
            hit = (now, principal, reason, expiry)
            with self._lock:
                if self._generation == generation:  # else a change landed meanwhile: answer, but do not keep
                    self._entries[digest] = hit
                    self._entries.move_to_end(digest)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
        return self._admit(hit)

    def _admit(self, hit: tuple[float, Principal | None, str, float]) -> Principal:
        """The cached principal if it may act now (not refused, not expired); notes its use."""
        _, principal, reason, expiry = hit
        if principal is None:
            raise Unauthorized(reason)
        wall = time.time()
        if wall >= expiry:
            assert principal.expires_at is not None
            raise Unauthorized(f"API key {principal.key_prefix}… expired at {principal.expires_at.isoformat()}")
        # no lock: a dict store is atomic, and a use noted in a dict that a flush has just swapped out is a
        # lost "last used" time, corrected by the key's next call
        self._used[principal.key_id] = wall
        return principal

    async def authenticate_async(self, raw: str | None) -> Principal:
        """`authenticate` for the event loop: a hit is answered at once, a miss (or a stale entry) is read
        from the database in a worker thread, so a flood of unknown keys never blocks the loop."""
        if not raw:
            raise Unauthorized("missing API key: send 'Authorization: Bearer pk-…' (see `podium keys create`)")
        if not raw.startswith(KEY_PREFIX):
            raise Unauthorized("invalid API key: Podium keys start with 'pk-'")
        digest = hash_key(raw)
        hit = self._entries.get(digest)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            return await asyncio.to_thread(self.authenticate_hash, digest)
        return self._admit(hit)

    def clear(self) -> None:
        """Forget every cached lookup (after a revocation or role change)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def watch(self) -> bool:
        """Read the access epoch (blocking: call it off the event loop); when another process moved it since
        the last read, forget every cached lookup. Returns whether it did."""
        with self.db.read_session() as s:
            epoch = s.scalar(select(AccessEpoch.value).where(AccessEpoch.id == 1)) or 0
        moved = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        if moved:
            self.clear()
        return moved

    def flush_usage(self) -> int:
        """Write buffered last-used times; returns how many keys were updated."""
        with self._lock:
            used, self._used = self._used, {}
        if not used:
            return 0
        with self.db.session() as s:
            for key_id, epoch in used.items():
                at = datetime.fromtimestamp(epoch, UTC)
                s.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
                    .values(last_used_at=at)
                )
        return len(used)


_CACHES: weakref.WeakKeyDictionary[Database, KeyCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def key_cache(db: Database) -> KeyCache:
    """This process's key cache for a database (one per database, so a revocation or a role change made
    through any service call applies at once to every request this process serves)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(db)
        if cache is None:
            cache = _CACHES[db] = KeyCache(db)
        return cache
