"""The versioned-registry kernel: named things with immutable, numbered, content-hashed versions and
movable labels, kept in each domain's own tables.

Models and prompts (and next datasets, eval suites, chains, knowledge bases, fine-tune specs) declare a
`Registry` naming their four tables; the rules they share live here, once:

- **Names and labels** follow `core.names`: lowercase names; labels are words, and `latest` and `v3` are
  not labels (they mean the newest version and version 3).
- **References** are `name` or `name@latest` (the newest version), `name@3` or `name@v3` (a number),
  `name@label`; where a version is asked for, its id (`prv_…`) works too, if it is a version of that entity.
  A missing name lists the known names; a missing label lists the entity's labels.
- **Versions** are numbered 1, 2, 3… per entity and never change. `push` takes the entity's row lock
  before it reads the highest number (SQLite's write lock already serialises writers), so pushes to one
  entity take turns; should two writers still collide (the first two pushes of a new name, or a writer
  that skipped the lock), the table's unique keys refuse the second and `Registry.write` runs it again in
  a fresh transaction, on top of the winner.
- **Content**: each version carries a hash of its content, so pushing what is already there finds the
  version it already is (`by_hash`, checked by `push` under the same lock) instead of making a copy.
- **Labels** move atomically, each move with a history row (from, to, who, when). Concurrent moves of one
  label serialise (a row lock on PostgreSQL; SQLite's write lock, taken when a write session begins), so
  the history is a chain in which every move starts where the previous one ended.

The tables need these columns (the bracketed names are configurable):

    entity   id, name (unique) [, archived column]
    version  id, [entity_fk], version (unique with [entity_fk]), [hash_column]
    label    [entity_fk] and [label_column] (the key), version_id, updated_by, updated_at
    move     id, [entity_fk], [label_column], from_version_id, to_version_id, actor, at

Everything but `write` works inside the caller's session, so a domain adds its own checks and audit
records to the same transaction: what a registry writes appears whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, cast

from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session

from podium.core import names
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.ids import new_id

LATEST = "latest"
KNOWN_LISTED = 30  # names listed when a name is not found
ATTEMPTS = 5  # transactions `write` runs before it gives up on a race


Scope = frozenset[str | None] | None  # the projects an actor sees (None: all of them; None in it: global)
E = TypeVar("E", bound=DeclarativeBase)  # the entity's mapped class (columns `id`, `name`)
V = TypeVar("V", bound=DeclarativeBase)  # the version's mapped class (columns `id`, `version`)
T = TypeVar("T")


def _id(row: Any) -> str:
    """A row's `id` (the kernel's tables are typed by their base class only)."""
    return str(row.id)


def _name(entity: Any) -> str:
    """An entity's `name`."""
    return str(entity.name)


def plural(word: str) -> str:
    """`models`, `labels`, `aliases`."""
    return f"{word}es" if word.endswith(("s", "x", "sh", "ch")) else f"{word}s"


def version_number(tag: str) -> int | None:
    """`3` or `v3` as the number 3; None for anything else (`latest`, a label, an id)."""
    digits = tag[1:] if tag.startswith("v") else tag
    return int(digits) if digits.isascii() and digits.isdigit() else None


@dataclass(frozen=True)
class Ref:
    """A parsed reference: the name, and what followed its `@` (None when nothing did: the latest version)."""

    name: str
    tag: str | None = None

    @property
    def number(self) -> int | None:
        """The version number it names (`@3`, `@v3`), if it names one."""
        return version_number(self.tag) if self.tag is not None else None

    @property
    def is_latest(self) -> bool:
        """Whether it names the newest version (`name`, `name@latest`)."""
        return self.tag is None or self.tag == LATEST

    def __str__(self) -> str:
        return self.name if self.tag is None else f"{self.name}@{self.tag}"


@dataclass(frozen=True)
class Move:
    """One entry of a label's history, with version numbers (None: the label did not exist, or was removed)."""

    label: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime


@dataclass(frozen=True)
class Moved(Generic[V]):
    """A label move: the version the label points at now, and the id of the one it pointed at before."""

    version: V
    previous_id: str | None


@dataclass(frozen=True)
class Pushed(Generic[V]):
    """The result of a push: the version, and whether the push made it (False: the content was there)."""

    version: V
    created: bool


@dataclass(frozen=True)
class Registry(Generic[E, V]):
    """One domain's registry: its tables and the words its messages use.

    `kind` names the entity in messages and error details ("model"); `word` names its labels ("alias").
    Version ids are `new_id(version_prefix)`, history ids `new_id(move_prefix)`.
    """

    kind: str
    entity: type[E]
    version: type[V]
    label: type[Any]
    move: type[Any]
    entity_fk: str
    version_prefix: str
    move_prefix: str
    label_column: str = "label"
    word: str = "label"
    hash_column: str = "content_hash"
    archived_column: str | None = None
    project_column: str | None = None  # the owning project's id (None in it: a global entity)

    # --- names and references ---------------------------------------------------------------------

    def check_name(self, value: str, *, field: str = "name") -> str:
        """A valid entity name (stripped), or `InvalidInput` saying the rule."""
        return names.check_name(value, self.kind, field=field)

    def check_label(self, value: str, *, field: str | None = None) -> str:
        """A valid label, or `InvalidInput` saying the rule."""
        return names.check_label(value, self.word, field=field or self.word)

    def parse_ref(self, ref: str) -> Ref:
        """`name`, `name@3`, `name@v3`, `name@label` or `name@latest`, split at the `@`."""
        text = ref.strip() if isinstance(ref, str) else ""
        name, at, tag = text.partition("@")
        if not name or (at and not tag) or "@" in tag or any(c.isspace() for c in text):
            raise InvalidInput(
                f"{self.kind} reference {ref!r} is not `name`, `name@version` or `name@{self.word}`",
                details={"field": "ref"},
            )
        return Ref(name, tag or None)

    # --- the messages every registry says the same way ------------------------------------------

    def not_found(self, name: str, known: list[str], **details: Any) -> NotFound:
        """`model 'x' not found; known models: a, b`."""
        return NotFound(
            f"{self.kind} {name!r} not found; known {plural(self.kind)}: {', '.join(known) or 'none'}",
            details={self.kind: name, "known": known, **details},
        )

    def no_versions(self, name: str, **details: Any) -> NotFound:
        """`prompt 'x' has no versions yet`."""
        return NotFound(f"{self.kind} {name!r} has no versions yet", details={self.kind: name, **details})

    def no_version(self, name: str, number: int, **details: Any) -> NotFound:
        """`prompt 'x' has no version 9`."""
        return NotFound(
            f"{self.kind} {name!r} has no version {number}", details={self.kind: name, "version": number, **details}
        )

    def no_label(self, name: str, label: str, known: list[str], **details: Any) -> NotFound:
        """`model 'x' has no alias 'canary'; its aliases: production (and `latest`)`."""
        return NotFound(
            f"{self.kind} {name!r} has no {self.word} {label!r}; its {plural(self.word)}: {', '.join(known) or 'none'}"
            " (and `latest`)",
            details={self.kind: name, self.word: label, "known": known, **details},
        )

    # --- entities ---------------------------------------------------------------------------------

    def _column(self, table: type[Any], column: str) -> Any:
        return getattr(table, column)

    def get(self, s: Session, name: str, *, lock: bool = False) -> E | None:
        """The entity named `name` (archived or not), or None; `lock` holds its row until the transaction ends."""
        q = select(self.entity).where(self._column(self.entity, "name") == name)
        return s.scalar(q.with_for_update() if lock else q)

    def is_archived(self, entity: E) -> bool:
        """Whether the entity is archived (hidden from listings and lookups by default)."""
        return self.archived_column is not None and getattr(entity, self.archived_column) is not None

    def visible(self, entity: E, projects: Scope) -> bool:
        """Whether an entity is in `projects` (None: every project; a project set includes `None` for the
        global entities when they are visible)."""
        if projects is None or self.project_column is None:
            return True
        return getattr(entity, self.project_column) in projects

    def in_scope(self, q: Select[Any], projects: Scope) -> Select[Any]:
        """`q` restricted to the entities in `projects`."""
        if projects is None or self.project_column is None:
            return q
        column = self._column(self.entity, self.project_column)
        owned = [p for p in projects if p is not None]
        conds = [column.in_(owned)] if owned else []
        if None in projects:
            conds.append(column.is_(None))
        return q.where(or_(*conds) if conds else false())

    def find(
        self,
        s: Session,
        name: str,
        *,
        include_archived: bool = False,
        lock: bool = False,
        projects: Scope = None,
    ) -> E:
        """The entity named `name`, or `NotFound` listing the known (unarchived) names. With `projects`, an
        entity outside them is not found either, and only their names are listed: another project's names
        are its own."""
        found = self.get(s, name, lock=lock)
        if found is None or (self.is_archived(found) and not include_archived) or not self.visible(found, projects):
            column = self._column(self.entity, "name")
            q = select(column).order_by(column).limit(KNOWN_LISTED)
            if self.archived_column is not None:
                q = q.where(self._column(self.entity, self.archived_column).is_(None))
            raise self.not_found(name, list(s.scalars(self.in_scope(q, projects))))
        return found

    # --- versions ---------------------------------------------------------------------------------

    def _versions(self, entity: E) -> Select[V]:
        return select(self.version).where(self._column(self.version, self.entity_fk) == _id(entity))

    def _number(self) -> Any:
        return self._column(self.version, "version")

    def latest(self, s: Session, entity: E) -> V | None:
        """The newest version, or None before the first."""
        return s.scalar(self._versions(entity).order_by(self._number().desc()).limit(1))

    def latest_number(self, s: Session, entity: E) -> int:
        """The newest version's number (0 before the first)."""
        fk = self._column(self.version, self.entity_fk)
        return int(s.scalar(select(func.max(self._number())).where(fk == _id(entity))) or 0)

    def versions(self, s: Session, entity: E) -> list[V]:
        """Every version, newest first."""
        return list(s.scalars(self._versions(entity).order_by(self._number().desc())))

    def by_number(self, s: Session, entity: E, number: int) -> V | None:
        """Version `number`, or None."""
        return s.scalar(self._versions(entity).where(self._number() == number))

    def by_id(self, s: Session, version_id: str) -> V | None:
        """A version of any entity by its id, or None."""
        return s.get(self.version, version_id)

    def owner(self, s: Session, version: V) -> E:
        """The entity a version belongs to."""
        found = s.get(self.entity, getattr(version, self.entity_fk))
        assert found is not None  # a foreign key
        return found

    def by_hash(self, s: Session, entity: E, digest: str, *, latest_only: bool = False) -> V | None:
        """The newest version whose content hashes to `digest`, or None. With `latest_only`, only the newest
        version counts, for registries whose history is linear (going back to older content is a new version)."""
        if latest_only:
            newest = self.latest(s, entity)
            return newest if newest is not None and getattr(newest, self.hash_column) == digest else None
        q = self._versions(entity).where(self._column(self.version, self.hash_column) == digest)
        return s.scalar(q.order_by(self._number().desc()).limit(1))

    def resolve(self, s: Session, entity: E, ref: str | int | None = None, *, foreign: str | None = None) -> V:
        """The version `ref` names: None or `latest` the newest, `3` or `v3` a number, a version id one of this
        entity's versions (`foreign` says why another's is refused), anything else a label. `NotFound` says
        what is missing; a label that is missing lists the entity's labels."""
        tag = LATEST if ref is None else str(ref).strip()
        if tag == LATEST:
            newest = self.latest(s, entity)
            if newest is None:
                raise self.no_versions(_name(entity))
            return newest
        number = version_number(tag)
        if number is not None:
            found = self.by_number(s, entity, number)
            if found is None:
                raise self.no_version(_name(entity), number)
            return found
        if tag.startswith(f"{self.version_prefix}_"):
            return self._own_version(s, entity, tag, foreign)
        label = self._label_row(s, entity, tag)
        if label is None:
            raise self.no_label(_name(entity), tag, list(self.labels(s, entity)))
        found = self.by_id(s, label.version_id)
        assert found is not None  # a foreign key
        return found

    def _own_version(self, s: Session, entity: E, version_id: str, foreign: str | None) -> V:
        found = self.by_id(s, version_id)
        if found is None:
            raise NotFound(f"{self.kind} version {version_id!r} not found", details={"version": version_id})
        if getattr(found, self.entity_fk) != _id(entity):
            other = _name(self.owner(s, found))
            why = foreign or f"a reference to {self.kind} {_name(entity)!r} names one of its own versions"
            raise InvalidInput(
                f"version {version_id} belongs to {self.kind} {other!r}, not {_name(entity)!r}; {why}",
                details={"field": "version"},
            )
        return found

    def lock(self, s: Session, entity: E) -> None:
        """Hold the entity's row until the transaction ends, so writers to one entity take turns (PostgreSQL;
        on SQLite a write session holds the database's write lock from its start)."""
        key = self._column(self.entity, "id")
        s.execute(select(key).where(key == _id(entity)).with_for_update())

    def push(
        self,
        s: Session,
        entity: E,
        *,
        content_hash: str,
        same: Literal["any", "latest"] | None = "any",
        version_id: str | None = None,
        **columns: Any,
    ) -> Pushed[V]:
        """Add the next version (the highest number plus one) with `columns`, unless a version with this content
        hash is there already (`same`: any version, only the latest for registries whose history is linear, or
        None to always add one): then that version, `created` False. `version_id` gives the new version its id
        (datasets derive it from the content), else a new sortable one. Takes the entity's lock first, so
        concurrent pushes neither take one number twice nor add the same content twice."""
        self.lock(s, entity)
        if same is not None:
            found = self.by_hash(s, entity, content_hash, latest_only=same == "latest")
            if found is not None:
                return Pushed(found, created=False)
        row = cast(Any, self.version)(
            id=version_id or new_id(self.version_prefix),
            version=self.latest_number(s, entity) + 1,
            **{self.entity_fk: _id(entity), self.hash_column: content_hash},
            **columns,
        )
        s.add(row)
        s.flush()  # a number taken meanwhile fails here, with `IntegrityError`: `write` retries
        return Pushed(cast(V, row), created=True)

    # --- labels -----------------------------------------------------------------------------------

    def _label_where(self, entity: E, label: str | None = None) -> list[Any]:
        where = [self._column(self.label, self.entity_fk) == _id(entity)]
        if label is not None:
            where.append(self._column(self.label, self.label_column) == label)
        return where

    def _label_row(self, s: Session, entity: E, label: str, *, lock: bool = False) -> Any:
        q = select(self.label).where(*self._label_where(entity, label))
        return s.scalar(q.with_for_update() if lock else q)

    def labels(self, s: Session, entity: E) -> dict[str, str]:
        """Label → the id of the version it points at, by label."""
        column = self._column(self.label, self.label_column)
        q = select(column, self._column(self.label, "version_id")).where(*self._label_where(entity)).order_by(column)
        return {label: version_id for label, version_id in s.execute(q)}

    def label_numbers(self, s: Session, entity: E) -> dict[str, int]:
        """Label → the number of the version it points at, by label."""
        column = self._column(self.label, self.label_column)
        q = (
            select(column, self._number())
            .join(self.version, self._column(self.version, "id") == self._column(self.label, "version_id"))
            .where(*self._label_where(entity))
            .order_by(column)
        )
        return {label: number for label, number in s.execute(q)}

    def labels_of(self, s: Session, entity: E, version: V) -> list[str]:
        """The labels pointing at `version`, sorted."""
        column = self._column(self.label, self.label_column)
        where = [*self._label_where(entity), self._column(self.label, "version_id") == _id(version)]
        return list(s.scalars(select(column).where(*where).order_by(column)))

    def set_label(self, s: Session, entity: E, label: str, target: str | int, actor: str) -> Moved[V]:
        """Point `label` at the version `target` names (a number, `latest`, another label, a version id of this
        entity) and record the move. The label's row is locked before it is read, so concurrent moves take
        turns and each history row starts where the previous move ended; two first-time creations of the
        label collide on its key (`IntegrityError`, which `write` retries)."""
        self.check_label(label)
        version = self.resolve(
            s, entity, target, foreign=f"a {self.word} can only point at a version of its own {self.kind}"
        )
        current = self._label_row(s, entity, label, lock=True)
        previous: str | None = current.version_id if current is not None else None
        now = utcnow()
        if current is None:
            key = {self.entity_fk: _id(entity), self.label_column: label}
            s.add(self.label(**key, version_id=_id(version), updated_by=actor, updated_at=now))
            s.flush()
        else:
            current.version_id = _id(version)
            current.updated_by = actor
            current.updated_at = now
        self._record(s, entity, label, previous, _id(version), actor, now)
        return Moved(version, previous)

    def remove_label(self, s: Session, entity: E, label: str, actor: str) -> str:
        """Delete a label, recording the removal in its history; returns the id of the version it pointed at."""
        current = self._label_row(s, entity, label, lock=True)
        if current is None:
            known = list(self.labels(s, entity))
            listed = ", ".join(known) or "none"
            raise NotFound(
                f"{self.kind} {_name(entity)!r} has no {self.word} {label!r}; its {plural(self.word)}: {listed}",
                details={self.kind: _name(entity), self.word: label, "known": known},
            )
        previous: str = current.version_id
        self._record(s, entity, label, previous, None, actor, utcnow())
        s.delete(current)
        s.flush()
        return previous

    def _record(
        self, s: Session, entity: E, label: str, before: str | None, after: str | None, actor: str, at: datetime
    ) -> None:
        key = {self.entity_fk: _id(entity), self.label_column: label}
        s.add(
            self.move(
                id=new_id(self.move_prefix), **key, from_version_id=before, to_version_id=after, actor=actor, at=at
            )
        )
        s.flush()

    def history(self, s: Session, entity: E) -> list[Move]:
        """Every move of the entity's labels, newest first, with version numbers."""
        numbers = {
            version_id: number
            for version_id, number in s.execute(
                select(self._column(self.version, "id"), self._number()).where(
                    self._column(self.version, self.entity_fk) == _id(entity)
                )
            )
        }
        fk = self._column(self.move, self.entity_fk)
        rows = s.scalars(select(self.move).where(fk == _id(entity)).order_by(self._column(self.move, "id").desc()))
        return [
            Move(
                label=getattr(m, self.label_column),
                from_version=numbers.get(m.from_version_id or ""),
                to_version=numbers.get(m.to_version_id or ""),
                actor=m.actor,
                at=m.at,
            )
            for m in rows
        ]

    # --- transactions -----------------------------------------------------------------------------

    def write(self, db: Database, work: Callable[[Session], T], *, conflict: str, attempts: int = ATTEMPTS) -> T:
        """Run `work` in one transaction. When it loses a race on a unique key (the next version number, the
        first creation of a label or of the entity), run it again in a fresh transaction, on top of the
        winner; after `attempts` lost races, `Conflict(conflict)`."""
        for attempt in range(attempts):
            try:
                with db.session() as s:
                    return work(s)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise Conflict(conflict) from None
        raise AssertionError("unreachable")
