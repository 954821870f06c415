"""The monitors domain: figures over the traces and their scores, read from rollups, as an API, a CLI,
Prometheus metrics and dashboard pages."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="monitors",
    requires=("tracing", "gateway"),
)
