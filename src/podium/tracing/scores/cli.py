"""`podium scores …`: add scores to traces and spans, and list them."""

from __future__ import annotations

import typer

from podium.core.client import Client
from podium.core.console import console, print_json, print_table
from podium.core.errors import InvalidInput

scores_app = typer.Typer(help="Scores on traces (feedback, evaluations).", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")


@scores_app.command("add")
def scores_add(
    trace_id: str = typer.Argument(..., help="Trace id."),
    name: str = typer.Argument(..., help="Score name (thumbs, helpfulness…)."),
    value: str = typer.Argument(..., help="A number, or true/false."),
    source: str = typer.Option("api", help="user, evaluator or api."),
    span: str | None = typer.Option(None, help="Span id within the trace."),
    comment: str | None = typer.Option(None),
    as_json: bool = JSON,
) -> None:
    """Score a trace."""
    lowered = value.strip().lower()
    number: float | bool
    if lowered in ("true", "false"):
        number = lowered == "true"
    else:
        try:
            number = float(value)
        except ValueError:
            raise InvalidInput(f"value {value!r} is not a number or true/false") from None
    body = {"trace_id": trace_id, "span_id": span, "name": name, "value": number, "source": source, "comment": comment}
    with Client() as c:
        data = c.post("/api/scores", body)
    if as_json:
        print_json(data)
        return
    console.print(f"Scored trace {data['trace_id']}: {data['name']} = {data['value']:g} ({data['id']}).")


@scores_app.command("ls")
def scores_ls(
    trace: str | None = typer.Option(None, help="Trace id."),
    name: str | None = typer.Option(None, help="Score name."),
    source: str | None = typer.Option(None, help="user, evaluator or api."),
    limit: int = typer.Option(100, help="At most this many, newest first."),
    as_json: bool = JSON,
) -> None:
    """List scores."""
    with Client() as c:
        data = c.get("/api/scores", trace_id=trace, name=name, source=source, limit=limit)
    if as_json:
        print_json(data["scores"])
        return
    print_table(data["scores"], ["created_at", "trace_id", "name", "value", "source", "created_by", "comment"])
