"""The artifacts domain: maintenance of the content-addressed blob store every domain writes to."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="artifacts",
    requires=("jobs",),
    jobs=("podium.artifacts.jobs",),
    cli=(("artifacts", "podium.artifacts.cli:artifacts_app"),),
)
