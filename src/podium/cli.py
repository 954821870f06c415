"""The `podium` command: `serve`, `config` and `db` from the platform itself, and every installed domain's
sub-commands (`podium models …`, `podium traces …`), found through its `Domain` declaration.

A domain's commands are imported only when they run (or when `--help` lists them), so `podium whoami`
does not import the trace pages or the model engine.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from podium.core.cli import config_app, db_app
from podium.core.errors import PodiumError
from podium.server.cli import serve

if TYPE_CHECKING:  # Typer vendors its own Click; its command and context types are these
    from typer._click.core import Command, Context


@cache
def _domain_commands() -> dict[str, tuple[str, bool]]:
    """Command name → (reference, is a whole Typer app), from every domain's declaration."""
    from podium.core.domains import domains

    found: dict[str, tuple[str, bool]] = {}
    for d in domains():
        for name, ref in d.cli:
            found[name] = (ref, True)
        for name, ref in d.commands:
            found[name] = (ref, False)
    return found


def _click_command(name: str, ref: str, is_app: bool) -> Command:
    from podium.core.domains import load

    target: Any = load(ref)
    if is_app:
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer(add_completion=False)
    single.command(name)(target)
    return typer.main.get_command(single)


class DomainGroup(TyperGroup):
    """The top-level group: its own commands, then each domain's, loaded on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*super().list_commands(ctx), *sorted(_domain_commands())]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        found = _domain_commands().get(cmd_name)
        if found is None:
            return None
        return _click_command(cmd_name, *found)


app = typer.Typer(
    help="Podium: a self-hosted LLMOps platform.",
    cls=DomainGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")


def main() -> None:
    """Entry point: run the app; a `PodiumError` becomes one line on stderr and exit code 1."""
    try:
        app()
    except PodiumError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
