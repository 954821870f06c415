"""The chains domain: versioned graphs of typed steps and agents, run as one trace each, served through
`/api/chains` and, as `chain:<name>@<label>` models, through the gateway."""

from __future__ import annotations

import logging

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime

log = logging.getLogger("podium.chains")


def setup(runtime: Runtime) -> None:
    """Plug the chain runner into the gateway, so `"model": "chain:…"` runs a chain, and list the tools of
    the MCP servers the settings name when the server starts."""
    from podium.chains.serving import ChainModels
    from podium.gateway.service import Gateway

    gateway = runtime.get(Gateway)
    gateway.chains = ChainModels(runtime.platform, gateway)
    if runtime.settings.mcp_servers:
        runtime.on_start("MCP tools", lambda: _load_mcp(runtime))


async def _load_mcp(runtime: Runtime) -> None:
    """Register every configured MCP server's tools; a server that cannot be listed is logged and reported by
    `GET /api/chain-tools` (its tools are missing until the next start)."""
    from pydantic import ValidationError

    from podium.chains import mcp, service

    servers, bad = [], {}
    for i, raw in enumerate(runtime.settings.mcp_servers):
        try:
            servers.append(mcp.McpServer.model_validate(raw))
        except ValidationError as exc:
            bad[str(raw.get("name") or f"mcp_servers[{i}]")] = f"invalid settings: {exc.errors()[0]['msg']}"
    tools, unavailable = await mcp.load_servers(servers)
    unavailable |= bad
    service.add_tools(runtime.platform, tools, unavailable)
    for name, why in unavailable.items():
        log.warning("MCP server %s: %s", name, why)
    log.info("MCP tools: %s", ", ".join(t.name for t in tools) or "none")


DOMAIN = Domain(
    name="chains",
    requires=("gateway",),
    tables=("podium.chains.store",),
    api=("podium.chains.routes:router", "podium.chains.routes:approvals_router", "podium.chains.routes:tools_router"),
    pages=("podium.chains.pages:router",),
    nav=(NavEntry("Chains", "/chains"),),
    cli=(("chains", "podium.chains.cli:chains_app"),),
    setup="podium.chains.domain:setup",
)
