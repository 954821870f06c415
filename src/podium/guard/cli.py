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


policies_app = typer.Typer(help="Guardrail policies: which scanners run on a project's calls.", no_args_is_help=True)
guard_app.add_typer(policies_app, name="policies")


@policies_app.command("ls")
def policies_ls(as_json: bool = JSON) -> None:
    """List the policies of your project."""
    with Client() as c:
        found = c.get("/api/guard/policies")
    if as_json:
        print_json(found)
        return
    rows = [
        {
            **p,
            "applies to": p["scope"] if p["scope"] == "project" else f"{p['scope']} {p['target']}",
            "input": ", ".join(p["input"]),
            "output": ", ".join(p["output"]),
        }
        for p in found
    ]
    print_table(rows, ["name", "applies to", "mode", "version", "input", "output"], title="policies")


@policies_app.command("show")
def policies_show(
    name: str = typer.Argument(..., help="The policy's name."),
    version: int | None = typer.Option(None, "--version", "-v", help="An earlier version (default: the current)."),
    as_json: bool = JSON,
) -> None:
    """Show a policy as it was written (YAML), with its version."""
    with Client() as c:
        path = f"/api/guard/policies/{name}" + (f"/versions/{version}" if version is not None else "")
        found = c.get(path)
    if as_json:
        print_json(found)
        return
    if version is None:
        when, who = found["updated_at"], found["updated_by"]
    else:
        when, who = found["created_at"], found["created_by"]
    console.print(f"# {name} version {found['version']}, written {when} by {who}", markup=False, highlight=False)
    console.print(found["source"].rstrip(), markup=False, highlight=False)


@policies_app.command("history")
def policies_history(name: str = typer.Argument(..., help="The policy's name."), as_json: bool = JSON) -> None:
    """A policy's versions, newest first (`show NAME --version N` prints one; apply it again to go back)."""
    with Client() as c:
        found = c.get(f"/api/guard/policies/{name}/versions")
    if as_json:
        print_json(found)
        return
    rows = [{**v, "input": ", ".join(v["input"]), "output": ", ".join(v["output"])} for v in found]
    print_table(rows, ["version", "mode", "input", "output", "created_at", "created_by"], title=f"policy {name}")


@policies_app.command("apply")
def policies_apply(
    file: str = typer.Option(..., "--file", "-f", help="The policy as YAML or JSON ('-' reads standard input)."),
    as_json: bool = JSON,
) -> None:
    """Create a policy, or replace the one of that name (checked whole first: a bad file changes nothing)."""
    from pathlib import Path

    import yaml

    if file != "-" and not Path(file).is_file():
        fail(f"{file}: no such file")
    source = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        fail(f"{file}: not valid YAML or JSON ({exc})")
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        fail(f"{file}: the policy needs a 'name'")
    with Client() as c:
        found = c.put(f"/api/guard/policies/{name}?create=true", json={"source": source})
    if as_json:
        print_json(found)
    else:
        console.print(f"policy {found['name']} version {found['version']} applied")


@policies_app.command("rm")
def policies_rm(name: str = typer.Argument(..., help="The policy's name.")) -> None:
    """Remove a policy."""
    with Client() as c:
        c.delete(f"/api/guard/policies/{name}")
    console.print(f"policy {name} removed")


@policies_app.command("test")
def policies_test(
    name: str = typer.Argument(..., help="The policy's name."),
    text: str = typer.Argument(..., help="The text to check ('-' reads standard input)."),
    output: bool = typer.Option(False, "--output", help="Check it as an answer (the policy's output stage)."),
    prompt: str | None = typer.Option(None, "--prompt", help="For --output: the prompt that was answered."),
    as_json: bool = JSON,
) -> None:
    """What the policy would decide on a text (a dry run); exits 2 when it would block."""
    if text == "-":
        text = sys.stdin.read()
    body: dict[str, Any] = {"text": text, "stage": "output" if output else "input"}
    if prompt is not None:
        body["prompt"] = prompt
    with Client() as c:
        result = c.post(f"/api/guard/policies/{name}/test", json=body)
    if as_json:
        print_json(result)
    else:
        rows = [
            {
                "scanner": d["scanner"],
                "action": d["action"],
                "findings": ", ".join(f"{f['type']} {f['score']}" for f in d["findings"]),
                "latency_ms": d["latency_ms"],
                "error": d.get("error") or "",
            }
            for d in result["decisions"]
        ]
        print_table(rows, ["scanner", "action", "findings", "latency_ms", "error"], title=f"policy {name}")
        if result["blocked"]:
            console.print(f"[bold]BLOCKED[/bold]: {result['reason']}", highlight=False)
        else:
            console.print("[bold]allowed[/bold]")
            if result["text"] != text:
                console.print(result["text"], markup=False, highlight=False)
    if result["blocked"]:
        raise typer.Exit(2)


@guard_app.command("findings")
def findings(
    policy: str | None = typer.Option(None, "--policy", "-p", help="Only this policy's decisions."),
    scanner: str | None = typer.Option(None, "--scanner", "-s", help="Only this scanner's."),
    action: str | None = typer.Option(None, "--action", "-a", help="Only these actions (block, redact, allow, …)."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Recent decisions the gateway recorded under policies (findings and scanner failures), newest first."""
    with Client() as c:
        found = c.get("/api/guard/findings", policy=policy, scanner=scanner, action=action, limit=limit)
    if as_json:
        print_json(found)
        return
    rows = [
        {
            **f,
            "findings": ", ".join(f"{x['type']} {x['score']} [{x['start']}-{x['end']}]" for x in f["findings"]),
            "error": f.get("error") or "",
        }
        for f in found
    ]
    print_table(
        rows,
        ["time", "route", "policy", "stage", "scanner", "action", "findings", "error", "trace_id"],
        title="findings",
    )
