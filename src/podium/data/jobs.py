"""Dataset work that runs as background jobs: preparation pipelines (they read and write every row)."""

from __future__ import annotations

from typing import Any

from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import preparation
from podium.jobs.service import JobContext, JobInfo, job_kind
from podium.jobs.service import submit as submit_job


@job_kind("data.prep", api=False, description="Run a preparation pipeline over a dataset version into a new version.")
def run_prep(ctx: JobContext) -> dict[str, Any]:
    """Run the pipeline; the result names the version made."""
    p = ctx.params
    ctx.progress(0.0, f"preparing {p['source']}", force=True)
    version = preparation.prepare(
        ctx.platform,
        ctx.acting(),
        p["source"],
        p["pipeline"],
        into=p.get("into"),
        message=p.get("message", ""),
        progress=lambda fraction, message: ctx.progress(fraction, message),
    )
    ctx.log(f"made {version.dataset}@{version.version} ({version.row_count} rows) from {p['source']}")
    return {"dataset": version.dataset, "version": version.version, "id": version.id, "rows": version.row_count}


def submit(
    platform: Platform, actor: Actor, source: str, spec: Any, *, into: str | None = None, message: str = ""
) -> JobInfo:
    """Check a pipeline whole (its steps and settings, the source, the right to write the target) before
    queueing it as a job, so a bad one fails at once and naming the field."""
    canonical = preparation.check(platform, actor, source, spec, into=into)
    key_id = actor.principal.key_id if actor.principal is not None else None
    params = {"source": source, "pipeline": canonical, "into": into, "message": message, "key_id": key_id}
    return submit_job(platform.db, actor, "data.prep", params, internal=True)
