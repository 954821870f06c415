"""The drift domain: reports comparing a reference window (or a dataset version) with a current window of a
project's traces, served through `/api/drift`, `podium drift` and the dashboard."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry

DOMAIN = Domain(
    name="drift",
    requires=("tracing", "data", "guard", "jobs"),
    tables=("podium.drift.store",),
    api=("podium.drift.routes:router",),
    pages=("podium.drift.pages:router",),
    nav=(NavEntry("Drift", "/drift"),),
    cli=(("drift", "podium.drift.cli:drift_app"),),
    jobs=("podium.drift.jobs",),
)
