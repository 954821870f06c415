"""The versioned-registry kernel on a table set of its own (datasets with tags), on SQLite and PostgreSQL:
references, lookups and their messages, numbering, content lookup, tag moves with history, and writers
racing for the next version number and for one tag's moves.

The tables derive from their own declarative base, so they stay out of Podium's metadata (and migrations);
they use the kernel's configurable columns (`dataset_id`, `tag`, `digest`, `archived_at`), as a new domain's
would.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from podium.core.db import Database, UTCDateTime, forget_database, utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.ids import new_id
from podium.core.registry import ATTEMPTS, Registry, version_number


class _Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Dataset(_Base):
    __tablename__ = "t_datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


class DatasetVersion(_Base):
    __tablename__ = "t_dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("t_datasets.id"))
    version: Mapped[int] = mapped_column()
    digest: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)


class DatasetTag(_Base):
    __tablename__ = "t_dataset_tags"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("t_datasets.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(60), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("t_dataset_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[datetime] = mapped_column()


class DatasetTagMove(_Base):
    __tablename__ = "t_dataset_tag_moves"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("t_datasets.id"))
    tag: Mapped[str] = mapped_column(String(60))
    from_version_id: Mapped[str | None] = mapped_column(String(40))
    to_version_id: Mapped[str | None] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(140))
    at: Mapped[datetime] = mapped_column()


DATASETS: Registry[Dataset, DatasetVersion] = Registry(
    kind="dataset",
    entity=Dataset,
    version=DatasetVersion,
    label=DatasetTag,
    move=DatasetTagMove,
    entity_fk="dataset_id",
    label_column="tag",
    word="tag",
    hash_column="digest",
    version_prefix="dsv",
    move_prefix="dtm",
    archived_column="archived_at",
)


@pytest.fixture
def db(backend_url: str) -> Iterator[Database]:
    database = Database(backend_url)
    _Base.metadata.create_all(database.engine)
    yield database
    database.dispose()
    forget_database(backend_url)


def push(db: Database, name: str, body: str) -> tuple[DatasetVersion, bool]:
    """What a domain's push does with the kernel: the entity made on first use, content already there found
    (any version with the same hash), else the next version; the whole in one retried transaction."""
    name = DATASETS.check_name(name)
    digest = hashlib.sha256(body.encode()).hexdigest()

    def once(s: Session) -> tuple[DatasetVersion, bool]:
        d = DATASETS.get(s, name)
        if d is None:
            d = Dataset(id=new_id("dst"), name=name)
            s.add(d)
            s.flush()
        pushed = DATASETS.push(s, d, content_hash=digest, body=body)
        return pushed.version, pushed.created

    return DATASETS.write(db, once, conflict=f"dataset {name!r} changed concurrently; try again")


def tag(db: Database, name: str, label: str, target: str | int, actor: str = "alice") -> DatasetVersion:
    def once(s: Session) -> DatasetVersion:
        return DATASETS.set_label(s, DATASETS.find(s, name), label, target, actor).version

    return DATASETS.write(db, once, conflict=f"tag {label!r} of {name!r} is being moved concurrently")


def resolve(db: Database, ref: str, **kwargs: Any) -> DatasetVersion:
    parsed = DATASETS.parse_ref(ref)
    with db.read_session() as s:
        return DATASETS.resolve(s, DATASETS.find(s, parsed.name, **kwargs), parsed.tag)


# --- pure parts ------------------------------------------------------------------------------------


def test_references_parse_and_bad_ones_say_the_forms() -> None:
    cases = {
        "reviews": ("reviews", None, None, True),
        " reviews@3 ": ("reviews", "3", 3, False),
        "reviews@v12": ("reviews", "v12", 12, False),
        "reviews@golden": ("reviews", "golden", None, False),
        "reviews@latest": ("reviews", "latest", None, True),
    }
    for text, (name, tag_, number, latest) in cases.items():
        ref = DATASETS.parse_ref(text)
        assert (ref.name, ref.tag, ref.number, ref.is_latest) == (name, tag_, number, latest), text
        assert str(ref) == text.strip()
    for bad in ("", "@3", "reviews@", "a@b@c", "my reviews", "reviews@ 3"):
        with pytest.raises(InvalidInput, match="is not `name`, `name@version` or `name@tag`"):
            DATASETS.parse_ref(bad)
    assert [version_number(t) for t in ("7", "v7", "v", "vv7", "latest", "٣", "golden")] == [
        7,
        7,
        None,
        None,
        None,
        None,
        None,
    ]


def test_name_and_tag_rules() -> None:
    assert DATASETS.check_name("  reviews-2024.v1 ") == "reviews-2024.v1"
    for bad in ("Reviews", "-x", "a@b", "", "x" * 121, "a b"):
        with pytest.raises(InvalidInput, match=r"dataset name .* is not valid") as err:
            DATASETS.check_name(bad)
        assert err.value.details == {"field": "name"}
    assert DATASETS.check_label("golden-2") == "golden-2"
    for bad in ("latest", "v3", "Golden", "2golden", "a.b", "x" * 61):
        with pytest.raises(InvalidInput, match=r"tag .* is not valid") as err:
            DATASETS.check_label(bad)
        assert err.value.details == {"field": "tag"}


# --- on a database ---------------------------------------------------------------------------------


def test_versions_number_up_and_content_finds_its_version(db: Database) -> None:
    v1, new1 = push(db, "reviews", "one")
    v2, new2 = push(db, "reviews", "two")
    again, new3 = push(db, "reviews", "one")
    assert (v1.version, v2.version, new1, new2) == (1, 2, True, True)
    assert again.id == v1.id and new3 is False
    assert v1.id.startswith("dsv_")
    other, _ = push(db, "other", "one")  # the same content in another dataset is its own version
    assert other.version == 1 and other.id != v1.id
    with db.read_session() as s:
        d = DATASETS.find(s, "reviews")
        assert DATASETS.latest_number(s, d) == 2
        assert [v.version for v in DATASETS.versions(s, d)] == [2, 1]
        one = hashlib.sha256(b"one").hexdigest()
        assert DATASETS.by_hash(s, d, one) is not None
        assert DATASETS.by_hash(s, d, one, latest_only=True) is None  # linear registries: v1 is not the latest
        assert DATASETS.owner(s, v2).name == "reviews"
    with db.session() as s:  # a linear registry compares with the latest only; None always adds a version
        d = DATASETS.find(s, "reviews")
        assert DATASETS.push(s, d, content_hash=v2.digest, same="latest", body="two").created is False
        linear = DATASETS.push(s, d, content_hash=v1.digest, same="latest", body="one")
        assert (linear.created, linear.version.version) == (True, 3)
        always = DATASETS.push(s, d, content_hash=v1.digest, same=None, body="one")
        assert (always.created, always.version.version) == (True, 4)


def test_references_resolve_and_missing_things_are_named(db: Database) -> None:
    push(db, "reviews", "one")
    v2, _ = push(db, "reviews", "two")
    other, _ = push(db, "other", "x")
    tag(db, "reviews", "golden", 1)
    assert resolve(db, "reviews").version == 2
    assert resolve(db, "reviews@latest").version == 2
    assert resolve(db, "reviews@1").version == 1
    assert resolve(db, "reviews@v2").id == v2.id
    assert resolve(db, "reviews@golden").version == 1
    assert resolve(db, f"reviews@{v2.id}").id == v2.id
    with pytest.raises(NotFound, match=r"dataset 'ghost' not found; known datasets: other, reviews") as nf:
        resolve(db, "ghost")
    assert nf.value.details == {"dataset": "ghost", "known": ["other", "reviews"]}
    with pytest.raises(NotFound, match="dataset 'reviews' has no version 9"):
        resolve(db, "reviews@9")
    with pytest.raises(NotFound, match=r"has no tag 'canary'; its tags: golden \(and `latest`\)") as nf:
        resolve(db, "reviews@canary")
    assert nf.value.details == {"dataset": "reviews", "tag": "canary", "known": ["golden"]}
    with pytest.raises(InvalidInput, match=f"version {other.id} belongs to dataset 'other', not 'reviews'"):
        resolve(db, f"reviews@{other.id}")
    with pytest.raises(NotFound, match="dataset version 'dsv_nope' not found"):
        resolve(db, "reviews@dsv_nope")
    with db.session() as s:
        s.add(Dataset(id=new_id("dst"), name="empty"))
    with pytest.raises(NotFound, match="dataset 'empty' has no versions yet"):
        resolve(db, "empty")


def test_archived_entities_are_hidden_unless_asked_for(db: Database) -> None:
    push(db, "kept", "a")
    push(db, "gone", "b")
    with db.session() as s:
        found = DATASETS.find(s, "gone")
        found.archived_at = utcnow()
    with pytest.raises(NotFound, match=r"known datasets: kept$"):
        resolve(db, "gone")
    assert resolve(db, "gone", include_archived=True).version == 1
    with db.read_session() as s:
        found = DATASETS.get(s, "gone")
        assert found is not None and DATASETS.is_archived(found)


def test_tags_move_with_history_and_are_removed(db: Database) -> None:
    v1, _ = push(db, "reviews", "one")
    v2, _ = push(db, "reviews", "two")
    assert tag(db, "reviews", "golden", 1).id == v1.id
    assert tag(db, "reviews", "golden", "v2", actor="bob").id == v2.id
    assert tag(db, "reviews", "staging", "golden").id == v2.id  # a tag can point where another points
    assert tag(db, "reviews", "first", v1.id).id == v1.id
    with pytest.raises(InvalidInput, match="'latest' is reserved"):
        tag(db, "reviews", "latest", 1)
    with pytest.raises(NotFound, match="has no version 7"):
        tag(db, "reviews", "golden", 7)
    other, _ = push(db, "other", "x")
    with pytest.raises(InvalidInput, match="a tag can only point at a version of its own dataset"):
        tag(db, "reviews", "golden", other.id)
    with db.session() as s:
        d = DATASETS.find(s, "reviews")
        assert DATASETS.labels(s, d) == {"first": v1.id, "golden": v2.id, "staging": v2.id}
        assert DATASETS.label_numbers(s, d) == {"first": 1, "golden": 2, "staging": 2}
        assert DATASETS.labels_of(s, d, v2) == ["golden", "staging"]
        assert DATASETS.remove_label(s, d, "staging", "carol") == v2.id
        with pytest.raises(NotFound, match=r"has no tag 'canary'; its tags: first, golden$"):
            DATASETS.remove_label(s, d, "canary", "carol")
    with db.read_session() as s:
        d = DATASETS.find(s, "reviews")
        moves = [(m.label, m.from_version, m.to_version, m.actor) for m in DATASETS.history(s, d)]
        assert moves == [
            ("staging", 2, None, "carol"),
            ("first", None, 1, "alice"),
            ("staging", None, 2, "alice"),
            ("golden", 1, 2, "bob"),
            ("golden", None, 1, "alice"),
        ]
        assert all(m.at.tzinfo is not None for m in DATASETS.history(s, d))
        assert DATASETS.label_numbers(s, d) == {"first": 1, "golden": 2}


def test_writers_racing_for_the_next_number_each_get_one(db: Database) -> None:
    n = 8
    start = threading.Barrier(n)
    made: list[int] = []
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            start.wait()
            v, created = push(db, "busy", f"content {i}")
            assert created
            made.append(v.version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(made) == list(range(1, n + 1))  # no number taken twice, none skipped
    with db.read_session() as s:
        d = DATASETS.find(s, "busy")
        assert sorted(v.body for v in DATASETS.versions(s, d)) == sorted(f"content {i}" for i in range(n))


def test_writers_pushing_the_same_new_content_make_one_version(db: Database) -> None:
    n = 6
    start = threading.Barrier(n)
    ids: list[str] = []

    def writer() -> None:
        start.wait()
        ids.append(push(db, "same", "identical")[0].id)

    threads = [threading.Thread(target=writer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == n and len(set(ids)) == 1
    with db.read_session() as s:
        assert len(DATASETS.versions(s, DATASETS.find(s, "same"))) == 1


def test_concurrent_tag_moves_are_all_recorded_as_a_chain(db: Database) -> None:
    push(db, "hot", "one")
    push(db, "hot", "two")
    n = 10
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def mover(i: int) -> None:
        try:
            start.wait()
            tag(db, "hot", "prod", 1 + i % 2, actor=f"mover-{i}")  # the first moves also race to create it
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read_session() as s:
        d = DATASETS.find(s, "hot")
        chain = list(reversed(DATASETS.history(s, d)))
        now = DATASETS.label_numbers(s, d)["prod"]
    assert len(chain) == n and sorted(m.actor for m in chain) == sorted(f"mover-{i}" for i in range(n))
    assert chain[0].from_version is None  # exactly one move created the tag
    assert all(chain[i].from_version == chain[i - 1].to_version for i in range(1, n))
    assert chain[-1].to_version == now


def test_a_race_lost_every_time_ends_in_a_conflict(db: Database) -> None:
    push(db, "taken", "x")
    calls: list[int] = []

    def collide(s: Session) -> None:  # inserts a name that exists: the unique key refuses it every time
        calls.append(1)
        s.add(Dataset(id=new_id("dst"), name="taken"))
        s.flush()

    with pytest.raises(Conflict, match="try again later"):
        DATASETS.write(db, collide, conflict="try again later")
    assert len(calls) == ATTEMPTS
    with db.read_session() as s:  # every attempt was rolled back
        assert len(s.scalars(select(Dataset).where(Dataset.name == "taken")).all()) == 1
    with pytest.raises(IntegrityError), db.session() as s:  # outside `write`, the refusal is the database's
        collide(s)
