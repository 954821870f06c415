"""`podium monitors …`: the list of monitors, one monitor's figures per bucket (and group) with a sparkline,
the overview's summary, and rolling at once."""

from __future__ import annotations

from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, print_json, print_table

monitors_app = typer.Typer(
    help="Monitors: traffic, errors, latency, cost, quality over the traces.", no_args_is_help=True
)
JSON = typer.Option(False, "--json", help="Print JSON.")
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """Values as block characters, lowest to highest (a gap for no data; a flat series at half height)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo
    return "".join(
        " "
        if v is None
        else _BARS[len(_BARS) // 2 if span == 0 else min(len(_BARS) - 1, int((v - lo) / span * len(_BARS)))]
        for v in values
    )


def _figure(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{float(value):.1%}"
    if unit == "USD":
        return f"${float(value):.6f}".rstrip("0").rstrip(".")
    number = float(value)
    return f"{number:.0f}" if number.is_integer() else f"{number:.4g}"


@monitors_app.command("ls")
def monitors_ls(as_json: bool = JSON) -> None:
    """List the monitors."""
    with Client() as c:
        data = c.get("/api/monitors")
    if as_json:
        print_json(data)
        return
    rows = [{**m, "worse": "higher" if m["higher_is_worse"] else "lower"} for m in data]
    print_table(rows, ["name", "unit", "worse", "description"])


@monitors_app.command("show")
def monitors_show(
    metric: str = typer.Argument(..., help="A monitor (podium monitors ls), or score:<name>."),
    project: str | None = typer.Option(None, help="Project name or id."),
    route: str | None = typer.Option(None),
    model: str | None = typer.Option(None),
    prompt: str | None = typer.Option(None, help="Prompt version, name@N."),
    start: str = typer.Option("24h", "--from", help="ISO-8601 time or a duration ago (24h, 7d)."),
    end: str | None = typer.Option(None, "--to", help="ISO-8601 time or a duration ago (default now)."),
    bucket: str = typer.Option("hour", help="minute, hour or day."),
    by: str | None = typer.Option(None, help="project, route, model or prompt."),
    as_json: bool = JSON,
) -> None:
    """A monitor's figures per time bucket (and group), with a sparkline per group."""
    params = {"project": project, "route": route, "model": model, "prompt": prompt, "from": start, "to": end}
    with Client() as c:
        data = c.get(f"/api/monitors/{metric}", **params, bucket=bucket, by=by)
    if as_json:
        print_json(data)
        return
    unit = data["metric"]["unit"]
    rows = [
        {"bucket": p["bucket"], "group": p["group"], "value": _figure(p["value"], unit), "count": p["count"]}
        for p in data["points"]
    ]
    columns = ["bucket", "group", "value", "count"] if data["by"] else ["bucket", "value", "count"]
    print_table(rows, columns, title=f"{data['metric']['name']} ({unit})")
    groups: dict[str | None, list[float | None]] = {}
    for p in data["points"]:
        groups.setdefault(p["group"], []).append(p["value"])
    for group, values in groups.items():
        label = group if group is not None else ("(none)" if data["by"] else data["metric"]["name"])
        console.print(f"{label}: {sparkline(values)}", markup=False)


@monitors_app.command("summary")
def monitors_summary(
    project: str | None = typer.Option(None, help="Project name or id."),
    window: str = typer.Option("24h", help="The window: 1h, 24h, 7d."),
    as_json: bool = JSON,
) -> None:
    """The headline figures of the last window against the one before."""
    with Client() as c:
        data = c.get("/api/monitors/summary", project=project, window=window)
    if as_json:
        print_json(data)
        return
    rows = [
        {
            "metric": f["metric"]["name"],
            "now": _figure(f["current"], f["metric"]["unit"]),
            "before": _figure(f["previous"], f["metric"]["unit"]),
            "change": "—" if f["change"] is None else f"{f['change']:+.1%}",
        }
        for f in [*data["figures"], *data["scores"]]
    ]
    print_table(rows, ["metric", "now", "before", "change"], title=f"last {window} vs the {window} before")


@monitors_app.command("roll")
def monitors_roll() -> None:
    """Roll the new traces and scores into the monitors now (admins)."""
    with Client() as c:
        data = c.post("/api/monitors/roll", {})
    console.print(f"Rolled {data['minutes']} minutes ({data['traces']} traces) and {data['scores']} scores.")
