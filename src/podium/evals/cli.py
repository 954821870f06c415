"""`podium eval …`: run suites (with a CI gate and JUnit output), list, show and compare runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from podium.core.client import Client
from podium.core.console import console, fail, print_json, print_table
from podium.evals.junit import Check, write_junit
from podium.jobs.cli import follow

eval_app = typer.Typer(help="Evaluations: suites, runs, comparisons and the CI gate.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")


def _interval(s: dict[str, Any]) -> str:
    if s.get("mean") is None:
        return "-"
    if s.get("low") is None:
        return f"{s['mean']:.3f}"
    return f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def _usd(micros: int) -> str:
    return f"${micros / 1e6:.4f}"


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    """Scores down, runs across: each cell a mean with its 95% bootstrap interval; then the counts."""
    names = sorted({n for r in runs for n in (r["summary"].get("scores") or {})})
    table = Table(title="Eval results: mean [95% bootstrap interval]")
    table.add_column("score")
    for i, r in enumerate(runs, 1):
        table.add_column(f"{i}. {r['target_label']}", justify="right")
    for n in names:
        table.add_row(n, *(_interval((r["summary"].get("scores") or {}).get(n) or {}) for r in runs))
    counts: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
        ("rows (failed)", lambda r: f"{r['rows_done']} ({r['failed_rows']})"),
        ("evaluator errors", lambda r: str(r["evaluator_errors"])),
        ("model calls (cached)", lambda r: f"{r['model_calls']} ({r['cached_calls']})"),
        ("cost", lambda r: _usd(r["cost_micros"])),
        ("run", lambda r: str(r["id"])),
    )
    for label, cell in counts:
        table.add_row(label, *(cell(r) for r in runs))
    return table


def _checks(runs: list[dict[str, Any]]) -> list[Check]:
    """A check per run (it finished) and per threshold of each run."""
    checks = []
    for r in runs:
        ok = r["status"] == "succeeded"
        message = (
            f"{r['rows_done']} rows, {r['failed_rows']} failed"
            if ok
            else f"the run {r['status']}: {r.get('error') or ''}"
        )
        checks.append(Check(f"{r['target_label']}: run", ok, message, None, None, r["id"]))
        for c in r["summary"].get("checks") or []:
            checks.append(
                Check(
                    f"{r['target_label']}: {c['name']}",
                    c["passed"],
                    c["message"],
                    c.get("value"),
                    c.get("threshold"),
                    r["id"],
                )
            )
    return checks


def _read_suite(path: Path) -> dict[str, Any]:
    if not path.exists():
        fail(f"{path} does not exist")
    try:
        suite = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        fail(f"{path} is not valid YAML: {exc}")
    if not isinstance(suite, dict):
        fail(f"{path} must hold a mapping (dataset, targets, evaluators, thresholds)")
    bias = suite.get("bias")
    if isinstance(bias, dict) and bias.get("files"):  # the user's term lists travel inline
        files = bias.pop("files")
        if not isinstance(files, list):
            fail(f"{path}: bias.files must be a list of YAML files")
        terms = list(bias.get("terms") or [])
        for name in files:
            file = (path.parent / str(name)).resolve()
            try:
                terms.append(yaml.safe_load(file.read_text()))
            except (OSError, yaml.YAMLError) as exc:
                fail(f"{path}: bias file {name}: {exc}")
        bias["terms"] = terms
    return dict(suite)


@eval_app.command("run")
def eval_run(
    suite_file: Path = typer.Argument(..., help="A suite YAML: dataset, targets, evaluators, thresholds."),
    gate: bool = typer.Option(
        False, "--gate", help="Exit 1 when a run fails or a threshold or regression check fails."
    ),
    junit: Path | None = typer.Option(None, "--junit", help="Write the checks as JUnit XML here (for CI systems)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the runs to their end."),
    as_json: bool = JSON,
) -> None:
    """Run a suite (one run per target, as jobs), print a table of scores with intervals and the gate's checks."""
    suite = _read_suite(suite_file)
    t0 = time.monotonic()
    with Client() as c:
        runs = c.post("/api/evals/suites", suite)
        if not wait:
            print_json(runs) if as_json else console.print("Queued " + ", ".join(r["id"] for r in runs))
            return
        for r in runs:
            follow(c, r["job_id"], quiet=as_json)
        runs = [c.get(f"/api/evals/runs/{r['id']}") for r in runs]
    checks = _checks(runs)
    if junit is not None:
        write_junit(junit, str(suite.get("name") or suite_file.stem), checks, time.monotonic() - t0)
    if as_json:
        print_json(runs)
    else:
        console.print(_runs_table(runs))
        if checks:
            print_table(
                [{"check": ch.name, "result": "pass" if ch.passed else "FAIL", "detail": ch.message} for ch in checks],
                ["check", "result", "detail"],
                title="Gate",
            )
    if gate and not all(ch.passed for ch in checks):
        raise typer.Exit(1)


@eval_app.command("ls")
def eval_ls(
    name: str | None = typer.Option(None, "--name", help="Only runs of this suite name."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JSON,
) -> None:
    """List eval runs, newest first."""
    with Client() as c:
        runs = c.get("/api/evals/runs", name=name, limit=limit)
    if as_json:
        print_json(runs)
        return
    rows = [
        {
            "id": r["id"],
            "name": r["name"],
            "status": r["status"],
            "target": r["target_label"],
            "dataset": r["dataset"],
            "rows": r["rows_done"],
            "failed": r["failed_rows"],
            "passed": (r["summary"] or {}).get("passed"),
            "created_at": r["created_at"],
        }
        for r in runs
    ]
    print_table(rows, ["id", "name", "status", "target", "dataset", "rows", "failed", "passed", "created_at"])


@eval_app.command("show")
def eval_show(
    run_id: str = typer.Argument(..., help="An eval run id (evr_…)."),
    rows: int = typer.Option(10, "--rows", help="How many rows to print."),
    failed: bool = typer.Option(False, "--failed", help="Only failed rows."),
    as_json: bool = JSON,
) -> None:
    """A run's summary, checks and first rows."""
    with Client() as c:
        run = c.get(f"/api/evals/runs/{run_id}")
        page = c.get(f"/api/evals/runs/{run_id}/rows", limit=max(1, rows), failed=failed)
    if as_json:
        print_json({"run": run, "rows": page})
        return
    console.print(_runs_table([run]))
    for ch in _checks([run]):
        console.print(f"{'pass' if ch.passed else 'FAIL'}  {ch.name}: {ch.message}", markup=False)
    table = [
        {
            "row": r["index"],
            "status": r["status"],
            "output": (r["output"] or r["error"] or "")[:80],
            **{k: round(v, 3) for k, v in r["scores"].items()},
        }
        for r in page["rows"]
    ]
    score_names = sorted({k for r in page["rows"] for k in r["scores"]})
    print_table(table, ["row", "status", "output", *score_names], title=f"{page['total']} rows")


@eval_app.command("compare")
def eval_compare(
    a: str = typer.Argument(..., help="The baseline run."),
    b: str = typer.Argument(..., help="The run compared with it."),
    rows: int = typer.Option(10, "--rows", help="How many rows to print (regressions first)."),
    as_json: bool = JSON,
) -> None:
    """Compare two runs over the same dataset version: paired tests, wins/losses/ties, regressions first."""
    with Client() as c:
        cmp = c.get("/api/evals/compare", a=a, b=b, rows=max(0, rows))
    if as_json:
        print_json(cmp)
        return
    metrics = [
        {
            "score": m["name"],
            "mean a": round(m["test"]["mean_a"], 4),
            "mean b": round(m["test"]["mean_b"], 4),
            "delta": round(m["test"]["mean_delta"], 4),
            "wins": m["test"]["wins"],
            "losses": m["test"]["losses"],
            "ties": m["test"]["ties"],
            "p": round(m["test"]["p_value"], 4),
            "significant": m["significant"],
        }
        for m in cmp["metrics"]
    ]
    print_table(
        metrics,
        ["score", "mean a", "mean b", "delta", "wins", "losses", "ties", "p", "significant"],
        title=f"{b} vs {a}",
    )
    shown = [
        {
            "row": r["index"],
            "regressed": ", ".join(r["regressed"]),
            "improved": ", ".join(r["improved"]),
            "a": (r["output_a"] or "")[:60],
            "b": (r["output_b"] or "")[:60],
        }
        for r in cmp["rows"][:rows]
    ]
    print_table(shown, ["row", "regressed", "improved", "a", "b"], title="Rows, regressions first")


@eval_app.command("evaluators")
def eval_evaluators(as_json: bool = JSON) -> None:
    """Every evaluator type the server knows, with what it does."""
    with Client() as c:
        kinds = c.get("/api/evals/evaluators")
    if as_json:
        print_json(kinds)
        return
    print_table([{"type": k, "description": d} for k, d in kinds.items()], ["type", "description"])


online_app = typer.Typer(help="Online evaluation: evaluators on a sample of production traces.", no_args_is_help=True)
eval_app.add_typer(online_app, name="online")


@online_app.command("set")
def online_set(
    name: str = typer.Argument(..., help="The rule's name in your project."),
    rule_file: Path = typer.Option(
        ..., "--file", "-f", help="YAML: route/model/prompt, sample_rate, evaluators, judge."
    ),
    as_json: bool = JSON,
) -> None:
    """Create or replace an online evaluation rule (its judge calls act as your key)."""
    rule = _read_suite(rule_file)
    with Client() as c:
        saved = c.put(f"/api/evals/online/{name}", rule)
    print_json(saved) if as_json else console.print(
        f"Rule {saved['name']}: {saved['sample_rate']:.0%} of matching traces"
    )


@online_app.command("ls")
def online_ls(as_json: bool = JSON) -> None:
    """Online rules with what they have scored."""
    with Client() as c:
        rules = c.get("/api/evals/online")
    if as_json:
        print_json(rules)
        return
    print_table(
        [{**r, "filters": ", ".join(f"{k}={v}" for k, v in r["filters"].items())} for r in rules],
        ["name", "filters", "sample_rate", "enabled", "traces_seen", "traces_scored", "errors", "last_error"],
    )


@online_app.command("sweep")
def online_sweep(name: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Evaluate the traces that arrived since the rule's last sweep, now."""
    with Client() as c:
        done = c.post(f"/api/evals/online/{name}/sweep")
    print_json(done) if as_json else console.print(
        f"{done['considered']} traces considered, {done['sampled']} sampled, {done['scored']} scored, "
        f"{done['errors']} errors"
    )


@online_app.command("rm")
def online_rm(name: str = typer.Argument(...)) -> None:
    """Remove a rule (the scores it wrote stay)."""
    with Client() as c:
        c.delete(f"/api/evals/online/{name}")
    console.print(f"Removed rule {name}")
