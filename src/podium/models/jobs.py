"""Model registry work that runs as background jobs."""

from __future__ import annotations

from typing import Any

from podium.core.identity import Actor
from podium.jobs.service import JobContext, job_kind
from podium.models import service


@job_kind("models.pull", role="member", description="Download (if needed), hash and register a model version.")
def pull_model(ctx: JobContext) -> dict[str, Any]:
    """Register a model version from a hub id, a path or a pip package, reporting progress."""
    p = ctx.params
    ctx.progress(0.05, f"locating {p['source']}", force=True)
    ctx.log(f"pulling {p['source']} as {p['name']}")
    version = service.register_local(
        ctx.platform,
        Actor.system(request_id=f"job:{ctx.job_id}"),
        p["name"],
        p["source"],
        task=p.get("task"),
        description=p.get("description", ""),
        sha256=p.get("sha256"),
        base=p.get("base"),
        lineage=p.get("lineage") or {},
        config=p.get("config") or {},
        message=p.get("message", ""),
    )
    ctx.log(f"registered {version.model}@{version.version} sha256:{version.sha256}")
    return {"model": version.model, "version": version.version, "id": version.id, "sha256": version.sha256}
