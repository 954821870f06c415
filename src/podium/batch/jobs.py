"""Batch inference as a background job: it acts as the key that queued it and reports progress per row."""

from __future__ import annotations

from typing import Any

from podium.batch import service
from podium.batch.service import BatchSpec
from podium.jobs.service import JobContext, job_kind


@job_kind("models.batch", api=False, description="Run a model over a dataset version into a new dataset version.")
def run_batch(ctx: JobContext) -> dict[str, Any]:
    """Run the batch; the result names the version written and counts the rows that failed."""
    spec = BatchSpec.model_validate(ctx.params["spec"])
    ctx.progress(0.0, f"running {spec.model} over {spec.dataset}", force=True)
    result = service.run_batch(ctx.platform, ctx.acting(), spec, lambda f, m: ctx.progress(f, m), job_id=ctx.job_id)
    ctx.log(
        f"wrote {result.version.ref} ({result.rows} rows, {result.failed} failed) from {result.source}"
        f" with {result.route}"
    )
    version = result.version
    written = {"dataset": version.dataset, "version": version.version, "version_id": version.id, "ref": version.ref}
    return written | result.model_dump(mode="json", exclude={"version"})
