"""The metadata store: one SQLAlchemy engine per process, SQLite (WAL) or PostgreSQL.

Tables of every domain derive from `Base`, so Alembic sees one metadata. Times are stored as
timezone-aware UTC; JSON columns use the database's JSON type.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from podium.core.errors import DatabaseError


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Podium table."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


def normalise_url(url: str) -> URL:
    """Parse a database URL, choosing psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"database URL {url!r} is not a valid SQLAlchemy URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL with its password hidden, safe to print."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<invalid url>"
    return parsed.render_as_string(hide_password=True)


# Traces and spans carry ~1-2 KB of input and output per row: with SQLite's default 4 KB pages only one such
# row fits a page and half of every page is empty, which doubles the I/O of ingest. 16 KB pages hold seven.
SQLITE_PAGE_SIZE = 16384


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # SQLAlchemy, not the driver, starts transactions (see `_sqlite_begin`)
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # takes effect only while the file is still empty
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    """Writes take SQLite's write lock when they begin (IMMEDIATE), so a read-then-write transaction can
    neither act on a stale read nor fail half-way with "database is locked"; read-only sessions defer."""
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout, its folder is created."""
    parsed = normalise_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            from pathlib import Path

            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise DatabaseError(f"cannot use database {mask_url(parsed)}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def check_connection(engine: Engine) -> None:
    """Raise `DatabaseError` naming the (masked) URL if the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(f"cannot reach database {mask_url(engine.url)}: {reason}") from None


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.backend = self.engine.url.get_backend_name()
        reader = self.engine.execution_options(sqlite_begin="DEFERRED") if self.backend == "sqlite" else self.engine
        self.read_sessions = sessionmaker(reader, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction, committed on success, rolled back on error; on SQLite it holds the
        write lock from the start, so read-modify-write logic is serialised."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads only: never blocks or waits on writers."""
        with self.read_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


_databases: dict[str, Database] = {}
_lock = threading.Lock()


def get_database(url: str) -> Database:
    """The process-wide `Database` for a URL."""
    with _lock:
        db = _databases.get(url)
        if db is None:
            db = _databases[url] = Database(url)
        return db


def forget_database(url: str) -> None:
    """Dispose and drop the cached `Database` for a URL (tests, shutdown)."""
    with _lock:
        db = _databases.pop(url, None)
    if db is not None:
        db.dispose()
