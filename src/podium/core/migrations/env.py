"""Alembic environment: migrates Podium's metadata on the engine handed in by `podium.core.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, engine_from_config, pool

from podium.core.schema import metadata

config = context.config
target_metadata = metadata()


def run() -> None:
    """Run migrations online on the given engine (or one built from the URL)."""
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        engine = engine_from_config(
            config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.", poolclass=pool.NullPool
        )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `podium db upgrade`")
run()
