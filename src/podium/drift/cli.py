"""`podium drift …`: run a drift report, list reports, show one, delete one."""

from __future__ import annotations

from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, print_json, print_record, print_table
from podium.core.durations import parse_time

drift_app = typer.Typer(
    help="Drift: compare a current window of traces with a reference window or a dataset version.",
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Print JSON.")
WHEN = "An ISO-8601 time or a duration ago (24h, 7d)."


def _when(value: str | None, field: str) -> str | None:
    return parse_time(value, field).isoformat() if value else None


def print_report(report: dict[str, Any]) -> None:
    """A report as a few lines per field: each test's score against its threshold and the words that moved."""
    verdict = "DRIFT" if report["drift"] else "no drift"
    console.print(
        f"{report['id']}: {verdict} · current {report['current_from']} → {report['current_to']}"
        f" vs {report['reference']}",
        markup=False,
    )
    for f in report["fields"]:
        head = f"{f['field']}: {f['reference_used']} reference and {f['current_used']} current texts"
        if f["status"] != "ok":
            console.print(f"{head}: {f['detail']}", markup=False)
            continue
        console.print(f"{head}{' (sampled)' if f['sampled'] else ''}: {'DRIFT' if f['drift'] else 'no drift'}")
        rows = [
            {
                "test": t["name"],
                "score": t["score"],
                "threshold": t["threshold"],
                "verdict": t["verdict"],
                "detail": t["detail"],
            }
            for t in f["tests"]
        ]
        print_table(rows, ["test", "score", "threshold", "verdict", "detail"])
        if f["words_up"]:
            console.print("  more often now: " + ", ".join(w["word"] for w in f["words_up"]), markup=False)
        if f["words_down"]:
            console.print("  less often now: " + ", ".join(w["word"] for w in f["words_down"]), markup=False)


@drift_app.command("run")
def drift_run(
    project: str | None = typer.Option(None, "--project", "-p", help="Project name or id (default: your key's)."),
    reference_from: str | None = typer.Option(None, "--reference-from", help=f"Reference window start. {WHEN}"),
    reference_to: str | None = typer.Option(None, "--reference-to", help=f"Reference window end. {WHEN}"),
    current_from: str = typer.Option("24h", "--current-from", help=f"Current window start. {WHEN}"),
    current_to: str | None = typer.Option(None, "--current-to", help=f"Current window end (default now). {WHEN}"),
    dataset: str | None = typer.Option(None, "--reference-dataset", help="A dataset version as the reference."),
    input_column: str | None = typer.Option(None, "--input-column", help="Its column compared with inputs."),
    output_column: str | None = typer.Option(None, "--output-column", help="Its column compared with outputs."),
    field: list[str] | None = typer.Option(None, "--field", help="input or output (repeat; default both)."),
    route: str | None = typer.Option(None, "--route", help="Only traces of this route."),
    model: str | None = typer.Option(None, "--model", help="Only traces of this model."),
    prompt_version: str | None = typer.Option(None, "--prompt-version", help="Only traces of this prompt version."),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Texts per side at most (default 2000)."),
    background: bool = typer.Option(False, "--background", help="Queue it as a job and print the job's id."),
    as_json: bool = JSON,
) -> None:
    """Compare the current window of a project's traces (inputs and outputs) with a reference window or a dataset
    version: embedding drift by a domain classifier, length, language, toxicity and sentiment by PSI."""
    body: dict[str, Any] = {
        "project": project,
        "current_from": _when(current_from, "current_from"),
        "current_to": _when(current_to or "0s", "current_to"),
        "reference_from": _when(reference_from, "reference_from"),
        "reference_to": _when(reference_to, "reference_to"),
        "reference_dataset": dataset,
        "reference_input_column": input_column,
        "reference_output_column": output_column,
        "fields": field or None,
        "route": route,
        "model": model,
        "prompt_version": prompt_version,
        "max_samples": max_samples,
    }
    body = {k: v for k, v in body.items() if v is not None}
    with Client(timeout=900) as c:
        if background:
            job = c.post("/api/drift/jobs", body)
            if as_json:
                print_json(job)
            else:
                console.print(f"Queued {job['id']} (follow it with: podium jobs show {job['id']})", markup=False)
            return
        report = c.post("/api/drift/reports", body)
    if as_json:
        print_json(report)
    else:
        print_report(report)


@drift_app.command("ls")
def drift_ls(
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project's reports."),
    limit: int = typer.Option(50, "--limit", help="How many (newest first)."),
    as_json: bool = JSON,
) -> None:
    """List the drift reports you see, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if project:
        params["project"] = project
    with Client() as c:
        rows = c.get("/api/drift/reports", **params)
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "drift", "score", "current_from", "current_to", "reference", "created_at"])


@drift_app.command("show")
def drift_show(
    report_id: str = typer.Argument(..., help="A report's id (drr_…), or `latest`."),
    project: str | None = typer.Option(None, "--project", "-p", help="With `latest`: the project."),
    as_json: bool = JSON,
) -> None:
    """One report: each field's tests and the words that changed most."""
    with Client() as c:
        if report_id == "latest":
            report = c.get("/api/drift/reports/latest", **({"project": project} if project else {}))
        else:
            report = c.get(f"/api/drift/reports/{report_id}")
    if as_json:
        print_json(report)
        return
    print_record(report, ["id", "project_id", "drift", "score", "reference", "created_by", "created_at"])
    print_report(report)


@drift_app.command("rm")
def drift_rm(report_id: str = typer.Argument(..., help="A report's id (drr_…).")) -> None:
    """Delete a report (it keeps example texts of traces: purging the traces does not remove them)."""
    with Client() as c:
        c.delete(f"/api/drift/reports/{report_id}")
    console.print(f"Deleted {report_id}", markup=False)
