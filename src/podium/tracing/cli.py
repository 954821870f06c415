"""`podium traces …`: list, show and export traces; purge, erase a user's traces, set retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import typer

from podium.core.client import Client
from podium.core.console import console, err_console, fail, print_json, print_record, print_table
from podium.core.money import format_micros, format_usd

traces_app = typer.Typer(help="Traces: list, show, export, purge, erase a user, retention.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")

# filter options shared by `ls` and `export` (the API's query parameters)
F_FROM = typer.Option(None, "--from", "--since", help="Started at or after: ISO-8601 time or a duration ago (24h).")
F_TO = typer.Option(None, "--to", "--until", help="Started before: ISO-8601 time or a duration ago.")
F_PROJECT = typer.Option(None, "--project", help="Project name or id (admin keys).")
F_MODEL = typer.Option(None, "--model")
F_USER = typer.Option(None, "--user", help="End user id, as the application sent it.")
F_SESSION = typer.Option(None, "--session")
F_TAG = typer.Option(None, "--tag", help="One tag, exactly.")
F_STATUS = typer.Option(None, "--status", help="ok or error.")
F_NAME = typer.Option(None, "--name", help="Trace name, exactly.")
F_SOURCE = typer.Option(None, "--source", help="gateway, sdk or otlp.")
F_ROUTE = typer.Option(None, "--route")
F_KEY = typer.Option(None, "--key", help="API key id or prefix.")
F_MIN_LAT = typer.Option(None, "--min-latency-ms")
F_MAX_LAT = typer.Option(None, "--max-latency-ms")
F_MIN_COST = typer.Option(None, "--min-cost-usd")
F_MAX_COST = typer.Option(None, "--max-cost-usd")
F_Q = typer.Option(None, "--query", "-q", help="Text in the input or output (case-insensitive).")
SORT = typer.Option("start_time", "--sort", help="start_time, latency_ms, cost or tokens.")
ORDER = typer.Option("desc", "--order", help="desc or asc.")


FILTERS = (
    "from_",
    "to",
    "project",
    "model",
    "user",
    "session",
    "tag",
    "status",
    "name",
    "source",
    "route",
    "key",
    "min_latency_ms",
    "max_latency_ms",
    "min_cost_usd",
    "max_cost_usd",
    "q",
)


def _filters(options: dict[str, Any]) -> dict[str, Any]:
    """The filter options a command was given (its `locals()`) as query parameters (`from_` is `from`)."""
    return {k.rstrip("_"): options[k] for k in FILTERS if options.get(k) is not None}


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _one_line(text: str | None, size: int = 60) -> str:
    if not text:
        return "—"
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"


@traces_app.command("ls")
def traces_ls(
    from_: str | None = F_FROM,
    to: str | None = F_TO,
    project: str | None = F_PROJECT,
    model: str | None = F_MODEL,
    user: str | None = F_USER,
    session: str | None = F_SESSION,
    tag: str | None = F_TAG,
    status: str | None = F_STATUS,
    name: str | None = F_NAME,
    source: str | None = F_SOURCE,
    route: str | None = F_ROUTE,
    key: str | None = F_KEY,
    min_latency_ms: str | None = F_MIN_LAT,
    max_latency_ms: str | None = F_MAX_LAT,
    min_cost_usd: str | None = F_MIN_COST,
    max_cost_usd: str | None = F_MAX_COST,
    q: str | None = F_Q,
    sort: str = SORT,
    order: str = ORDER,
    limit: int = typer.Option(50, "--limit", "-n", help="Traces per page (at most 500)."),
    cursor: str | None = typer.Option(None, "--cursor", help="Continue from a previous page's cursor."),
    as_json: bool = JSON,
) -> None:
    """List traces, newest first (or by latency or cost), filtered."""
    params = _filters(locals())
    with Client() as c:
        page = c.get("/api/traces", sort=sort, order=order, limit=limit, cursor=cursor, **params)
    if as_json:
        print_json(page)
        return
    rows = [
        {
            **t,
            "latency": _ms(t["latency_ms"]),
            "tokens": t["prompt_tokens"] + t["completion_tokens"],
            "cost": format_usd(t["cost_usd"]),
            "input": _one_line(t["input_preview"]),
        }
        for t in page["traces"]
    ]
    print_table(rows, ["id", "start_time", "name", "model", "status", "latency", "tokens", "cost", "user_id", "input"])
    if page["next_cursor"]:
        err_console.print(f"more: --cursor {page['next_cursor']}")


def _span_line(span: dict[str, Any]) -> str:
    parts = [f"{span['kind']} {span['name'] or '(unnamed)'}", f"[{span['status']}]", _ms(span["duration_ms"])]
    if span["model"]:
        parts.append(span["model"])
    tokens = span["prompt_tokens"] + span["completion_tokens"]
    if tokens:
        parts.append(f"{span['prompt_tokens']}+{span['completion_tokens']} tokens")
    if span["cost_micros"]:
        parts.append(format_micros(span["cost_micros"]))
    if span["orphan"]:
        parts.append(f"(orphan: parent {span['parent_id']} missing)")
    return "  " * int(span["depth"]) + " ".join(parts)


@traces_app.command("show")
def traces_show(trace_id: str, as_json: bool = JSON) -> None:
    """Show one trace and its span tree."""
    with Client() as c:
        data = c.get(f"/api/traces/{trace_id}")
    if as_json:
        print_json(data)
        return
    record = {**data, "latency": _ms(data["latency_ms"]), "cost": format_usd(data["cost_usd"])}
    record["input"] = _one_line(data["input_preview"], 200)
    record["output"] = _one_line(data["output_preview"], 200)
    keys = ["id", "name", "project_id", "source", "status", "start_time", "latency", "model", "route", "user_id"]
    keys += ["session_id", "tags", "prompt_tokens", "completion_tokens", "cost", "span_count", "error", "input"]
    print_record(record, [*keys, "output"])
    console.print(f"[bold]spans[/bold] ({data['spans_total']}):")
    for span in data["spans"]:
        console.print(_span_line(span), markup=False)
    if data["next_offset"] is not None:
        console.print(f"… {data['spans_total'] - data['next_offset']} more spans (GET /api/traces/{trace_id}?offset=…)")


# --- export ----------------------------------------------------------------------------------------

_DROP = ("input_preview", "output_preview")


def _pages(client: Client, params: dict[str, Any], size: int) -> Iterator[list[dict[str, Any]]]:
    cursor = None
    while True:
        page = client.get("/api/traces", limit=size, bodies="true", cursor=cursor, **params)
        yield [{k: v for k, v in t.items() if k not in _DROP} for t in page["traces"]]
        cursor = page["next_cursor"]
        if not cursor:
            return


def _parquet_schema() -> Any:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("id", pa.string()),
            ("project_id", pa.string()),
            ("name", pa.string()),
            ("source", pa.string()),
            ("status", pa.string()),
            ("start_time", ts),
            ("end_time", ts),
            ("latency_ms", pa.float64()),
            ("ttft_ms", pa.float64()),
            ("model", pa.string()),
            ("route", pa.string()),
            ("deployment", pa.string()),
            ("key_id", pa.string()),
            ("user_id", pa.string()),
            ("session_id", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("cache_status", pa.string()),
            ("http_status", pa.int32()),
            ("attempts", pa.int32()),
            ("span_count", pa.int32()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("cost_micros", pa.int64()),
            ("cost_usd", pa.decimal128(18, 6)),
            ("error", pa.string()),
            ("input", pa.string()),
            ("output", pa.string()),
            ("metadata", pa.string()),  # JSON text: its keys differ from trace to trace
        ]
    )


def _parquet_row(t: dict[str, Any]) -> dict[str, Any]:
    def when(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    return {
        **t,
        "start_time": when(t["start_time"]),
        "end_time": when(t["end_time"]),
        "tags": [str(tag) for tag in t["tags"] or []],
        "cost_usd": Decimal(t["cost_usd"]).quantize(Decimal("0.000001")),
        "metadata": orjson.dumps(t["metadata"]).decode(),
    }


@traces_app.command("export")
def traces_export(
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or parquet."),
    page_size: int = typer.Option(500, "--page-size", help="Traces fetched per request (at most 500)."),
    from_: str | None = F_FROM,
    to: str | None = F_TO,
    project: str | None = F_PROJECT,
    model: str | None = F_MODEL,
    user: str | None = F_USER,
    session: str | None = F_SESSION,
    tag: str | None = F_TAG,
    status: str | None = F_STATUS,
    name: str | None = F_NAME,
    source: str | None = F_SOURCE,
    route: str | None = F_ROUTE,
    key: str | None = F_KEY,
    min_latency_ms: str | None = F_MIN_LAT,
    max_latency_ms: str | None = F_MAX_LAT,
    min_cost_usd: str | None = F_MIN_COST,
    max_cost_usd: str | None = F_MAX_COST,
    q: str | None = F_Q,
) -> None:
    """Export the matching traces (with their stored inputs, outputs and metadata; not their spans) to JSON
    lines or Parquet, newest first. Artifact-stored payloads stay as their markers."""
    if fmt not in ("jsonl", "parquet"):
        fail(f"--format {fmt!r}: use jsonl or parquet")
    params = _filters(locals())
    count = 0
    tmp = output.with_name(output.name + ".part")
    with Client(timeout=120) as c, err_console.status("exporting traces…") as status_line:
        if fmt == "jsonl":
            with tmp.open("wb") as f:
                for page in _pages(c, params, page_size):
                    for t in page:
                        f.write(orjson.dumps(t) + b"\n")
                    count += len(page)
                    status_line.update(f"exporting traces… {count:,}")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = _parquet_schema()
            with pq.ParquetWriter(tmp, schema) as writer:
                for page in _pages(c, params, page_size):
                    if page:
                        writer.write_table(pa.Table.from_pylist([_parquet_row(t) for t in page], schema=schema))
                    count += len(page)
                    status_line.update(f"exporting traces… {count:,}")
    tmp.replace(output)  # the file appears whole or not at all
    typer.echo(f"Exported {count} traces to {output}.")


# --- deletion and retention ------------------------------------------------------------------------


@traces_app.command("purge")
def traces_purge(
    before: str = typer.Option(..., "--before", help="Delete traces started before this ISO-8601 time (or 30d ago)."),
    project: str | None = typer.Option(None, "--project", help="Only this project's traces."),
    yes: bool = YES,
    as_json: bool = JSON,
) -> None:
    """Delete traces that started before a time, with their spans (admin)."""
    scope = f"project {project}" if project else "every project"
    if not yes and not typer.confirm(f"Delete the traces of {scope} started before {before}?"):
        raise typer.Exit(1)
    with Client(timeout=600) as c:
        data = c.post("/api/traces/purge", json={"before": before, "project": project})
    if as_json:
        print_json(data)
        return
    freed = f" and freed {data['artifacts']} stored payloads" if data.get("artifacts") else ""
    typer.echo(f"Deleted {data['traces']} traces and {data['spans']} spans{freed}.")


@traces_app.command("erase-user")
def traces_erase_user(user_id: str, yes: bool = YES, as_json: bool = JSON) -> None:
    """Delete every trace of an end user, with their spans, in every project (admin; audited)."""
    if not yes and not typer.confirm(f"Delete every trace of user {user_id!r}?"):
        raise typer.Exit(1)
    with Client(timeout=600) as c:
        data = c.delete(f"/api/traces/users/{user_id}")
    if as_json:
        print_json(data)
        return
    freed = f", {data['artifacts']} stored payloads freed" if data.get("artifacts") else ""
    typer.echo(f"Erased user {user_id}: {data['traces']} traces and {data['spans']} spans deleted{freed}.")


@traces_app.command("retention")
def traces_retention(
    project: str,
    days: int | None = typer.Option(None, "--days", help="Keep this many days (admin)."),
    forever: bool = typer.Option(False, "--forever", help="Keep traces forever (admin)."),
    as_json: bool = JSON,
) -> None:
    """Show or set how many days a project's traces are kept."""
    if days is not None and forever:
        fail("give --days or --forever, not both")
    with Client() as c:
        if days is not None:
            data = c.put(f"/api/traces/retention/{project}", json={"days": days})
        elif forever:
            data = c.request("DELETE", f"/api/traces/retention/{project}")
        else:
            data = c.get(f"/api/traces/retention/{project}")
    if as_json:
        print_json(data)
        return
    kept = "forever" if data["days"] is None else f"{data['days']} days"
    typer.echo(f"Project {data['project']}: traces kept {kept}.")
