"""`podium prompts experiment …` (start, list, show with results, stop, set shares, rebalance) and
`podium scores …` (score a trace, list scores), through the server's API."""

from __future__ import annotations

from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, fmt, print_json, print_record, print_table
from podium.core.errors import InvalidInput

experiment_app = typer.Typer(help="Experiments: split a prompt's traffic between versions.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")


def _pairs(items: list[str], what: str) -> list[tuple[str, float | None]]:
    """`3=0.5` (version and share) or `3` (version, share left out)."""
    out: list[tuple[str, float | None]] = []
    for item in items:
        version, sep, share = item.partition("=")
        if not version.strip():
            raise InvalidInput(f"{what} {item!r} is not VERSION or VERSION=SHARE")
        try:
            out.append((version.strip(), float(share) if sep else None))
        except ValueError:
            raise InvalidInput(f"{what} {item!r}: the share {share!r} is not a number") from None
    return out


def _ci(est: dict[str, Any], digits: int = 3) -> str:
    """`0.412 [0.371, 0.455]`, or what there is of it."""
    if est.get("mean") is None:
        return "—"
    text = f"{est['mean']:.{digits}g}"
    if est.get("low") is not None:
        text += f" [{est['low']:.{digits}g}, {est['high']:.{digits}g}]"
    return text


def _arms(data: dict[str, Any]) -> str:
    return ", ".join(f"v{a['version']} {a['share']:.3f}" for a in data["arms"])


@experiment_app.command("create")
def experiment_create(
    prompt: str = typer.Argument(..., help="Prompt name."),
    name: str = typer.Option(..., "--name", help="Experiment name (unique per prompt)."),
    arm: list[str] = typer.Option(..., "--arm", help="VERSION or VERSION=SHARE (repeat; version, label or id)."),
    mode: str = typer.Option("fixed", help="fixed, or auto (a bandit shifts traffic toward the best score)."),
    sticky_by: str = typer.Option("user", help="user or session."),
    score: str | None = typer.Option(None, help="Score the bandit maximises (required for auto)."),
    direction: str = typer.Option("higher", help="higher or lower: which score is better."),
    min_samples: int = typer.Option(100, help="Scored traces every arm needs before the bandit moves shares."),
    max_shift: float = typer.Option(0.1, help="Largest change of a share per bandit step."),
    floor: float = typer.Option(0.01, help="Smallest share the bandit leaves an arm."),
    label: str | None = typer.Option(None, help="Assign only requests for this label (default: all but pinned)."),
    as_json: bool = JSON,
) -> None:
    """Start an experiment on a prompt."""
    arms: list[dict[str, Any]] = []
    for version, share in _pairs(arm, "--arm"):
        entry: dict[str, Any] = {"version": int(version) if version.isdigit() else version}
        if share is not None:
            entry["share"] = share
        arms.append(entry)
    body = {
        "name": name,
        "arms": arms,
        "mode": mode,
        "sticky_by": sticky_by,
        "score": score,
        "direction": direction,
        "min_samples": min_samples,
        "max_shift": max_shift,
        "floor": floor,
        "label": label,
    }
    with Client() as c:
        data = c.post(f"/api/prompts/{prompt}/experiments", body)
    if as_json:
        print_json(data)
        return
    console.print(f"Started experiment [bold]{data['name']}[/bold] ({data['id']}) on {prompt}: {_arms(data)}.")


@experiment_app.command("ls")
def experiment_ls(prompt: str = typer.Argument(..., help="Prompt name."), as_json: bool = JSON) -> None:
    """List a prompt's experiments, newest first."""
    with Client() as c:
        rows = c.get(f"/api/prompts/{prompt}/experiments")
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["arms"] = _arms(r)
    print_table(rows, ["id", "name", "status", "mode", "score", "arms", "created_at", "stopped_at"])


@experiment_app.command("show")
def experiment_show(
    experiment_id: str = typer.Argument(..., help="Experiment id (exp_…)."),
    shifts: int = typer.Option(10, help="Share changes to show, newest first."),
    as_json: bool = JSON,
) -> None:
    """Show an experiment: its settings, each arm's results with 95% intervals, and its recent shifts."""
    with Client() as c:
        data = c.get(f"/api/experiments/{experiment_id}")
        res = c.get(f"/api/experiments/{experiment_id}/results")
    if as_json:
        print_json({**data, "results": res})
        return
    keys = ["id", "prompt", "name", "status", "mode", "sticky_by", "score", "direction", "min_samples", "max_shift"]
    print_record(data, [*keys, "floor", "created_by", "created_at", "stopped_at"])
    rows = []
    for a in res["arms"]:
        row = {
            "version": a["version"],
            "share": f"{a['share']:.3f}",
            "traces": a["traces"],
            "error_rate": _ci(a["error_rate"]),
            "latency_ms": _ci(a["latency_ms"], 4),
            "p95_ms": fmt(round(a["latency_ms"]["p95"], 1) if a["latency_ms"]["p95"] is not None else None),
            "cost_usd": _ci(a["cost_usd"]),
            "tokens": _ci(a["tokens"], 4),
        }
        for name in res["score_names"]:
            s = a["scores"][name]
            best = f" · P(best) {s['prob_best']:.2f}" if s["prob_best"] is not None else ""
            row[name] = f"{_ci(s)} n={s['n']}{best}"
        rows.append(row)
    columns = ["version", "share", "traces", "error_rate", "latency_ms", "p95_ms", "cost_usd", "tokens"]
    print_table(rows, columns + res["score_names"], title="arms (95% intervals)")
    if res["truncated"]:
        console.print(f"only the newest {res['limit']} traces of an arm were read")
    if data["shifts"] and shifts > 0:
        log = [
            {
                "at": s["at"],
                "actor": s["actor"],
                "shares": ", ".join(f"v{k} {v:.3f}" for k, v in s["after"].items()),
                "reason": s["reason"],
            }
            for s in data["shifts"][:shifts]
        ]
        print_table(log, ["at", "actor", "shares", "reason"], title="share changes")


@experiment_app.command("stop")
def experiment_stop(experiment_id: str = typer.Argument(..., help="Experiment id."), as_json: bool = JSON) -> None:
    """Stop an experiment (its results stay)."""
    with Client() as c:
        data = c.post(f"/api/experiments/{experiment_id}/stop")
    if as_json:
        print_json(data)
        return
    console.print(f"Stopped experiment [bold]{data['name']}[/bold] ({data['id']}).")


@experiment_app.command("shares")
def experiment_shares(
    experiment_id: str = typer.Argument(..., help="Experiment id."),
    shares: list[str] = typer.Argument(..., help="VERSION=SHARE for every arm, summing to 1."),
    reason: str | None = typer.Option(None, help="Why (kept in the shift log)."),
    as_json: bool = JSON,
) -> None:
    """Set the shares by hand."""
    body: dict[str, Any] = {}
    for version, share in _pairs(shares, "share"):
        if share is None:
            raise InvalidInput(f"share of version {version} missing: write {version}=SHARE")
        body[version] = share
    with Client() as c:
        data = c.put(f"/api/experiments/{experiment_id}/shares", {"shares": body, "reason": reason})
    if as_json:
        print_json(data)
        return
    console.print(f"Shares of [bold]{data['name']}[/bold]: {_arms(data)}.")


@experiment_app.command("rebalance")
def experiment_rebalance(experiment_id: str = typer.Argument(..., help="Experiment id."), as_json: bool = JSON) -> None:
    """Run one bandit step of an auto experiment now."""
    with Client() as c:
        data = c.post(f"/api/experiments/{experiment_id}/rebalance")
    if as_json:
        print_json(data)
        return
    after = ", ".join(f"v{k} {v:.3f}" for k, v in data["after"].items())
    console.print(f"{'Shifted' if data['shifted'] else 'Unchanged'}: {after}")
    console.print(data["reason"])
