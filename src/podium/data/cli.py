"""`podium data …`: import, list, show, head, diff, prepare, export and label datasets."""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, fail, print_json, print_record, print_table
from podium.data.formats import EXPORT_FORMATS, guess_format
from podium.jobs.cli import finish, follow

data_app = typer.Typer(help="Datasets: versions, imports, preparation, exports.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")


def _split(ref: str) -> tuple[str, str]:
    name, _, tag = ref.partition("@")
    return name, tag or "latest"


def _show_import(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    v = result["version"]
    verb = "Imported" if result["created"] else "Unchanged:"
    console.print(f"{verb} {v['dataset']}@{v['version']} ({result['rows']:,} rows, {v['id']})")
    if result["bad_rows"]:
        console.print(f"{result['bad_rows']} malformed rows left out:")
        for p in result["problems"][:10]:
            console.print(f"  {p['file']}:{p['line']}: {p['error']}", markup=False)


@data_app.command("import")
def data_import(
    path: Path = typer.Argument(
        ..., help="A JSONL, CSV or Parquet file, a folder of documents, or a saved HF dataset."
    ),
    name: str = typer.Option(..., "--name", "-n", help="The dataset receiving the new version."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="jsonl, csv, parquet, folder or hf (default: guessed)."
    ),
    on_error: str = typer.Option("fail", "--on-error", help="skip: leave malformed rows out; fail: import nothing."),
    message: str = typer.Option("", "--message", "-m", help="What this version is."),
    description: str = typer.Option("", "--description", help="What the dataset is."),
    as_json: bool = JSON,
) -> None:
    """Import a file or folder as the next version of a dataset (rows stream; memory stays bounded)."""
    if not path.exists():
        fail(f"{path} does not exist")
    fmt = fmt or guess_format(path)
    params = {
        "format": fmt,
        "on_error": on_error,
        "message": message,
        "description": description,
        "filename": path.name,
    }
    with tempfile.TemporaryDirectory(prefix="podium-import-") as tmp:
        upload = path
        if path.is_dir():  # folders travel as one tar archive, unpacked safely by the server
            upload = Path(tmp) / "folder.tar"
            with tarfile.open(upload, "w") as tar:
                tar.add(path, arcname=path.name)
        with Client(timeout=3600.0) as c, open(upload, "rb") as body:
            result = c.request("POST", f"/api/datasets/{name}/import", params=params, content=body)
    _show_import(result, as_json)


@data_app.command("import-traces")
def data_import_traces(
    name: str = typer.Option(..., "--name", "-n", help="The dataset receiving the new version."),
    filters: list[str] = typer.Option([], "--filter", help="A trace filter as key=value (from, to, model, tag, …)."),
    score: str | None = typer.Option(None, "--score", help="Only traces with this score."),
    min_score: float | None = typer.Option(None, "--min-score"),
    max_score: float | None = typer.Option(None, "--max-score"),
    feedback_only: bool = typer.Option(False, "--feedback-only", help="Only traces with feedback from a person."),
    limit: int = typer.Option(10_000, "--limit", help="At most this many rows."),
    message: str = typer.Option("", "--message", "-m"),
    as_json: bool = JSON,
) -> None:
    """Turn traces (and their scores and feedback) into rows of a new version, each linked to its trace."""
    parsed: dict[str, str] = {}
    for item in filters:
        key, eq, value = item.partition("=")
        if not eq:
            fail(f"--filter {item!r} is not key=value")
        parsed[key.strip()] = value
    body = {
        "filters": parsed,
        "score": score,
        "min_score": min_score,
        "max_score": max_score,
        "feedback_only": feedback_only,
        "limit": limit,
        "message": message,
    }
    with Client(timeout=3600.0) as c:
        result = c.post(f"/api/datasets/{name}/import-traces", body)
    _show_import(result, as_json)


@data_app.command("ls")
def data_ls(as_json: bool = JSON) -> None:
    """List datasets."""
    with Client() as c:
        rows = c.get("/api/datasets")
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["name", "latest_version", "rows", "labels", "updated_at", "description"])


@data_app.command("show")
def data_show(
    ref: str = typer.Argument(..., help="`name` (its versions) or `name@version` (one version's card)."),
    as_json: bool = JSON,
) -> None:
    """A dataset's versions, or one version's card (rows, columns, languages, what preparation removed)."""
    name, tag = ref.partition("@")[0], ref.partition("@")[2]
    with Client() as c:
        data = c.get(f"/api/datasets/{name}/versions/{tag}/card") if tag else c.get(f"/api/datasets/{name}")
    if as_json:
        print_json(data)
        return
    if not tag:
        print_table(
            [
                {
                    **v,
                    "labels": ", ".join(v["labels"]),
                    "parents": ", ".join(f"{p['dataset']}@{p['version']}" for p in v["parents"]),
                    "made_by": v["lineage"].get("kind"),
                }
                for v in data["versions"]
            ],
            ["version", "id", "row_count", "labels", "made_by", "parents", "message", "created_at"],
            title=data["name"],
        )
        return
    v = data["version"]
    print_record(
        {
            "version": f"{v['dataset']}@{v['version']}",
            "id": v["id"],
            "rows": data["rows"],
            "columns": ", ".join(f"{c['name']} ({c['type']})" for c in data["columns"]),
            "labels": ", ".join(v["labels"]),
            "languages": data["languages"],
            "splits": data["splits"],
            "duplicates removed": data["duplicates_removed"],
            "pii": data["pii"],
            "quality drops": data["quality_drops"],
            "lineage": " <- ".join(
                f"{a['dataset']}@{a['version']} ({a['kind']}{': ' + ', '.join(a['steps']) if a['steps'] else ''})"
                for a in data["lineage"]
            ),
        }
    )


@data_app.command("head")
def data_head(
    ref: str = typer.Argument(..., help="`name@version` (default latest)."),
    n: int = typer.Option(10, "-n", help="Rows to show."),
    offset: int = typer.Option(0, "--offset"),
    q: str | None = typer.Option(None, "--grep", "-q", help="Only rows where a text column contains this."),
    as_json: bool = JSON,
) -> None:
    """The first rows of a version (or of the rows matching `--grep`)."""
    name, tag = _split(ref)
    with Client() as c:
        page = c.get(f"/api/datasets/{name}/versions/{tag}/rows", limit=n, offset=offset, q=q)
    if as_json:
        print_json(page)
        return
    for row in page["rows"]:
        console.print(json.dumps(row, ensure_ascii=False, default=str), markup=False, highlight=False)


@data_app.command("diff")
def data_diff(
    a: str = typer.Argument(..., help="The earlier version, `name@version`."),
    b: str = typer.Argument(..., help="The later version (`name@version`, or a version of the same dataset)."),
    key: str | None = typer.Option(None, "--key", help="Column matching rows (default: `id` when both have it)."),
    as_json: bool = JSON,
) -> None:
    """Rows added, removed and changed between two versions."""
    name, tag_a = _split(a)
    tag_b = b if "@" in b else f"{name}@{b}"
    with Client(timeout=600.0) as c:
        d = c.get(f"/api/datasets/{name}/diff", a=tag_a, b=tag_b, key=key)
    if as_json:
        print_json(d)
        return
    console.print(f"{a} -> {b} (rows matched by {d['key'] or 'content'})")
    console.print(f"  rows: +{d['rows_added']} -{d['rows_removed']} ~{d['rows_changed']} ={d['rows_unchanged']}")
    for label in ("columns_added", "columns_removed", "columns_retyped"):
        if d[label]:
            console.print(f"  {label.replace('_', ' ')}: {', '.join(d[label])}")


@data_app.command("prep")
def data_prep(
    ref: str = typer.Argument(..., help="The source version, `name@version`."),
    pipeline: Path = typer.Option(..., "--pipeline", "-p", help="A YAML file: `steps: [{normalize: {...}}, ...]`."),
    into: str | None = typer.Option(None, "--into", help="Write the result into this dataset (default: the same)."),
    message: str = typer.Option("", "--message", "-m"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job to its end."),
    as_json: bool = JSON,
) -> None:
    """Run a preparation pipeline over a version (a job); the rows it keeps become a new version."""
    if not pipeline.exists():
        fail(f"{pipeline} does not exist")
    name, tag = _split(ref)
    body = {"pipeline": pipeline.read_text(), "version": tag, "into": into, "message": message}
    with Client() as c:
        job = c.post(f"/api/datasets/{name}/prep", body)
        if not wait:
            print_json(job) if as_json else console.print(f"Queued {job['id']}")
            return
        job = follow(c, job["id"], quiet=as_json)
    finish(job, as_json)


@data_app.command("export")
def data_export(
    ref: str = typer.Argument(..., help="The version, `name@version`."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (a folder for `hf`)."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help=f"One of {', '.join(EXPORT_FORMATS)}."),
) -> None:
    """Write a version's rows to a JSONL, CSV or Parquet file, or a Hugging Face dataset folder."""
    if fmt not in EXPORT_FORMATS:
        fail(f"--format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "hf":
        from podium.data.sdk import get

        target = get(ref).to_hf(out)
        console.print(f"Wrote {ref} as a Hugging Face dataset to {target}")
        return
    name, tag = _split(ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    with Client(timeout=3600.0) as c, open(tmp, "wb") as f:
        headers = c.download(f"/api/datasets/{name}/versions/{tag}/download", f, format=fmt)
    tmp.replace(out)
    console.print(f"Wrote {ref} ({headers.get('x-podium-version', '')}) to {out}")


@data_app.command("tag")
def data_tag(
    ref: str = typer.Argument(..., help="The version to label, `name@version`."),
    label: str = typer.Argument(..., help="The label (`golden`, `train-v3`)."),
    remove: bool = typer.Option(False, "--remove", help="Delete the label instead."),
    as_json: bool = JSON,
) -> None:
    """Point a label at a version (or remove it with --remove); the move is recorded."""
    name, tag = _split(ref)
    with Client() as c:
        if remove:
            c.request("DELETE", f"/api/datasets/{name}/labels/{label}")
            console.print(f"Removed {name}@{label}")
            return
        v = c.put(f"/api/datasets/{name}/labels/{label}", {"version": tag})
    print_json(v) if as_json else console.print(f"{name}@{label} -> version {v['version']} ({v['id']})")
