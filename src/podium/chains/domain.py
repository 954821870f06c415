"""The chains domain: versioned graphs of typed steps and agents, run as one trace each."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="chains",
    requires=("gateway",),
    tables=("podium.chains.store",),
    api=("podium.chains.routes:router",),
)
