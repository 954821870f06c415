"""The knowledge-base domain: dataset versions chunked and embedded through the gateway into versioned,
labelled indexes, searched by vector, full text or both."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry

DOMAIN = Domain(
    name="kb",
    requires=("data", "gateway", "jobs"),
    tables=("podium.kb.store",),
    api=("podium.kb.routes:router",),
    pages=("podium.kb.pages:router",),
    nav=(NavEntry("Knowledge", "/kb"),),
    jobs=("podium.kb.jobs",),
)
