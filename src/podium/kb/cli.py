"""`podium kb …`: create knowledge bases, build versions from dataset versions, search them, move labels and
compare versions' retrieval quality."""

from __future__ import annotations

import json
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, fail, fmt, print_json, print_record, print_table
from podium.core.errors import NotFound
from podium.jobs.cli import follow

kb_app = typer.Typer(help="Knowledge bases: builds, search, labels and retrieval evals.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
EXCERPT = 100  # characters of a hit's text shown in tables


def _split(ref: str) -> tuple[str, str | None]:
    name, _, tag = ref.partition("@")
    if not name:
        fail(f"{ref!r} is not `name` or `name@version`")
    return name, tag or None


def _excerpt(text: str, size: int = EXCERPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"


def _chunker(v: dict[str, Any]) -> str:
    c = v.get("chunker") or {}
    text = f"{c.get('size')} {c.get('unit')}, overlap {c.get('overlap')}"
    return f"{text}, {c['tokenizer']}" if c.get("tokenizer") else text


def _version_row(v: dict[str, Any]) -> dict[str, Any]:
    """A version as one line: its lineage (dataset version, text field, chunker, model) and its state."""
    return {
        "version": v["version"],
        "id": v["id"],
        "status": v["status"],
        "dataset": f"{v['dataset']} ({v['dataset_version_id']})",
        "text_field": v["text_field"],
        "chunker": _chunker(v),
        "embedding_model": v["embedding_model"],
        "dim": v["dim"],
        "chunks": v["row_count"],
        "reused": v.get("reused", 0),
        "docs": v["doc_count"],
        "labels": ", ".join(v["labels"]),
        "created_at": v["created_at"],
        "error": v["error"],
    }


VERSION_COLUMNS = [
    "version",
    "id",
    "status",
    "dataset",
    "text_field",
    "chunker",
    "embedding_model",
    "dim",
    "chunks",
    "reused",
    "docs",
    "labels",
    "created_at",
]


def _print_version(v: dict[str, Any]) -> None:
    """One version as `key: value` lines (its error, if it failed)."""
    print_record(_version_row(v), [*VERSION_COLUMNS, "error"] if v.get("error") else VERSION_COLUMNS)


def _pick(detail: dict[str, Any], tag: str) -> dict[str, Any]:
    """The version `tag` names among a detail's versions (a number, label, id, or `latest`: the newest ready one)."""
    versions: list[dict[str, Any]] = detail["versions"]
    if tag == "latest":
        found = next((v for v in versions if v["status"] == "ready"), None)
    else:
        number = tag[1:] if tag.startswith("v") and tag[1:].isdigit() else tag
        found = next((v for v in versions if str(v["version"]) == number or v["id"] == tag or tag in v["labels"]), None)
    if found is None:
        raise NotFound(f"knowledge base {detail['name']!r} has no version {tag!r}", details={"field": "version"})
    return found


def _chunker_option(
    chunker: str | None, size: int | None, overlap: int | None, unit: str | None, tokenizer: str | None
) -> dict[str, Any] | None:
    """The chunker settings from `--chunker JSON` or the single options (none given: the server's default)."""
    singles = {"size": size, "overlap": overlap, "unit": unit, "tokenizer": tokenizer}
    if chunker is not None:
        if any(v is not None for v in singles.values()):
            fail("give either --chunker or --chunk-size/--chunk-overlap/--unit/--tokenizer, not both")
        try:
            parsed = json.loads(chunker)
        except json.JSONDecodeError as exc:
            fail(f"--chunker is not valid JSON: {exc}")
        if not isinstance(parsed, dict):
            fail('--chunker must be a JSON object, e.g. {"unit": "chars", "size": 500, "overlap": 50}')
        return dict(parsed)
    if all(v is None for v in singles.values()):
        return None
    out: dict[str, Any] = {"unit": unit or "chars"}
    if size is not None:
        out["size"] = size
        out["overlap"] = overlap if overlap is not None else size // 10
    elif overlap is not None:
        out["overlap"] = overlap
    if tokenizer is not None:
        out["tokenizer"] = tokenizer
    return out


@kb_app.command("create")
def kb_create(
    name: str = typer.Argument(..., help="The knowledge base's name (unique on the server)."),
    description: str = typer.Option("", "--description", "-d", help="What it holds."),
    as_json: bool = JSON,
) -> None:
    """Create an empty knowledge base in your key's project."""
    with Client() as c:
        made = c.post("/api/kb", {"name": name, "description": description})
    print_json(made) if as_json else console.print(f"Created knowledge base {made['name']}", markup=False)


@kb_app.command("build")
def kb_build(
    name: str = typer.Argument(..., help="The knowledge base."),
    dataset: str = typer.Option(..., "--dataset", help="The dataset version to index (`name@3`, `name@label`)."),
    text_field: str = typer.Option("text", "--text-field", help="The column holding the text."),
    chunker: str | None = typer.Option(
        None, "--chunker", help='The chunk settings as JSON, e.g. \'{"unit": "chars", "size": 500, "overlap": 50}\'.'
    ),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="Chunk size in --unit."),
    chunk_overlap: int | None = typer.Option(None, "--chunk-overlap", help="Overlap (default: a tenth of the size)."),
    unit: str | None = typer.Option(None, "--unit", help="chars (default) or tokens."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="The model whose tokenizer counts tokens."),
    embedding_model: str = typer.Option(..., "--embedding-model", help="A model or route the gateway serves."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the build job to its end."),
    as_json: bool = JSON,
) -> None:
    """Build the next version from a dataset version (chunked and embedded by a job). Without chunk settings:
    1000 characters with 100 of overlap."""
    body = {
        "dataset": dataset,
        "text_field": text_field,
        "chunker": _chunker_option(chunker, chunk_size, chunk_overlap, unit, tokenizer),
        "embedding_model": embedding_model,
    }
    with Client() as c:
        started = c.post(f"/api/kb/{name}/build", body)
        version, job = started["version"], started["job"]
        if not wait:
            print_json(started) if as_json else console.print(
                f"Building {name}@{version['version']} (job {job['id']})", markup=False
            )
            return
        job = follow(c, job["id"], quiet=as_json)
        detail = c.get(f"/api/kb/{name}")
    version = next((v for v in detail["versions"] if v["id"] == version["id"]), version)
    if as_json:
        print_json({"version": version, "job": job})
    else:
        _print_version(version)
    if job["status"] != "succeeded":
        fail(f"the build of {name}@{version['version']} {job['status']}: {version.get('error') or job.get('error')}")


@kb_app.command("ls")
def kb_ls(as_json: bool = JSON) -> None:
    """List the knowledge bases you see."""
    with Client() as c:
        rows = c.get("/api/kb")
    if as_json:
        print_json(rows)
        return
    print_table(
        [{**r, "labels": ", ".join(f"{k}→{v}" for k, v in sorted(r["labels"].items()))} for r in rows],
        ["name", "ready_version", "latest_version", "chunks", "labels", "created_by", "created_at", "description"],
    )


@kb_app.command("show")
def kb_show(
    ref: str = typer.Argument(..., help="`name` (every version) or `name@version` (one version)."),
    as_json: bool = JSON,
) -> None:
    """A knowledge base's versions with their lineage and status, and its label history."""
    name, tag = _split(ref)
    with Client() as c:
        detail = c.get(f"/api/kb/{name}")
    if tag is not None:
        version = _pick(detail, tag)
        print_json(version) if as_json else _print_version(version)
        return
    if as_json:
        print_json(detail)
        return
    print_record(
        {
            "name": detail["name"],
            "description": detail["description"],
            "searches": f"version {detail['ready_version']}" if detail["ready_version"] else "nothing yet",
            "chunks": detail["chunks"],
            "labels": ", ".join(f"{k}→{v}" for k, v in sorted(detail["labels"].items())),
            "created": f"{fmt(detail['created_at'])} by {detail['created_by']}",
        }
    )
    print_table([_version_row(v) for v in detail["versions"]], VERSION_COLUMNS, title="Versions")
    failed = [v for v in detail["versions"] if v["error"]]
    if failed:
        print_table([_version_row(v) for v in failed], ["version", "error"], title="Failed builds")
    if detail["history"]:
        print_table(detail["history"], ["label", "from_version", "to_version", "actor", "at"], title="Label history")


@kb_app.command("search")
def kb_search(
    ref: str = typer.Argument(..., help="`name` (the newest ready version), `name@3` or `name@label`."),
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "--k", "-k", help="How many hits."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, vector or text."),
    source: list[str] = typer.Option([], "--source", help="Only chunks of this source (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="Only chunks with any of these tags (repeatable)."),
    as_json: bool = JSON,
) -> None:
    """The best chunks for a query: score, source, document, offsets and an excerpt."""
    name, version = _split(ref)
    filters: dict[str, Any] = {}
    if source:
        filters["source"] = source
    if tag:
        filters["tags_any"] = tag
    body = {"query": query, "k": k, "mode": mode, "filters": filters or None, "version": version}
    with Client(timeout=600.0) as c:
        result = c.post(f"/api/kb/{name}/search", body)
    if as_json:
        print_json(result)
        return
    rows = [
        {
            "rank": i,
            "score": round(h["score"], 4),
            "source": h["source"],
            "doc_id": h["doc_id"],
            "offsets": f"{h['start']}-{h['end']}",
            "text": _excerpt(h["text"]),
        }
        for i, h in enumerate(result["hits"], 1)
    ]
    title = f"{result['kb']}@{result['version']} ({result['mode']}): {len(rows)} hits"
    print_table(rows, ["rank", "score", "source", "doc_id", "offsets", "text"], title=title)


@kb_app.command("label")
def kb_label(
    name: str = typer.Argument(..., help="The knowledge base."),
    label: str = typer.Argument(..., help="The label (`prod`, `canary`)."),
    version: str = typer.Argument(..., help="A ready version: its number, `latest`, another label or its id."),
    as_json: bool = JSON,
) -> None:
    """Point a label at a ready version (the move is recorded); `name@label` then searches it."""
    with Client() as c:
        v = c.put(f"/api/kb/{name}/labels/{label}", {"version": version})
    print_json(v) if as_json else console.print(f"{name}@{label} → version {v['version']}", markup=False)


@kb_app.command("eval")
def kb_eval(
    name: str = typer.Argument(..., help="The knowledge base."),
    dataset: str = typer.Option(..., "--dataset", help="A dataset version of queries and their relevant documents."),
    query_field: str = typer.Option("query", "--query-field", help="The column holding each query."),
    relevant_field: str = typer.Option("relevant", "--relevant-field", help="The column of what should be found."),
    version: list[str] = typer.Option(
        [], "--version", help="A version to evaluate (one or two; default: the newest ready one)."
    ),
    k: int = typer.Option(10, "--k", "-k", help="Hits retrieved per query."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, vector or text."),
    as_json: bool = JSON,
) -> None:
    """Retrieval metrics (hit rate, MRR, nDCG, recall at k) of one or two versions, side by side."""
    body: dict[str, Any] = {
        "dataset": dataset,
        "query_field": query_field,
        "relevant_field": relevant_field,
        "k": k,
        "mode": mode,
        "filters": None,
    }
    if version:
        body["versions"] = version
    with Client(timeout=3600.0) as c:
        result = c.post(f"/api/kb/{name}/eval", body)
    if as_json:
        print_json(result)
        return
    _print_eval(result)


def _interval(mean: Any, interval: dict[str, Any] | None, sign: bool = False) -> str:
    """`0.8333 [0.5000, 1.0000]`, or the bare mean without an interval; `sign`: `+` before a positive mean."""
    if mean is None:
        return "—"
    text = f"{mean:+.4f}" if sign else f"{mean:.4f}"
    if not interval or interval.get("low") is None:
        return text
    return f"{text} [{interval['low']:.4f}, {interval['high']:.4f}]"


def _print_eval(result: dict[str, Any]) -> None:
    """Metrics down, versions across (each mean with its 95% interval); with two versions, the paired
    difference (second minus first) with its interval and p value."""
    versions: list[dict[str, Any]] = result["versions"]
    comparison: dict[str, Any] = result.get("comparison") or {}
    columns = [f"{result['kb']}@{v['version']}" for v in versions]
    rows: list[dict[str, Any]] = []
    for m in dict.fromkeys(m for v in versions for m in v["metrics"]):
        row = {"metric": m}
        for col, v in zip(columns, versions, strict=True):
            row[col] = _interval(v["metrics"].get(m), (v.get("intervals") or {}).get(m))
        if comparison:
            test = comparison.get(m) or {}
            row["difference"] = _interval(test.get("mean_delta"), test, sign=True)
            row["p"] = None if test.get("p_value") is None else f"{test['p_value']:.4f}"
        rows.append(row)
    for label, key in (("embedding model", "embedding_model"), ("chunks", "chunks"), ("version id", "version_id")):
        if any(key in v for v in versions):
            rows.append({"metric": label, **{col: v.get(key) for col, v in zip(columns, versions, strict=True)}})
    title = f"{result['kb']} on {result['dataset']}: {result['queries']} queries, k={result['k']}, {result['mode']}"
    print_table(rows, ["metric", *columns, *(["difference", "p"] if comparison else [])], title=title)
