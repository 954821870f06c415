"""The `podium` command: each domain mounts its Typer sub-app here."""

from __future__ import annotations

import sys

import typer

from podium.artifacts.cli import artifacts_app
from podium.auth.cli import audit_app, keys_app, projects_app, users_app, whoami
from podium.core.cli import config_app, db_app
from podium.core.errors import PodiumError
from podium.gateway.cli import limits_app, routes_app
from podium.jobs.cli import jobs_app
from podium.models.cli import models_app
from podium.prompts.cli import prompts_app
from podium.server.cli import serve
from podium.tracing.cli import traces_app
from podium.tracing.scores.cli import scores_app

app = typer.Typer(
    help="Podium: a self-hosted LLMOps platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve)
app.command("whoami")(whoami)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(projects_app, name="projects")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(jobs_app, name="jobs")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(models_app, name="models")
app.add_typer(routes_app, name="routes")
app.add_typer(limits_app, name="limits")
app.add_typer(traces_app, name="traces")
app.add_typer(prompts_app, name="prompts")
app.add_typer(scores_app, name="scores")


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
