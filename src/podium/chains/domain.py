"""The chains domain: versioned graphs of typed steps and agents, run as one trace each, served through
`/api/chains` and, as `chain:<name>@<label>` models, through the gateway."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Plug the chain runner into the gateway, so `"model": "chain:…"` runs a chain."""
    from podium.chains.serving import ChainModels
    from podium.gateway.service import Gateway

    gateway = runtime.get(Gateway)
    gateway.chains = ChainModels(runtime.platform, gateway)


DOMAIN = Domain(
    name="chains",
    requires=("gateway",),
    tables=("podium.chains.store",),
    api=("podium.chains.routes:router", "podium.chains.routes:approvals_router"),
    pages=("podium.chains.pages:router",),
    nav=(NavEntry("Chains", "/chains"),),
    cli=(("chains", "podium.chains.cli:chains_app"),),
    setup="podium.chains.domain:setup",
)
