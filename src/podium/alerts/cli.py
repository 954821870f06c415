"""`podium alerts …`: alert rules (ls, add -f rule.yaml, show, rm), their history (events), notifications
(deliveries) and evaluating the rules now."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from podium.core.client import Client
from podium.core.console import console, fail, print_json, print_record, print_table

alerts_app = typer.Typer(
    help="Alerts: rules on monitors and drift, their history and notifications.", no_args_is_help=True
)
rules_app = typer.Typer(help="Alert rules.", no_args_is_help=True)
alerts_app.add_typer(rules_app, name="rules")
JSON = typer.Option(False, "--json", help="Print JSON.")
MAX_FILE = 64 * 1024


def _path(ref: str) -> str:
    return f"/api/alerts/rules/{quote(ref, safe='')}"


@rules_app.command("ls")
def rules_ls(as_json: bool = JSON) -> None:
    """The rules you see, with their states."""
    with Client() as c:
        rows = c.get("/api/alerts/rules")
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["name", "state", "severity", "summary", "value", "evaluated_at", "id"])


@rules_app.command("add")
def rules_add(
    file: Path = typer.Option(..., "--file", "-f", help="The rule as YAML (name, metric, condition, channels, …)."),
    replace: bool = typer.Option(False, "--replace", help="Replace the rule of the same name if there is one."),
    as_json: bool = JSON,
) -> None:
    """Check and store a rule (with --replace, replace the rule of that name)."""
    if not file.is_file():
        fail(f"{file} is not a file")
    if file.stat().st_size > MAX_FILE:
        fail(f"{file} is larger than {MAX_FILE // 1024} KB")
    body = {"source": file.read_text()}
    with Client() as c:
        rule = None
        if replace:
            import yaml

            try:
                name = (yaml.safe_load(body["source"]) or {}).get("name")
            except (yaml.YAMLError, AttributeError):
                name = None
            names = {r["name"]: r["id"] for r in c.get("/api/alerts/rules")}
            if isinstance(name, str) and name in names:
                rule = c.put(_path(names[name]), body)
        if rule is None:
            rule = c.post("/api/alerts/rules", body)
    if as_json:
        print_json(rule)
    else:
        console.print(f"Stored {rule['name']} ({rule['id']}): {rule['summary']}", markup=False)


@rules_app.command("show")
def rules_show(rule: str = typer.Argument(..., help="The rule's id or name."), as_json: bool = JSON) -> None:
    """A rule: its spec, state, latest events and deliveries."""
    with Client() as c:
        detail = c.get(_path(rule))
    if as_json:
        print_json(detail)
        return
    print_record(detail, ["id", "name", "state", "summary", "severity", "enabled", "value", "evaluated_at"])
    channels = detail["spec"].get("channels") or []
    console.print("channels: " + (", ".join(next(iter(ch.values())) for ch in channels) or "—"), markup=False)
    if detail["events"]:
        print_table(
            _event_rows(detail["events"]), ["at", "kind", "value", "threshold", "notified", "deliveries"], "events"
        )


@rules_app.command("test")
def rules_test(rule: str = typer.Argument(..., help="The rule's id or name."), as_json: bool = JSON) -> None:
    """Send a test notification to the rule's channels (the rule's state does not change)."""
    with Client() as c:
        event = c.post(_path(rule) + "/test")
    if as_json:
        print_json(event)
        return
    targets = ", ".join(f"{d['channel']} {d['target']}" for d in event["deliveries"])
    console.print(f"Test notification queued ({event['id']}) to {targets}", markup=False)


def _set_enabled(rule: str, enabled: bool) -> None:
    with Client() as c:
        detail = c.get(_path(rule))
        c.put(_path(detail["id"]), {**detail["spec"], "enabled": enabled})
    console.print(f"{'Enabled' if enabled else 'Disabled'} {detail['name']}", markup=False)


@rules_app.command("enable")
def rules_enable(rule: str = typer.Argument(..., help="The rule's id or name.")) -> None:
    """Evaluate the rule again."""
    _set_enabled(rule, True)


@rules_app.command("disable")
def rules_disable(rule: str = typer.Argument(..., help="The rule's id or name.")) -> None:
    """Stop evaluating the rule (its state and history stay)."""
    _set_enabled(rule, False)


@rules_app.command("rm")
def rules_rm(rule: str = typer.Argument(..., help="The rule's id or name.")) -> None:
    """Delete a rule with its history."""
    with Client() as c:
        c.delete(_path(rule))
    console.print(f"Deleted {rule}", markup=False)


def _event_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **e,
            "deliveries": ", ".join(f"{d['channel']} {d['status']} ({d['attempts']})" for d in e["deliveries"]) or "—",
        }
        for e in events
    ]


@alerts_app.command("events")
def events(
    rule: str | None = typer.Option(None, "--rule", "-r", help="One rule's (id or name)."),
    kind: str | None = typer.Option(None, "--kind", help="firing, reminder, resolved or test."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many, newest first."),
    as_json: bool = JSON,
) -> None:
    """The history: firings, reminders and resolutions, with how their notifications went."""
    params: dict[str, Any] = {"limit": limit, "rule": rule, "kind": kind}
    with Client() as c:
        rows = c.get("/api/alerts/events", **{k: v for k, v in params.items() if v is not None})
    if as_json:
        print_json(rows)
    else:
        print_table(_event_rows(rows), ["at", "rule_name", "kind", "severity", "message", "notified", "deliveries"])


@alerts_app.command("deliveries")
def deliveries(
    rule: str | None = typer.Option(None, "--rule", "-r", help="One rule's (id or name)."),
    status: str | None = typer.Option(None, "--status", help="pending, sending, delivered or failed."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Notifications: where they went, their status, attempts and last error."""
    params: dict[str, Any] = {"limit": limit, "rule": rule, "status": status}
    with Client() as c:
        rows = c.get("/api/alerts/deliveries", **{k: v for k, v in params.items() if v is not None})
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["created_at", "channel", "target", "status", "attempts", "last_error", "id"])


@alerts_app.command("evaluate")
def evaluate(
    rule: str | None = typer.Option(None, "--rule", "-r", help="Only this rule (id or name)."),
    as_json: bool = JSON,
) -> None:
    """Evaluate your rules now; notifications go out in the background."""
    with Client(timeout=120) as c:
        result = c.post("/api/alerts/evaluate", {"rule": rule} if rule else {})
    if as_json:
        print_json(result)
        return
    print_table(result["rules"], ["rule_name", "state", "event", "summary", "error"])
