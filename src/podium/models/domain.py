"""The models domain: the registry (versions, aliases, lineage), providers, prices, the local engine and
its model workers."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry

DOMAIN = Domain(
    name="models",
    requires=("jobs",),
    tables=("podium.models.store",),
    api=("podium.models.routes:router",),
    pages=("podium.models.pages:router",),
    nav=(NavEntry("Models", "/models"),),
    cli=(("models", "podium.models.cli:models_app"),),
    jobs=("podium.models.jobs",),
    blobs=("podium.models.service:referenced_blobs",),
)
