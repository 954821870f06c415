"""`podium guard …`: try guardrail scanners on a text, list the scanners."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, fail, print_json, print_table

guard_app = typer.Typer(help="Guardrails: scan text with scanners, list them.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")


def parse_scanner(value: str) -> dict[str, Any]:
    """`pii` or `topics={"ban": ["politics"]}` as a scanner spec."""
    name, sep, raw = value.partition("=")
    name = name.strip()
    if not name:
        fail(f'--scanner {value!r}: write NAME or NAME=JSON-SETTINGS, e.g. \'urls={{"allow": ["example.com"]}}\'')
    settings: Any = {}
    if sep:
        try:
            settings = json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f'--scanner {name}: the settings are not valid JSON ({exc}); write e.g. {name}={{"threshold": 0.8}}')
        if not isinstance(settings, dict):
            fail(f'--scanner {name}: the settings must be a JSON object, e.g. {name}={{"threshold": 0.8}}')
    return {"type": name, "settings": settings}


def _local(body: dict[str, Any]) -> dict[str, Any]:
    """The scan in this process (no server): same scanners and actions; `llm_judge` needs a server."""
    from podium.core.errors import InvalidInput
    from podium.guard import actions
    from podium.guard.base import ScanContext, ScannerError
    from podium.guard.service import ScanRequest, default_names, get_scanner, run_scanners

    request = ScanRequest.model_validate(body)
    if request.scanners is not None:
        specs = [(s.type, s.settings) for s in request.scanners]
    else:
        specs = [(n, {}) for n in default_names(request.stage)]
    scanners = []
    for i, (name, settings) in enumerate(specs):
        try:
            scanners.append(get_scanner(name, settings))
        except ScannerError as exc:
            raise InvalidInput(f"--scanner {i + 1}: {exc}") from None
    found, runs = asyncio.run(run_scanners(scanners, request.text, ScanContext(request.stage, request.prompt)))
    outcome = actions.apply(request.text, found, request.action)
    return {
        "stage": request.stage,
        "blocked": outcome.blocked,
        "text": outcome.text,
        "findings": [f.to_dict() for f in found],
        "scanners": [r.model_dump() for r in runs],
        "redactions": len(outcome.vault.values),
    }


@guard_app.command("test")
def test(
    text: str = typer.Argument(..., help="The text to scan ('-' reads standard input)."),
    scanner: list[str] = typer.Option(
        [], "--scanner", "-s", help="NAME or NAME=JSON-SETTINGS; repeat for several (default: the stage's set)."
    ),
    output: bool = typer.Option(False, "--output", help="Scan as a model's answer (output scanners)."),
    prompt: str | None = typer.Option(None, "--prompt", help="For --output: the prompt that was answered."),
    action: str | None = typer.Option(None, "--action", help="block, redact, mask, hash or warn, for every finding."),
    local: bool = typer.Option(False, "--local", help="Run the scanners in this process instead of on the server."),
    as_json: bool = JSON,
) -> None:
    """Scan a text and show the findings and the text after the actions; exits 2 when the text is blocked."""
    if text == "-":
        text = sys.stdin.read()
    body: dict[str, Any] = {"text": text, "stage": "output" if output else "input"}
    if prompt is not None:
        body["prompt"] = prompt
    if scanner:
        body["scanners"] = [parse_scanner(s) for s in scanner]
    if action is not None:
        body["action"] = action
    if local:
        from pydantic import ValidationError

        try:
            result = _local(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            fail(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
    else:
        with Client() as c:
            result = c.post("/api/guard/scan", json=body)
    if as_json:
        print_json(result)
    else:
        rows = [{**f, "span": f"{f['start']}-{f['end']}"} for f in result["findings"]]
        if rows:
            print_table(rows, ["scanner", "type", "span", "score", "action", "detail"], title="findings")
        else:
            console.print("no findings")
        errors = [r for r in result["scanners"] if r.get("error")]
        for r in errors:
            console.print(f"[yellow]scanner {r['scanner']} failed:[/yellow] {r['error']}")
        console.print(f"[bold]{'BLOCKED' if result['blocked'] else 'allowed'}[/bold]")
        if not result["blocked"] and result["text"] != text:
            console.print(result["text"], markup=False, highlight=False)
    if result["blocked"]:
        raise typer.Exit(2)


@guard_app.command("scanners")
def scanners(as_json: bool = JSON) -> None:
    """List the scanners this server can run, with their stages and settings."""
    with Client() as c:
        found = c.get("/api/guard/scanners")
    if as_json:
        print_json(found)
        return
    rows = [
        {
            "name": s["name"],
            "stages": ", ".join(s["stages"]),
            "settings": ", ".join(sorted((s["settings"].get("properties") or {}).keys())),
            "description": s["description"],
        }
        for s in found
    ]
    print_table(rows, ["name", "stages", "settings", "description"], title="scanners")
