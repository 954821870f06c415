"""Drift reports as background jobs (`drift.report`): for windows large enough that a request should not wait."""

from __future__ import annotations

from typing import Any

from podium.drift import service
from podium.drift.report import DriftSpec
from podium.jobs.service import JobContext, job_kind


@job_kind("drift.report", api=False, description="Compare a current window of traces with a reference.")
def run_drift_report(ctx: JobContext) -> dict[str, Any]:
    """Run the report as the key that queued it; the result names it and its verdict."""
    spec = DriftSpec.model_validate(ctx.params["spec"])
    ctx.progress(0.0, "sampling texts", force=True)

    def said(message: str) -> None:
        ctx.log(message)
        ctx.progress(0.5, message)

    report = service.run_report(ctx.platform, ctx.acting(), spec, said)
    ctx.log(f"report {report.id}: drift {'yes' if report.drift else 'no'} (score {report.score})")
    return {"report_id": report.id, "drift": report.drift, "score": report.score}
