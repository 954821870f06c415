"""A fine-tune run as a background job: it acts as the key that started it and runs the pipeline's stages."""

from __future__ import annotations

from typing import Any

from podium.core.errors import PodiumError
from podium.finetune import runs
from podium.finetune import spec as ft_spec
from podium.finetune.pipeline import Pipeline
from podium.jobs.service import JobCancelled, JobContext, job_kind


@job_kind(
    "finetune.run",
    api=False,
    description="Run a fine-tuning blueprint: prepare, train, evaluate, gate, register, deploy.",
)
def run_finetune(ctx: JobContext) -> dict[str, Any]:
    """Run the stages not yet done; the run records how it ended."""
    p = ctx.params
    run_id = str(p["run_id"])
    blueprint = ft_spec.load(p["blueprint"])
    try:
        result = Pipeline(ctx, run_id, ctx.acting(), blueprint).run()
    except JobCancelled:
        if not ctx.stopping:
            runs.finish(ctx.platform, run_id, "cancelled", "cancelled while running")
        raise  # a server stopping requeues the job: the run stays running and resumes
    except PodiumError as exc:
        runs.finish(ctx.platform, run_id, "failed", exc.message)
        raise
    except Exception as exc:
        runs.finish(ctx.platform, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    runs.finish(ctx.platform, run_id, "succeeded", None, result)
    return {"run_id": run_id, "deployed": (result.get("deploy") or {}).get("version")}
