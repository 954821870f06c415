"""`podium jobs …`: submit, list and follow long work with a progress bar."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from podium.core.client import Client
from podium.core.console import console, err_console, print_json, print_record, print_table

jobs_app = typer.Typer(help="Background jobs.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
FINAL = ("succeeded", "failed", "cancelled")


def follow(client: Client, job_id: str, *, quiet: bool = False) -> dict[str, Any]:
    """Poll a job until it ends, drawing a Rich progress bar; returns the final job."""
    job: dict[str, Any] = client.get(f"/api/jobs/{job_id}", log_tail=0)
    if quiet:
        while job["status"] not in FINAL:
            time.sleep(0.5)
            job = client.get(f"/api/jobs/{job_id}", log_tail=0)
        return job
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{job['kind']} {job_id}", total=1.0, message=job["message"])
        while True:
            bar.update(task, completed=job["progress"], message=f"{job['status']}: {job['message']}")
            if job["status"] in FINAL:
                break
            time.sleep(0.5)
            job = client.get(f"/api/jobs/{job_id}", log_tail=0)
    return job


def finish(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(job)
    else:
        print_record(job, ["id", "kind", "status", "message", "error", "result"])
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("ls")
def jobs_ls(
    status: str | None = typer.Option(None, help="queued, running, succeeded, failed or cancelled."),
    kind: str | None = typer.Option(None),
    limit: int = typer.Option(50),
    as_json: bool = JSON,
) -> None:
    """List jobs, newest first."""
    with Client() as c:
        page = c.get("/api/jobs", status=status, kind=kind, limit=limit)
    if as_json:
        print_json(page)
    else:
        print_table(page["items"], ["id", "kind", "status", "progress", "message", "created_by", "created_at"])


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    follow_: bool = typer.Option(False, "--follow", "-f", help="Wait for the job to end, with a progress bar."),
    as_json: bool = JSON,
) -> None:
    """Show a job, its result and its log."""
    with Client() as c:
        if follow_:
            follow(c, job_id, quiet=as_json)
        job = c.get(f"/api/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    print_record(job, ["id", "kind", "status", "progress", "message", "error", "result", "created_by", "created_at"])
    if job.get("logs"):
        console.print("[bold]log[/bold]:")
        for line in job["logs"]:
            console.print(f"  {line}", markup=False)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, as_json: bool = JSON) -> None:
    """Cancel a queued or running job."""
    with Client() as c:
        job = c.post(f"/api/jobs/{job_id}/cancel")
    if as_json:
        print_json(job)
    else:
        console.print(f"Cancellation requested for {job_id} (status {job['status']}).")


@jobs_app.command("kinds")
def jobs_kinds(as_json: bool = JSON) -> None:
    """List the job kinds this server runs."""
    with Client() as c:
        kinds = c.get("/api/jobs/kinds")
    if as_json:
        print_json(kinds)
    else:
        print_table(kinds, ["name", "role", "description"])
