"""`podium chains …`: push chain files, list and show versions, run a chain, move labels, diff versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, fail, print_json, print_record, print_table

chains_app = typer.Typer(help="Chains and agents: versions, labels, runs.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
MAX_FILE = 256 * 1024


def _split(ref: str) -> tuple[str, str | None]:
    name, _, tag = ref.partition("@")
    if not name:
        fail(f"{ref!r} is not `name` or `name@version`")
    return name, tag or None


def _inputs(pairs: list[str], raw: str | None) -> dict[str, Any]:
    """`--input k=v` pairs (a value that parses as JSON is taken as JSON) and/or `--inputs JSON`."""
    inputs: dict[str, Any] = {}
    if raw is not None:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f"--inputs is not valid JSON: {exc}")
        if not isinstance(parsed, dict):
            fail('--inputs must be a JSON object, e.g. {"question": "where is my order"}')
        inputs.update(parsed)
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            fail(f"--input {pair!r} is not name=value")
        try:
            inputs[key] = json.loads(value)
        except json.JSONDecodeError:
            inputs[key] = value
    return inputs


@chains_app.command("push")
def chains_push(
    file: Path = typer.Argument(..., help="The chain's YAML file."),
    name: str | None = typer.Option(None, "--name", "-n", help="The chain's name (default: the file's stem)."),
    message: str = typer.Option("", "--message", "-m", help="What changed."),
    label: str | None = typer.Option(None, "--label", help="Point this label at the version pushed."),
    as_json: bool = JSON,
) -> None:
    """Check a chain file whole and push it as the chain's next version (the same content as the latest
    version pushes nothing)."""
    if not file.is_file():
        fail(f"{file} is not a file")
    if file.stat().st_size > MAX_FILE:
        fail(f"{file} is larger than {MAX_FILE // 1024} KB")
    chain = name or file.stem
    with Client() as c:
        pushed = c.post(f"/api/chains/{chain}/versions", {"source": file.read_text(), "message": message})
        version = pushed["version"]
        if label is not None:
            version = c.put(f"/api/chains/{chain}/labels/{label}", {"version": version["version"]})
    if as_json:
        print_json({**pushed, "version": version})
        return
    verb = "Pushed" if pushed["created"] else "Unchanged:"
    labels = f" ({', '.join(version['labels'])})" if version["labels"] else ""
    console.print(f"{verb} {chain}@{version['version']}{labels}", markup=False)


@chains_app.command("ls")
def chains_ls(as_json: bool = JSON) -> None:
    """List the chains you see."""
    with Client() as c:
        rows = c.get("/api/chains")
    if as_json:
        print_json(rows)
        return
    print_table(
        [{**r, "labels": ", ".join(f"{k}→{v}" for k, v in sorted(r["labels"].items()))} for r in rows],
        ["name", "latest_version", "steps", "labels", "updated_at", "description"],
    )


@chains_app.command("show")
def chains_show(
    ref: str = typer.Argument(..., help="`name` (its versions) or `name@version` (one version's YAML)."),
    as_json: bool = JSON,
) -> None:
    """A chain's versions and label history, or one version's YAML."""
    name, tag = _split(ref)
    with Client() as c:
        data = c.get(f"/api/chains/{name}/versions/{tag}") if tag else c.get(f"/api/chains/{name}")
    if as_json:
        print_json(data)
        return
    if tag:
        print_record(data, ["chain", "version", "id", "labels", "message", "created_by", "created_at"])
        console.print(data["source"], markup=False, highlight=False)
        return
    print_table(
        [{**v, "labels": ", ".join(v["labels"]), "steps": len(v["spec"]["steps"])} for v in data["versions"]],
        ["version", "id", "steps", "labels", "message", "created_by", "created_at"],
        title=f"{name}: {data['description']}" if data["description"] else name,
    )


@chains_app.command("run")
def chains_run(
    ref: str = typer.Argument(..., help="`name`, `name@3` or `name@label`."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="An input as name=value (repeatable)."),
    inputs_json: str | None = typer.Option(None, "--inputs", help="The inputs as a JSON object."),
    as_json: bool = JSON,
) -> None:
    """Run a chain version and print its output, its steps and its trace id; exit 1 if a step failed."""
    name, tag = _split(ref)
    body: dict[str, Any] = {"inputs": _inputs(inputs, inputs_json)}
    if tag:
        body["version"] = tag
    with Client(timeout=600) as c:
        result = c.post(f"/api/chains/{name}/run", body)
    if as_json:
        print_json(result)
    else:
        print_table(result["steps"], ["step", "status", "ms", "error"], title=f"{result['ref']} ({result['status']})")
        output = result["output"]
        text = output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False)
        if result["status"] == "ok":
            console.print(text, markup=False, highlight=False)
        console.print(f"trace {result['trace_id']} · run {result['id']} · {result['latency_ms']:.0f} ms", markup=False)
    if result["status"] != "ok":
        fail(result["error"] or "the run failed")


@chains_app.command("label")
def chains_label(
    name: str = typer.Argument(..., help="The chain."),
    label: str = typer.Argument(..., help="The label (prod, canary, …)."),
    version: str = typer.Argument(..., help="A version number, `latest` or another label."),
    as_json: bool = JSON,
) -> None:
    """Point a label at a version (the move is recorded)."""
    with Client() as c:
        moved = c.put(f"/api/chains/{name}/labels/{label}", {"version": version})
    print_json(moved) if as_json else console.print(f"{name}@{label} → version {moved['version']}", markup=False)


@chains_app.command("diff")
def chains_diff(
    name: str = typer.Argument(..., help="The chain."),
    a: str = typer.Argument(..., help="A version number or label."),
    b: str = typer.Argument("latest", help="Another (default: latest)."),
) -> None:
    """A unified diff of two versions' YAML."""
    with Client() as c:
        d = c.get(f"/api/chains/{name}/diff", a=a, b=b)
    console.print(d["diff"] or f"{name}@{d['a']} and {name}@{d['b']} are the same", markup=False, highlight=False)
