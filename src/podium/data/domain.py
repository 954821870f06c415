"""The datasets domain: versioned datasets in the artifact store, imports and exports, preparation
pipelines with lineage, cards and diffs, and the dataset pages."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="data",
    requires=("tracing", "models", "jobs"),
    tables=("podium.data.store",),
    api=("podium.data.routes:router",),
    # pages: added with podium.data.pages
    cli=(("data", "podium.data.cli:data_app"),),
    jobs=("podium.data.jobs",),
    blobs=("podium.data.service:referenced_blobs",),
    uploads=(r"/api/datasets/[^/]+/import",),
)
