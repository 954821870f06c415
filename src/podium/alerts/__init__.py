"""Alerts: rules on monitors and drift scores, their states and history, and notifications.

SDK (`podium.alerts.sdk`, imported on first use): `podium.alerts.rules()`, `create_rule(rule)`,
`get_rule(rule)`, `test_rule(rule)`, `delete_rule(rule)`, `events(rule=...)`, `deliveries(rule=...)`,
`evaluate(rule=None)`.
"""

from __future__ import annotations

from typing import Any


def rules(**options: Any) -> list[dict[str, Any]]:
    """The rules you see, with their states (see `podium.alerts.sdk.rules`)."""
    from podium.alerts.sdk import rules as _rules

    return _rules(**options)


def create_rule(rule: dict[str, Any] | str, **options: Any) -> dict[str, Any]:
    """Store a rule, as a dict or YAML text."""
    from podium.alerts.sdk import create_rule as _create

    return _create(rule, **options)


def get_rule(rule: str, **options: Any) -> dict[str, Any]:
    """One rule (id or name) whole."""
    from podium.alerts.sdk import get_rule as _get

    return _get(rule, **options)


def test_rule(rule: str, **options: Any) -> dict[str, Any]:
    """Send a test notification to the rule's channels."""
    from podium.alerts.sdk import test_rule as _test

    return _test(rule, **options)


def delete_rule(rule: str, **options: Any) -> None:
    """Delete a rule with its history."""
    from podium.alerts.sdk import delete_rule as _delete

    _delete(rule, **options)


def events(**options: Any) -> list[dict[str, Any]]:
    """Firings, reminders and resolutions, newest first."""
    from podium.alerts.sdk import events as _events

    return _events(**options)


def deliveries(**options: Any) -> list[dict[str, Any]]:
    """Notifications and how sending them went."""
    from podium.alerts.sdk import deliveries as _deliveries

    return _deliveries(**options)


def evaluate(rule: str | None = None, **options: Any) -> dict[str, Any]:
    """Evaluate your rules now (or one)."""
    from podium.alerts.sdk import evaluate as _evaluate

    return _evaluate(rule, **options)
