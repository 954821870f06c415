"""Monitors: volume, errors, latency, cost, tokens, cache hits, guardrail blocks, refusals, quality scores and
feedback over the traces, per route, model, prompt version and project.

SDK (`podium.monitors.sdk`, imported on first use): `podium.monitors.series(metric, by=..., start="24h")`,
`podium.monitors.value(metric, route=..., start="1h")`, `podium.monitors.summary(window="24h")`,
`podium.monitors.metrics()`.
"""

from __future__ import annotations

from typing import Any


def metrics(**options: Any) -> list[dict[str, Any]]:
    """The monitors (see `podium.monitors.sdk.metrics`)."""
    from podium.monitors.sdk import metrics as _metrics

    return _metrics(**options)


def series(metric: str, **options: Any) -> dict[str, Any]:
    """A monitor per bucket and group (see `podium.monitors.sdk.series`)."""
    from podium.monitors.sdk import series as _series

    return _series(metric, **options)


def value(metric: str, **options: Any) -> float | None:
    """A monitor over a whole window (see `podium.monitors.sdk.value`)."""
    from podium.monitors.sdk import value as _value

    return _value(metric, **options)


def summary(**options: Any) -> dict[str, Any]:
    """The headline figures of the last window against the one before."""
    from podium.monitors.sdk import summary as _summary

    return _summary(**options)
