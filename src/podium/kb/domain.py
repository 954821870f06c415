"""The knowledge-base domain: dataset versions chunked and embedded through the gateway into versioned,
labelled indexes, searched by vector, full text or both."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Plug the knowledge-base retriever into the gateway, so chat requests may carry a `retrieval` field."""
    from podium.gateway.service import Gateway
    from podium.kb.retriever import KbRetriever

    gateway = runtime.get(Gateway)
    gateway.retriever = KbRetriever(runtime.platform, gateway)


DOMAIN = Domain(
    name="kb",
    requires=("data", "gateway", "jobs"),
    tables=("podium.kb.store",),
    api=("podium.kb.routes:router",),
    pages=("podium.kb.pages:router",),
    nav=(NavEntry("Knowledge", "/kb"),),
    cli=(("kb", "podium.kb.cli:kb_app"),),
    jobs=("podium.kb.jobs",),
    setup="podium.kb.domain:setup",
)
