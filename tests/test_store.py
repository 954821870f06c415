"""The metadata store on SQLite and PostgreSQL: migrations, schema parity, refusal of unknown revisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from podium.auth.store import Project
from podium.core.db import get_database
from podium.core.errors import DatabaseError
from podium.core.migrate import downgrade, schema_state, upgrade
from podium.core.schema import metadata

from .conftest import make_settings, run_cli


def test_upgrade_downgrade_upgrade(backend_url: str) -> None:
    db = get_database(backend_url)
    assert schema_state(db).status == "fresh"
    state = upgrade(db)
    assert state.status == "current"
    tables = set(sa.inspect(db.engine).get_table_names())
    assert {"projects", "users", "api_keys", "audit_log", "jobs", "job_logs", "alembic_version"} <= tables
    state = downgrade(db, "base")
    assert state.current is None
    assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
    assert upgrade(db).status == "current"


def test_models_match_migrations(backend_url: str) -> None:
    """Autogenerate finds nothing to do: every table change comes with its migration."""
    db = get_database(backend_url)
    upgrade(db)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata())
    assert diff == []


def test_times_round_trip_as_aware_utc(backend_url: str) -> None:
    db = get_database(backend_url)
    upgrade(db)
    local = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as s:
        s.add(Project(id="prj_x", name="x", description="", created_at=local))
    with db.session() as s:
        got = s.get(Project, "prj_x")
        assert got is not None
        assert got.created_at.tzinfo is not None
        assert got.created_at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    with db.session() as s, pytest.raises(sa.exc.StatementError, match="naive datetime"):
        s.add(Project(id="prj_y", name="y", description="", created_at=datetime(2026, 1, 1)))
        s.flush()


def test_database_newer_than_code_is_refused(backend_url: str, tmp_path: Path) -> None:
    db = get_database(backend_url)
    upgrade(db)
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    state = schema_state(db)
    assert state.status == "ahead"
    with pytest.raises(DatabaseError, match="newer than this Podium"):
        upgrade(db)
    result = run_cli(
        "serve", "--port", "1", env={"PODIUM_DATABASE_URL": backend_url, "PODIUM_HOME": str(tmp_path / "h")}
    )
    assert result.returncode == 1
    assert "newer than this Podium" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_commands(backend_url: str, tmp_path: Path) -> None:
    env = {"PODIUM_DATABASE_URL": backend_url, "PODIUM_HOME": str(tmp_path / "h")}
    cur = run_cli("db", "current", "--json", env=env)
    assert cur.returncode == 0, cur.stderr
    assert '"status": "fresh"' in cur.stdout
    up = run_cli("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    assert "(head)" in up.stdout
    cur = run_cli("db", "current", "--json", env=env)
    assert '"status": "current"' in cur.stdout
    if "@" in backend_url:
        assert ":***@" in cur.stdout


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://podium:topsecret@127.0.0.1:1/podium"
    result = run_cli("db", "current", env={"PODIUM_DATABASE_URL": url})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach database postgresql+psycopg://podium:***@127.0.0.1:1/podium" in lines[0]
    assert "topsecret" not in result.stderr


def test_invalid_database_url_is_one_line() -> None:
    result = run_cli("db", "current", env={"PODIUM_DATABASE_URL": "not a url"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: database URL 'not a url' is not a valid")


def test_sqlite_runs_in_wal_mode(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", db_url)
    db = get_database(settings.effective_database_url)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1


def test_new_sqlite_database_uses_16k_pages(tmp_path: Path) -> None:
    """Span rows of ~2 KB fill a 16 KB page seven times over; 4 KB pages would hold one and waste half."""
    db = get_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    with db.engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
        assert conn.execute(sa.text("PRAGMA page_size")).scalar() == 16384
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
