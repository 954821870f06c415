"""The drift domain: reports comparing a reference window (or a dataset version) with a current window."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="drift",
    requires=("tracing", "data", "guard"),
)
