"""Schema migrations with Alembic: inspect the database's revision, upgrade it, refuse the unknown."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from podium.core.db import Database, check_connection, mask_url
from podium.core.errors import DatabaseError

MIGRATIONS = Path(__file__).parent / "migrations"
logging.getLogger("alembic").setLevel(logging.WARNING)


def alembic_config(db: Database) -> Config:
    """An Alembic config pointing at Podium's migrations and this database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = db.engine
    return cfg


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against the code's migrations."""

    current: str | None
    head: str
    status: str  # fresh | current | behind | ahead

    @property
    def describe(self) -> str:
        """One line for humans."""
        cur = self.current or "none"
        return {
            "fresh": f"empty database (code head {self.head})",
            "current": f"at {cur} (head)",
            "behind": f"at {cur}, code head is {self.head}: run `podium db upgrade`",
            "ahead": f"at {cur}, which this version of Podium does not know",
        }[self.status]


def schema_state(db: Database) -> SchemaState:
    """Compare the database's Alembic revision with the code's head."""
    check_connection(db.engine)
    script = ScriptDirectory.from_config(alembic_config(db))
    head = script.get_current_head()
    assert head is not None
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        has_tables = bool(inspect(conn).get_table_names())
    if current is None:
        if has_tables and "projects" in inspect(db.engine).get_table_names():
            raise DatabaseError(
                f"database {mask_url(db.engine.url)} holds Podium tables but no migration revision;"
                " it was not created by `podium db upgrade`"
            )
        return SchemaState(None, head, "fresh")
    if current == head:
        return SchemaState(current, head, "current")
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        return SchemaState(current, head, "ahead")
    return SchemaState(current, head, "behind")


def upgrade(db: Database, revision: str = "head") -> SchemaState:
    """Migrate the database up to `revision`, refusing one newer than the code."""
    state = schema_state(db)
    if state.status == "ahead":
        raise newer_database_error(db, state)
    command.upgrade(alembic_config(db), revision)
    return schema_state(db)


def downgrade(db: Database, revision: str) -> SchemaState:
    """Migrate the database down to `revision` (`base` empties it)."""
    command.downgrade(alembic_config(db), revision)
    return schema_state(db)


def newer_database_error(db: Database, state: SchemaState) -> DatabaseError:
    """The error for a database written by newer code."""
    return DatabaseError(
        f"database {mask_url(db.engine.url)} is at revision {state.current}, newer than this Podium"
        f" (head {state.head}); upgrade Podium (`pip install -U podium`) or use another database"
    )
