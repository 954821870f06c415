"""The guard domain: guardrail scanners and the scan API (policies and the gateway's use of them build on it)."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="guard",
    requires=("gateway",),
    api=("podium.guard.routes:router",),
    cli=(("guard", "podium.guard.cli:guard_app"),),
)
