"""The datasets domain: versioned datasets in the artifact store, imports and exports, preparation
pipelines with lineage, cards and diffs, and the dataset pages."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry

DOMAIN = Domain(
    name="data",
    requires=("tracing", "models", "jobs"),
    tables=("podium.data.store",),
    api=("podium.data.routes:router",),
    pages=("podium.data.pages:router",),
    nav=(NavEntry("Datasets", "/datasets"),),
    cli=(("data", "podium.data.cli:data_app"),),
    jobs=("podium.data.jobs",),
    blobs=("podium.data.service:referenced_blobs",),
    uploads=(r"/api/datasets/[^/]+/import",),
)
