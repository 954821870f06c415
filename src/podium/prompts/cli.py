"""`podium prompts …`: push and pull prompt files, list, show, diff, label and render versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, err_console, fail, print_json, print_record, print_table
from podium.core.errors import PodiumError
from podium.prompts.experiments.cli import experiment_app
from podium.prompts.files import PromptFile, read_dir
from podium.prompts.service import VersionInfo, parse_ref, to_file, to_yaml

prompts_app = typer.Typer(help="The prompt registry.", no_args_is_help=True)
prompts_app.add_typer(experiment_app, name="experiment")
JSON = typer.Option(False, "--json", help="Print JSON.")


def _where(f: PromptFile, exc: PodiumError) -> str:
    d = exc.details
    if "where" in d:
        return f.locate(str(d["where"]), d.get("line"), d.get("column"))
    return str(f.path)


@prompts_app.command("push")
def push(
    path: Path = typer.Argument(
        ..., help="A directory of prompt files (YAML, Markdown with front matter) or one file."
    ),
    message: str = typer.Option("", "--message", "-m", help="Commit message for the new versions."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show what would change; write nothing."),
    as_json: bool = JSON,
) -> None:
    """Create a version for every prompt file whose content changed. Every file is validated first: if any
    is invalid, nothing is pushed."""
    files = read_dir(path)
    if not files:
        fail(f"no prompt files (*.yaml, *.yml, *.md) under {path}")
    results: list[dict[str, Any]] = []
    with Client() as c:
        errors = []
        planned = []
        for f in files:
            body = {**f.spec, "message": message or f.spec.get("message", "")}
            try:
                planned.append((f, body, c.request("POST", "/api/prompts", params={"dry_run": "true"}, json=body)))
            except PodiumError as exc:
                errors.append(f"{_where(f, exc)}: {exc.message}")
        if errors:
            for line in errors:
                err_console.print(f"[red]error:[/red] {line}", markup=True)
            fail(f"{len(errors)} of {len(files)} prompt files are invalid; nothing was pushed")
        for f, body, plan in planned:
            done = plan if dry_run else c.post("/api/prompts", body)
            v = done["version"]
            results.append(
                {"file": str(f.path), "prompt": v["prompt"], "version": v["version"], "created": done["created"]}
            )
    if as_json:
        print_json(results)
        return
    for r in results:
        verb = ("would create" if dry_run else "created") if r["created"] else "unchanged"
        console.print(f"{r['prompt']}: {verb} version {r['version']}  ({r['file']})")


@prompts_app.command("pull")
def pull(
    path: Path = typer.Argument(..., help="Directory to write <name>.yaml files into."),
    names: list[str] = typer.Option([], "--name", "-n", help="Only these prompts (repeatable)."),
    label: str | None = typer.Option(None, help="Write the version this label points at (default: latest)."),
) -> None:
    """Write prompts as YAML files (pushing them back unchanged creates no version)."""
    path.mkdir(parents=True, exist_ok=True)
    with Client() as c:
        wanted = names or [p["name"] for p in c.get("/api/prompts")]
        for name in wanted:
            detail = c.get(f"/api/prompts/{name}")
            v = c.get(f"/api/prompts/{name}/versions/{label or 'latest'}")
            content = to_yaml(to_file(VersionInfo.model_validate(v), detail.get("description", "")))
            target = path / f"{name}.yaml"
            target.write_text(content, encoding="utf-8")
            console.print(f"{name}@{v['version']} → {target}")


@prompts_app.command("ls")
def ls(as_json: bool = JSON) -> None:
    """List prompts with their latest version and labels."""
    with Client() as c:
        rows = c.get("/api/prompts")
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["labels"] = ", ".join(f"{k}→{v}" for k, v in r["labels"].items()) or "—"
    print_table(rows, ["name", "kind", "latest_version", "labels", "updated_at", "description"])


@prompts_app.command("show")
def show(ref: str = typer.Argument(..., help="name, name@version or name@label"), as_json: bool = JSON) -> None:
    """Show a prompt (versions and label history) or one version as a prompt file."""
    name, tag = parse_ref(ref)
    with Client() as c:
        if tag is not None:
            v = c.get(f"/api/prompts/{name}/versions/{tag}")
            if as_json:
                print_json(v)
                return
            info = VersionInfo.model_validate(v)
            console.print(f"# {name}@{info.version}  labels: {', '.join(info.labels) or '—'}  by {info.created_by}")
            if info.message:
                console.print(f"# {info.message}")
            console.print(to_yaml(to_file(info)), markup=False)
            return
        data = c.get(f"/api/prompts/{name}")
    if as_json:
        print_json(data)
        return
    print_record(data, ["name", "description", "kind", "latest_version", "labels"])
    rows = [
        {
            "version": v["version"],
            "labels": ", ".join(v["labels"]) or "—",
            "message": v["message"],
            "by": v["created_by"],
            "at": v["created_at"],
        }
        for v in data["versions"]
    ]
    print_table(rows, ["version", "labels", "message", "by", "at"])
    if data["history"]:
        print_table(data["history"], ["label", "from_version", "to_version", "actor", "at"], title="label history")


@prompts_app.command("diff")
def diff(
    name: str,
    a: str = typer.Argument(..., help="version number or label"),
    b: str = typer.Argument("latest", help="version number or label"),
    as_json: bool = JSON,
) -> None:
    """Unified diff between two versions."""
    with Client() as c:
        data = c.get(f"/api/prompts/{name}/diff", a=a, b=b)
    if as_json:
        print_json(data)
        return
    if not data["changed"]:
        console.print(f"{name}@{data['a']} and {name}@{data['b']} have the same content")
        return
    console.print(data["unified"], markup=False, end="")


@prompts_app.command("label")
def label(
    name: str,
    label_name: str = typer.Argument(..., metavar="LABEL"),
    version: str | None = typer.Argument(None, help="version number (or `latest`); omit with --rm"),
    remove: bool = typer.Option(False, "--rm", help="Delete the label."),
) -> None:
    """Point a label at a version (or delete it)."""
    with Client() as c:
        if remove:
            c.delete(f"/api/prompts/{name}/labels/{label_name}")
            console.print(f"{name}@{label_name} removed")
            return
        if version is None:
            fail("give the version to point the label at (or --rm to delete it)")
        v = c.put(f"/api/prompts/{name}/labels/{label_name}", {"version": version})
    console.print(f"{name}@{label_name} → version {v['version']}")


def _variables(pairs: list[str], vars_json: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if vars_json:
        text = Path(vars_json[1:]).read_text() if vars_json.startswith("@") else vars_json
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"--vars is not valid JSON: {exc}")
        if not isinstance(loaded, dict):
            fail("--vars must be a JSON object of name → value")
        values.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--var {pair!r} is not NAME=VALUE")
        values[key] = value
    return values


@prompts_app.command("render")
def render(
    ref: str = typer.Argument(..., help="name, name@version or name@label"),
    var: list[str] = typer.Option([], "--var", "-v", help="NAME=VALUE (repeatable); typed by the declaration."),
    vars_json: str | None = typer.Option(None, "--vars", help="A JSON object of variables, or @file.json."),
    as_json: bool = JSON,
) -> None:
    """Render a version with variables (as the gateway and the SDK would)."""
    name, tag = parse_ref(ref)
    with Client() as c:
        out = c.post(f"/api/prompts/{name}/render", {"version": tag, "variables": _variables(var, vars_json)})
    if as_json:
        print_json(out)
        return
    console.print(f"# {name}@{out['version']}  model: {json.dumps(out['model'])}", markup=False)
    if out["text"] is not None:
        console.print(out["text"], markup=False)
    for m in out["messages"] or []:
        console.print(f"[bold]{m['role']}[/bold]: ", end="")
        console.print(m["content"], markup=False)


@prompts_app.command("run")
def run(
    ref: str = typer.Argument(..., help="name, name@version or name@label (the latest version by default)"),
    model: str = typer.Option(..., "--model", "-m", help="Gateway model or route to run it on."),
    var: list[str] = typer.Option([], "--var", "-v", help="NAME=VALUE (repeatable); typed by the declaration."),
    vars_json: str | None = typer.Option(None, "--vars", help="A JSON object of variables, or @file.json."),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as the model writes it."),
    as_json: bool = JSON,
) -> None:
    """Run a version on a model through the gateway (as the playground does): output, latency, tokens, cost
    and the trace id. Exits 1 if the gateway refused or the model failed."""
    name, tag = parse_ref(ref)
    body = {"name": name, "source": tag or "latest", "model": model, "variables": _variables(var, vars_json)}
    result: dict[str, Any] | None = None
    with Client(timeout=600) as c:
        if not stream:
            result = c.post("/api/playground/run", body)
        else:
            for event in c.stream("/api/playground/run", {**body, "stream": True}):
                if event.name == "result":
                    result = event.data
                elif not as_json:
                    for choice in event.data.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            console.print(text, end="", markup=False, soft_wrap=True)
            if not as_json:
                console.print()
    if result is None:
        fail("the stream ended without a result")
        return
    if as_json:
        print_json(result)
    else:
        if not stream and result["output"] is not None:
            console.print(result["output"], markup=False)
        version = f"v{result['version']}" if result["version"] is not None else result["source"]
        console.print(
            f"# {name} {version} on {result['model']}: {result['latency_ms']:.0f} ms, "
            f"{result['prompt_tokens']} + {result['completion_tokens']} tokens, {result['cost']}, "
            f"trace {result['trace_id']}",
            markup=False,
            style="dim",
        )
    if not result["ok"]:
        fail(f"HTTP {result['status']}: {result['error']}")
