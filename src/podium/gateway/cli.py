"""`podium routes …`: gateway routes (public model names over deployments)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import fail, print_json, print_record, print_table
from podium.core.money import format_usd

routes_app = typer.Typer(help="Gateway routes: public model names over one or more deployments.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
_NUMBERS = {"weight": float, "context_window": int}


def parse_deployment(text: str) -> dict[str, Any]:
    """`provider=openai,model=gpt-4o-mini,base_url=…,api_key=…,weight=3` to a deployment dict."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--deployment {text!r}: expected key=value pairs separated by commas (provider=…,model=…)")
        if key in _NUMBERS:
            try:
                out[key] = _NUMBERS[key](value)
            except ValueError:
                fail(f"--deployment: {key} must be a number, got {value!r}")
        elif key in ("input_price", "output_price"):
            try:
                out.setdefault("price", {})[key.removesuffix("_price")] = float(value)
            except ValueError:
                fail(f"--deployment: {key} must be a number, got {value!r}")
        else:
            out[key] = value.strip()
    return out


@routes_app.command("add")
def routes_add(
    name: str = typer.Argument(None, help="Public model name clients send as `model`."),
    deployment: list[str] = typer.Option([], "--deployment", "-d", help="provider=…,model=…[,base_url,api_key,weight]"),
    strategy: str = typer.Option("weighted", help="weighted, round-robin, least-busy, lowest-latency or lowest-cost."),
    fallback: list[str] = typer.Option([], "--fallback", "-f", help="Route or model to try when all fail (ordered)."),
    retries: int = typer.Option(2, help="Extra attempts within the route before its fallbacks."),
    file: Path | None = typer.Option(None, "--file", help="A JSON file holding the whole route (as POST /api/routes)."),
    as_json: bool = JSON,
) -> None:
    """Add a route, from flags or from a JSON file."""
    if file is not None:
        try:
            body = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"{file}: cannot read a JSON route: {exc}")
        if name:
            body["name"] = name
    else:
        if not name or not deployment:
            fail("give a route NAME and at least one --deployment (or --file route.json)")
        body = {
            "name": name,
            "strategy": strategy,
            "deployments": [parse_deployment(d) for d in deployment],
            "fallbacks": fallback,
            "retries": retries,
        }
    with Client() as c:
        data = c.post("/api/routes", json=body)
    if as_json:
        print_json(data)
        return
    _show(data)


def _show(data: dict[str, Any]) -> None:
    print_record(data, ["id", "name", "strategy", "fallbacks", "created_by", "updated_at"])
    rows = [{**d, "api_key": "set" if d["api_key_set"] else "—"} for d in data["deployments"]]
    print_table(rows, ["name", "provider", "model", "base_url", "weight", "api_key"])


@routes_app.command("ls")
def routes_ls(as_json: bool = JSON) -> None:
    """List stored routes."""
    with Client() as c:
        rows = c.get("/api/routes")
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["deployments"] = ", ".join(d["name"] for d in r["deployments"])
        r["fallbacks"] = ", ".join(r["fallbacks"]) or "—"
    print_table(rows, ["name", "strategy", "deployments", "fallbacks", "updated_at"])


@routes_app.command("show")
def routes_show(name: str, as_json: bool = JSON) -> None:
    """Show one route."""
    with Client() as c:
        data = c.get(f"/api/routes/{name}")
    if as_json:
        print_json(data)
        return
    _show(data)


@routes_app.command("rm")
def routes_rm(name: str) -> None:
    """Remove a route."""
    with Client() as c:
        c.delete(f"/api/routes/{name}")
    typer.echo(f"Removed route {name}.")


limits_app = typer.Typer(
    help="Gateway limits on keys, projects and users: allowed models, RPM, TPM, daily and monthly budgets.",
    no_args_is_help=True,
)
_SCOPE = typer.Argument(..., help="key, project or user.")
_REF = typer.Argument(..., help="Key id or prefix (pk-…), project or user name or id.")
_LIMIT_COLUMNS = ["scope", "name", "allowed_models", "rpm", "tpm", "daily", "monthly"]


def _limit_row(d: dict[str, Any]) -> dict[str, Any]:
    def budget(limit: str | None, spent: str) -> str:
        return "—" if limit is None else f"{format_usd(spent)} of {format_usd(limit)}"

    return {
        **d,
        "allowed_models": ", ".join(d["allowed_models"]) if d["allowed_models"] is not None else "any",
        "rpm": d["rpm"] or "—",
        "tpm": d["tpm"] or "—",
        "daily": budget(d["daily_budget_usd"], d["spent_today_usd"]),
        "monthly": budget(d["monthly_budget_usd"], d["spent_this_month_usd"]),
    }


@limits_app.command("set")
def limits_set(
    scope: str = _SCOPE,
    ref: str = _REF,
    models: str | None = typer.Option(None, "--models", help="Allowed model names or globs, comma-separated."),
    rpm: int | None = typer.Option(None, help="Requests per minute."),
    tpm: int | None = typer.Option(None, help="Tokens per minute."),
    daily: str | None = typer.Option(None, "--daily", help="Daily budget in USD (UTC day)."),
    monthly: str | None = typer.Option(None, "--monthly", help="Monthly budget in USD (UTC month)."),
    as_json: bool = JSON,
) -> None:
    """Set (replace) the limits of a key, project or user; a limit not given is removed."""
    body: dict[str, Any] = {
        "allowed_models": [m.strip() for m in models.split(",") if m.strip()] if models is not None else None,
        "rpm": rpm,
        "tpm": tpm,
        "daily_budget_usd": daily,
        "monthly_budget_usd": monthly,
    }
    with Client() as c:
        data = c.put(f"/api/limits/{scope}/{ref}", json=body)
    if as_json:
        print_json(data)
        return
    print_record(_limit_row(data), _LIMIT_COLUMNS)


@limits_app.command("ls")
def limits_ls(as_json: bool = JSON) -> None:
    """List keys, projects and users with limits, and what they spent."""
    with Client() as c:
        rows = c.get("/api/limits")
    if as_json:
        print_json(rows)
        return
    print_table([_limit_row(r) for r in rows], _LIMIT_COLUMNS)


@limits_app.command("show")
def limits_show(scope: str = _SCOPE, ref: str = _REF, as_json: bool = JSON) -> None:
    """Show one scope's limits and spend."""
    with Client() as c:
        data = c.get(f"/api/limits/{scope}/{ref}")
    if as_json:
        print_json(data)
        return
    print_record(_limit_row(data), [*_LIMIT_COLUMNS, "updated_by", "updated_at"])


@limits_app.command("rm")
def limits_rm(scope: str = _SCOPE, ref: str = _REF) -> None:
    """Remove a scope's limits."""
    with Client() as c:
        c.delete(f"/api/limits/{scope}/{ref}")
    typer.echo(f"Removed the limits of {scope} {ref}.")
