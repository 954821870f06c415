"""Eval runs as background jobs: the job acts as the key that queued the run and reports progress."""

from __future__ import annotations

from typing import Any

from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.evals import service
from podium.evals.spec import RunSpec
from podium.jobs.service import JobContext, JobInfo, job_kind
from podium.jobs.service import submit as submit_job


@job_kind("evals.run", api=False, description="Run a target over a dataset version and score every row.")
def run_eval(ctx: JobContext) -> dict[str, Any]:
    """Run the eval; the result names the run and its gate verdict."""
    p = ctx.params
    spec = RunSpec.model_validate(p["spec"])
    ctx.progress(0.0, f"evaluating {spec.target.describe()} on {spec.dataset}", force=True)
    run = service.execute(ctx.platform, ctx.acting(), p["run_id"], spec, lambda f, m: ctx.progress(f, m))
    ctx.log(f"run {run.id}: {run.rows_done} rows, {run.failed_rows} failed, {run.model_calls} model calls")
    return {"run_id": run.id, "passed": run.summary.get("passed"), "rows": run.rows_done}


def submit(platform: Platform, actor: Actor, run_id: str, spec: RunSpec) -> JobInfo:
    """Queue a checked run."""
    key_id = actor.principal.key_id if actor.principal is not None else None
    params = {"run_id": run_id, "spec": spec.model_dump(mode="json"), "key_id": key_id}
    return submit_job(platform.db, actor, "evals.run", params, internal=True)
