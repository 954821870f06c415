"""`podium artifacts …`: the content-addressed artifact store."""

from __future__ import annotations

import typer

from podium.core.client import Client
from podium.core.console import console, print_json
from podium.jobs.cli import JSON, finish, follow

artifacts_app = typer.Typer(help="The artifact store.", no_args_is_help=True)


@artifacts_app.command("verify")
def artifacts_verify(
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job to its end."),
    as_json: bool = JSON,
) -> None:
    """Re-hash every stored artifact (a background job); exits 1 if any is corrupt."""
    with Client() as c:
        job = c.post("/api/jobs", {"kind": "artifacts.verify"})
        if not wait:
            print_json(job) if as_json else console.print(f"Queued {job['id']}")
            return
        job = follow(c, job["id"], quiet=as_json)
    finish(job, as_json)
    if job.get("result", {}).get("corrupt"):
        raise typer.Exit(1)
