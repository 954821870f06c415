"""`podium finetune …`: plan a blueprint, list and show blueprints, diff two."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, fail, print_json, print_record, print_table

finetune_app = typer.Typer(
    help="Fine-tuning: blueprints and the runs that train, evaluate, gate and deploy them.", no_args_is_help=True
)
JSON = typer.Option(False, "--json", help="Print JSON.")
MAX_FILE = 64 * 1024


@finetune_app.command("plan")
def finetune_plan(
    base_model: str | None = typer.Option(None, "--base", "-b", help="The base model: `name` or `name@version`."),
    train: str | None = typer.Option(None, "--train", "-t", help="The training dataset: `name` or `name@version`."),
    validation: str | None = typer.Option(None, "--validation", help="A validation dataset version."),
    prompt_field: str | None = typer.Option(None, "--prompt-field", help="The prompt column (text)."),
    completion_field: str | None = typer.Option(None, "--completion-field", help="The completion column (text)."),
    messages_field: str | None = typer.Option(None, "--messages-field", help="A column of chat messages instead."),
    method: str | None = typer.Option(None, "--method", help="lora (default), qlora or full."),
    learning_rate: float | None = typer.Option(None, "--lr", help="The learning rate (> 0)."),
    epochs: float | None = typer.Option(None, "--epochs", help="Epochs (default by data size)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Steps instead of epochs."),
    max_length: int | None = typer.Option(None, "--max-length", help="Tokens per sequence (default: fits the data)."),
    truncation: str | None = typer.Option(None, "--truncation", help="truncate, drop or refuse longer rows."),
    file: Path | None = typer.Option(None, "--file", "-f", help="A blueprint YAML (whole or partial) to start from."),
    as_json: bool = JSON,
) -> None:
    """Build a blueprint from a few choices with defaults for the model and data, check it against the data,
    estimate its time and memory here, and store it (the same blueprint keeps its id)."""
    body: dict[str, Any] = {
        k: v
        for k, v in {
            "base_model": base_model,
            "train": train,
            "validation": validation,
            "prompt_field": prompt_field,
            "completion_field": completion_field,
            "messages_field": messages_field,
            "method": method,
            "learning_rate": learning_rate,
            "epochs": epochs,
            "max_steps": max_steps,
            "max_length": max_length,
            "truncation": truncation,
        }.items()
        if v is not None
    }
    if file is not None:
        if not file.is_file():
            fail(f"{file} is not a file")
        if file.stat().st_size > MAX_FILE:
            fail(f"{file} is larger than {MAX_FILE // 1024} KB")
        body["source"] = file.read_text()
    with Client(timeout=600) as c:
        planned = c.post("/api/finetunes/blueprints/plan", body)
    if as_json:
        print_json(planned)
        return
    bp = planned["blueprint"]
    report, est = bp["report"], bp["report"]["estimate"]
    train_report = report["train"]
    verb = "Planned" if planned["created"] else "Unchanged:"
    console.print(f"{verb} {bp['id']} ({bp['base_model']} on {bp['train']}, {bp['method']})", markup=False)
    console.print(
        f"rows {train_report['rows']} · longest {train_report['longest']} tokens · longer than max_length"
        f" {train_report['too_long']} (truncated {train_report['truncated']}, dropped {train_report['dropped']})",
        markup=False,
    )
    console.print(
        f"estimate: {est['steps']} steps, {est['tokens']} tokens at ~{est['tokens_per_second']} tokens/s"
        f" ≈ {est['seconds']:.0f} s, ~{est['memory_bytes'] / 2**30:.1f} GiB; trainable parameters"
        f" {report['trainable_parameters']:,}",
        markup=False,
    )


@finetune_app.command("ls")
def finetune_ls(
    runs: bool = typer.Option(False, "--runs", help="List runs instead of blueprints."), as_json: bool = JSON
) -> None:
    """List the blueprints (or runs) you see, newest first."""
    with Client() as c:
        rows = c.get("/api/finetunes/runs" if runs else "/api/finetunes/blueprints")
    if as_json:
        print_json(rows)
        return
    if runs:
        print_table(rows, ["id", "blueprint_id", "status", "stage", "progress", "backend", "created_at"])
        return
    print_table(rows, ["id", "base_model", "train", "method", "estimated_seconds", "created_by", "created_at"])


def _print_run(run: dict[str, Any]) -> None:
    print_record(run, ["id", "blueprint_id", "backend", "status", "stage", "progress", "message", "error"])
    for name, stage in (run.get("stages") or {}).items():
        outputs = stage.get("outputs") or {}
        said = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in outputs.items()
            if v is not None and not isinstance(v, dict | list)
        )
        console.print(f"  {name:<9} {stage.get('status', ''):<9} {stage.get('error') or said}"[:400], markup=False)


@finetune_app.command("run")
def finetune_run(
    blueprint_id: str = typer.Argument(..., help="The blueprint's id (ftb_…)."),
    backend: str | None = typer.Option(None, "--backend", help="local or ray (default: the blueprint's)."),
    wait: bool = typer.Option(False, "--wait", help="Follow the run until it ends; exit 1 if it fails."),
    as_json: bool = JSON,
) -> None:
    """Run a blueprint: prepare, train, evaluate against the base, gate, register, deploy."""
    body: dict[str, Any] = {"blueprint": blueprint_id}
    if backend:
        body["backend"] = backend
    with Client(timeout=60) as c:
        run = c.post("/api/finetunes/runs", body)
        if wait:
            seen = ""
            while run["status"] not in ("succeeded", "failed", "cancelled"):
                time.sleep(2)
                run = c.get(f"/api/finetunes/runs/{run['id']}")
                if run["message"] != seen and not as_json:
                    seen = run["message"]
                    console.print(f"{run['progress']:5.0%}  {seen}", markup=False)
    if as_json:
        print_json(run)
    elif wait:
        _print_run(run)
    else:
        console.print(f"Started {run['id']} (follow it with: podium finetune show {run['id']})", markup=False)
    if wait and run["status"] != "succeeded":
        raise typer.Exit(1)


@finetune_app.command("cancel")
def finetune_cancel(run_id: str = typer.Argument(..., help="The run's id (ftrun_…).")) -> None:
    """Stop a run (its checkpoints stay; nothing is registered)."""
    with Client() as c:
        run = c.post(f"/api/finetunes/runs/{run_id}/cancel", {})
    console.print(f"{run['id']}: {run['status']}", markup=False)


@finetune_app.command("promote")
def finetune_promote(run_id: str = typer.Argument(..., help="A deployed run's id (ftrun_…).")) -> None:
    """Give a deployed run's tuned version all the traffic (its model's `stable` alias moves to it)."""
    with Client() as c:
        p = c.post(f"/api/finetunes/runs/{run_id}/promote", {})
    where = f"; route {p['route']} now sends everything to it" if p["route"] else ""
    console.print(f"{p['model']}@stable is version {p['version']}{where}", markup=False)


@finetune_app.command("show")
def finetune_show(
    item_id: str = typer.Argument(..., help="A blueprint's id (ftb_…) or a run's (ftrun_…)."), as_json: bool = JSON
) -> None:
    """A blueprint's YAML and what planning measured, or a run's stages."""
    with Client() as c:
        if item_id.startswith("ftrun_"):
            run = c.get(f"/api/finetunes/runs/{item_id}")
            if as_json:
                print_json(run)
            else:
                _print_run(run)
            return
        bp = c.get(f"/api/finetunes/blueprints/{item_id}")
    if as_json:
        print_json(bp)
        return
    print_record(bp, ["id", "base_model", "train", "method", "estimated_seconds", "created_by", "created_at"])
    console.print(bp["source"], markup=False, highlight=False)


@finetune_app.command("diff")
def finetune_diff(
    a: str = typer.Argument(..., help="A blueprint id."), b: str = typer.Argument(..., help="Another.")
) -> None:
    """The settings that differ between two blueprints."""
    with Client() as c:
        d = c.get("/api/finetunes/blueprints/diff", a=a, b=b)
    if not d["changes"]:
        console.print(f"{a} and {b} are the same", markup=False)
        return
    print_table(d["changes"], ["field", "a", "b"])
