"""Dataset work that runs as background jobs: preparation pipelines (they read and write every row)."""

from __future__ import annotations

from typing import Any

from podium.auth.service import principal_of_key
from podium.core.errors import Forbidden
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import preparation
from podium.jobs.service import JobContext, JobInfo, job_kind
from podium.jobs.service import submit as submit_job


def _acting(ctx: JobContext) -> Actor:
    """Who a job acts as: the key that queued it, with the rights its user has now (a key revoked or a member
    removed since then stops the job), in the project it was queued in."""
    key_id = ctx.params.get("key_id")
    if key_id is None:
        return Actor.system(request_id=f"job:{ctx.job_id}")
    principal = principal_of_key(ctx.platform.db, key_id)
    if principal.project_id != ctx.project_id and not principal.admin:
        raise Forbidden("the key that queued this job now belongs to another project")
    return Actor(principal, request_id=f"job:{ctx.job_id}")


@job_kind("data.prep", api=False, description="Run a preparation pipeline over a dataset version into a new version.")
def run_prep(ctx: JobContext) -> dict[str, Any]:
    """Run the pipeline; the result names the version made."""
    p = ctx.params
    ctx.progress(0.0, f"preparing {p['source']}", force=True)
    version = preparation.prepare(
        ctx.platform,
        _acting(ctx),
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
