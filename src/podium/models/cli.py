"""`podium models …`: list, inspect, register, pull, alias and archive models."""

from __future__ import annotations

import typer

from podium.core.client import Client
from podium.core.console import console, print_json, print_record, print_table
from podium.jobs.cli import follow

models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")


def _fmt_params(n: int | None) -> str:
    if not n:
        return "—"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


@models_app.command("ls")
def models_ls(
    task: str | None = typer.Option(None, help="chat, completion or embedding."),
    all_: bool = typer.Option(False, "--all", help="Include archived models."),
    as_json: bool = JSON,
) -> None:
    """List registered models."""
    with Client() as c:
        rows = c.get("/api/models", task=task, include_archived=str(all_).lower())
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["aliases"] = ", ".join(f"{a}→{v}" for a, v in sorted(r["aliases"].items())) or "—"
    print_table(rows, ["name", "task", "provider", "latest_version", "aliases", "builtin", "archived"])


@models_app.command("show")
def models_show(ref: str = typer.Argument(..., help="name, name@version or name@alias"), as_json: bool = JSON) -> None:
    """Show a model (all versions and alias history) or one version (`name@3`, `name@production`)."""
    with Client() as c:
        if "@" in ref:
            name, _, tag = ref.partition("@")
            data = c.get(f"/api/models/{name}/versions/{tag}")
            if as_json:
                print_json(data)
            else:
                data["parameters"] = _fmt_params(data["parameters"])
                data["files"] = ", ".join(f"{f['path']} ({f['size']} B)" for f in data["files"]) or "—"
                print_record(data)
            return
        data = c.get(f"/api/models/{ref}")
    if as_json:
        print_json(data)
        return
    print_record(data, ["name", "task", "provider", "description", "latest_version", "aliases", "builtin"])
    rows = [
        {
            "version": v["version"],
            "format": v["format"],
            "parameters": _fmt_params(v["parameters"]),
            "context": v["context_length"],
            "sha256": v["sha256"][:16] + "…",
            "aliases": ", ".join(v["aliases"]) or "—",
            "source": v["source_uri"],
            "created_at": v["created_at"],
        }
        for v in data["versions"]
    ]
    print_table(rows, ["version", "format", "parameters", "context", "sha256", "aliases", "source", "created_at"])
    if data["history"]:
        print_table(data["history"], ["alias", "from_version", "to_version", "actor", "at"], title="alias history")


@models_app.command("register")
def models_register(
    name: str = typer.Argument(..., help="Model name."),
    source: str | None = typer.Option(None, help="Path on the server, pip:PACKAGE or org/name on the hub."),
    provider: str = typer.Option("local", help="local, openai or anthropic."),
    base_url: str | None = typer.Option(None, help="Remote endpoint, e.g. http://10.0.0.5:8000/v1."),
    upstream_model: str | None = typer.Option(None, help="Model name at the remote provider."),
    api_key: str | None = typer.Option(None, envvar="PODIUM_PROVIDER_API_KEY", help="Remote provider key."),
    task: str | None = typer.Option(None, help="chat, completion or embedding (default: detected)."),
    sha256: str | None = typer.Option(None, help="Expected sha256 of the files."),
    base: str | None = typer.Option(None, help="Base model of a LoRA adapter (name@version)."),
    context_length: int | None = typer.Option(None, help="Remote models: context window."),
    description: str = typer.Option("", "--description", "-d"),
    message: str = typer.Option("", "--message", "-m", help="What this version is."),
    as_json: bool = JSON,
) -> None:
    """Register a new model version: local files, or a remote OpenAI-compatible / Anthropic model."""
    with Client() as c:
        if provider == "local":
            if not source:
                raise typer.BadParameter("--source is required for local models")
            body_local: dict[str, object] = {
                "name": name,
                "source": source,
                "task": task,
                "sha256": sha256,
                "base": base,
                "description": description,
                "message": message,
            }
            data = c.post("/api/models", body_local)
        else:
            body: dict[str, object] = {
                "name": name,
                "provider": provider,
                "base_url": base_url,
                "upstream_model": upstream_model or "",
                "api_key": api_key,
                "task": task or "chat",
                "context_length": context_length,
                "description": description,
                "message": message,
            }
            data = c.post("/api/models/remote", body)
    if as_json:
        print_json(data)
    else:
        console.print(f"Registered {data['model']}@{data['version']} ({data['format']}, sha256 {data['sha256'][:16]}…)")


@models_app.command("pull")
def models_pull(
    source: str = typer.Argument(..., help="org/name on the Hugging Face hub, a path on the server, or pip:PACKAGE."),
    name: str | None = typer.Option(None, help="Model name (default: derived from the source)."),
    sha256: str | None = typer.Option(None, help="Expected sha256 of the files."),
    task: str | None = typer.Option(None),
    base: str | None = typer.Option(None, help="Base model of a LoRA adapter."),
    as_json: bool = JSON,
) -> None:
    """Download (if needed), hash and register a model as a background job, with progress."""
    derived = source.rstrip("/").split("#")[0].split("/")[-1].split("@")[0].removeprefix("pip:").lower()
    body = {"name": name or derived, "source": source, "sha256": sha256, "task": task, "base": base}
    with Client() as c:
        job = c.post("/api/models/pull", body)
        job = follow(c, job["id"], quiet=as_json)
    if as_json:
        print_json(job)
    elif job["status"] == "succeeded":
        r = job["result"]
        console.print(f"Registered {r['model']}@{r['version']} (sha256 {r['sha256'][:16]}…)")
    if job["status"] != "succeeded":
        if not as_json:
            console.print(f"[red]pull {job['status']}[/red]: {job.get('error') or job['message']}")
        raise typer.Exit(1)


@models_app.command("alias")
def models_alias(
    name: str,
    alias: str,
    version: str | None = typer.Argument(None, help="Version number (or alias) to point at."),
    delete: bool = typer.Option(False, "--delete", help="Remove the alias."),
    as_json: bool = JSON,
) -> None:
    """Point an alias (`production`, `staging`, …) at a version, or remove it with --delete."""
    with Client() as c:
        if delete:
            c.delete(f"/api/models/{name}/aliases/{alias}")
            console.print(f"Removed alias {alias} of {name}.")
            return
        if version is None:
            raise typer.BadParameter("give the version to point the alias at")
        data = c.request("PUT", f"/api/models/{name}/aliases/{alias}", json={"version": version})
    if as_json:
        print_json(data)
    else:
        console.print(f"{name}@{alias} → version {data['version']}")


@models_app.command("rollback")
def models_rollback(
    ref: str = typer.Argument(..., help="NAME@ALIAS, e.g. support-bot@production"), as_json: bool = JSON
) -> None:
    """Move an alias back to the version it pointed at before its latest move (audited)."""
    name, at, alias = ref.partition("@")
    if not name or not at or not alias:
        raise typer.BadParameter(f"{ref!r} is not NAME@ALIAS (e.g. support-bot@production)", param_hint="REF")
    with Client() as c:
        data = c.post(f"/api/models/{name}/aliases/{alias}/rollback")
    if as_json:
        print_json(data)
    else:
        console.print(f"{name}@{alias}: version {data['from_version']} → {data['to_version']}")


@models_app.command("batch")
def models_batch(
    model: str = typer.Argument(..., help="A model reference or any name the gateway serves (a route)."),
    dataset: str = typer.Argument(..., help="The input dataset version: name@version or name@label."),
    input_column: str | None = typer.Option(None, "--input-column", "-i", help="A text column: each row's prompt."),
    messages_column: str | None = typer.Option(None, "--messages-column", help="A column of chat messages."),
    system: str | None = typer.Option(None, "--system", help="A system message put before every row's."),
    output_dataset: str | None = typer.Option(None, "--output-dataset", "-o", help="Default: the input dataset."),
    output_column: str = typer.Option("output", "--output-column", help="The answers' column (and its prefix)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens"),
    temperature: float | None = typer.Option(None, "--temperature", help="Default 0."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", help="Calls at once, 1 to 64."),
    limit: int | None = typer.Option(None, "--limit", help="Answer only the first N rows."),
    message: str = typer.Option("", "--message", "-m", help="The new version's message."),
    wait: bool = typer.Option(False, "--wait", help="Follow the job to its end."),
    as_json: bool = JSON,
) -> None:
    """Run a model over a dataset version as a job, writing its answers as a new dataset version."""
    params = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
    body = {
        "model": model,
        "dataset": dataset,
        "input_column": input_column,
        "messages_column": messages_column,
        "system": system,
        "output_dataset": output_dataset,
        "output_column": output_column,
        "params": params,
        "concurrency": concurrency,
        "limit": limit,
        "message": message,
    }
    with Client() as c:
        job = c.post("/api/models/batch", body)
        if wait:
            job = follow(c, job["id"], quiet=as_json)
    if as_json:
        print_json(job)
    elif not wait:
        console.print(f"Queued batch job {job['id']} (follow it with `podium jobs show {job['id']}`)")
    elif job["status"] == "succeeded":
        r = job["result"]
        console.print(
            f"Wrote {r['ref']}: {r['rows']} rows, {r['failed']} failed, {r['completion_tokens']} tokens generated"
            f" ({r['model']} over {r['source']})"
        )
    if wait and job["status"] != "succeeded":
        if not as_json:
            console.print(f"[red]batch {job['status']}[/red]: {job.get('error') or job['message']}")
        raise typer.Exit(1)


@models_app.command("rm")
def models_rm(name: str, as_json: bool = JSON) -> None:
    """Archive a model (versions are kept for lineage; registering again restores it)."""
    with Client() as c:
        data = c.delete(f"/api/models/{name}")
    if as_json:
        print_json(data)
    else:
        console.print(f"Archived {name}.")
