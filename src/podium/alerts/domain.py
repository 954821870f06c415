"""The alerts domain: rules on monitors and drift, their states, history and notifications."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="alerts",
    requires=("monitors", "drift", "jobs"),
)
