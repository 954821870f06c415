"""`podium config …` and `podium db …`: commands that work without a server."""

from __future__ import annotations

import typer

from podium.core.config import describe_settings, load_settings
from podium.core.console import console, print_json, print_table

config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Migrate and inspect the metadata database.", no_args_is_help=True)


def _masked(key: str, value: object, secret: bool) -> object:
    if secret:
        return "********"
    if key == "database_url" and isinstance(value, str):
        from podium.core.db import mask_url

        return mask_url(value)
    return value


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every setting, its value (secrets masked) and where it came from."""
    settings = load_settings()
    described = describe_settings(settings)
    rows = [
        {"key": key, "value": _masked(key, vs.value, vs.secret), "source": vs.source} for key, vs in described.items()
    ]
    if as_json:
        print_json({r["key"]: {"value": r["value"], "source": r["source"]} for r in rows})
    else:
        print_table(rows, ["key", "value", "source"])


def _db() -> object:
    from podium.core.db import get_database

    return get_database(load_settings().effective_database_url)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database to the code's head (or a given revision)."""
    from podium.core.db import Database, mask_url
    from podium.core.migrate import upgrade

    db = _db()
    assert isinstance(db, Database)
    state = upgrade(db, revision)
    console.print(f"{mask_url(db.engine.url)}: {state.describe}")


@db_app.command("current")
def db_current(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the database's migration revision against the code's head."""
    from podium.core.db import Database, mask_url
    from podium.core.migrate import schema_state

    db = _db()
    assert isinstance(db, Database)
    state = schema_state(db)
    if as_json:
        print_json(
            {
                "url": mask_url(db.engine.url),
                "current": state.current,
                "head": state.head,
                "status": state.status,
            }
        )
    else:
        console.print(f"{mask_url(db.engine.url)}: {state.describe}")


@db_app.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="Target revision, or `base` to drop every table."),
) -> None:
    """Migrate the database down (destructive: data in dropped tables is lost)."""
    from podium.core.db import Database, mask_url
    from podium.core.migrate import downgrade

    db = _db()
    assert isinstance(db, Database)
    state = downgrade(db, revision)
    console.print(f"{mask_url(db.engine.url)}: {state.describe}")
