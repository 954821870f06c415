"""The alerts SDK: rules, their history and notifications, and evaluating them now, from Python.

    import podium
    podium.alerts.create_rule({"name": "errors", "metric": "error_rate",
                               "condition": {"type": "threshold", "op": ">", "value": 0.05, "window": "5m"}})
    podium.alerts.evaluate()                  # each rule's state and the events recorded
    podium.alerts.events(rule="errors")

Calls `/api/alerts` on the SDK's one client configuration (`podium.configure`, `PODIUM_URL`, …).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from podium.core.client import Client


def _rule_path(rule: str) -> str:
    return f"/api/alerts/rules/{quote(rule, safe='')}"


def rules(*, url: str | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
    """The rules you see, with their states."""
    with Client(url, api_key) as c:
        return list(c.get("/api/alerts/rules"))


def create_rule(rule: dict[str, Any] | str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Store a rule: its fields as a dict, or its YAML text."""
    body = {"source": rule} if isinstance(rule, str) else rule
    with Client(url, api_key) as c:
        return dict(c.post("/api/alerts/rules", body))


def get_rule(rule: str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """One rule (id or name) with its states, latest events and deliveries."""
    with Client(url, api_key) as c:
        return dict(c.get(_rule_path(rule)))


def test_rule(rule: str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Send a test notification to the rule's channels; the `test` event, its deliveries queued."""
    with Client(url, api_key) as c:
        return dict(c.post(_rule_path(rule) + "/test"))


def delete_rule(rule: str, *, url: str | None = None, api_key: str | None = None) -> None:
    """Delete a rule with its history."""
    with Client(url, api_key) as c:
        c.delete(_rule_path(rule))


def events(
    *,
    rule: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    url: str | None = None,
    api_key: str | None = None,
) -> list[dict[str, Any]]:
    """Firings, reminders and resolutions, newest first."""
    with Client(url, api_key) as c:
        return list(c.get("/api/alerts/events", rule=rule, kind=kind, limit=limit))


def deliveries(
    *,
    rule: str | None = None,
    status: str | None = None,
    limit: int = 100,
    url: str | None = None,
    api_key: str | None = None,
) -> list[dict[str, Any]]:
    """Notifications and how sending them went, newest first."""
    with Client(url, api_key) as c:
        return list(c.get("/api/alerts/deliveries", rule=rule, status=status, limit=limit))


def evaluate(rule: str | None = None, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Evaluate your rules now (or one); notifications go out in the background."""
    with Client(url, api_key, timeout=120) as c:
        return dict(c.post("/api/alerts/evaluate", {"rule": rule} if rule else {}))
