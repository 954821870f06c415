"""`podium routes …`: gateway routes (public model names over deployments)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import fail, print_json, print_record, print_table

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
