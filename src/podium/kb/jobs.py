"""Knowledge-base builds as background jobs: the job acts as the key that queued the build and reports
progress; the service checked everything before queueing it."""

from __future__ import annotations

from typing import Any

from podium.jobs.service import JobContext, job_kind
from podium.kb import service


@job_kind("kb.build", api=False, description="Chunk and embed a dataset version into a knowledge-base version.")
def run_build(ctx: JobContext) -> dict[str, Any]:
    """Build the version; the result names it and counts its chunks."""
    version_id = ctx.params["version_id"]
    ctx.progress(0.0, f"building knowledge-base version {version_id}", force=True)
    try:
        actor = ctx.acting()
    except BaseException as exc:  # the key was revoked or moved since: the version will never be made
        service.mark_failed(ctx.platform, version_id, str(exc) or type(exc).__name__)
        raise
    version = service.execute_build(ctx.platform, actor, version_id, lambda f, m: ctx.progress(f, m))
    ctx.log(
        f"{version.kb}@{version.version}: {version.row_count} chunks of {version.doc_count} rows of {version.dataset}, "
        f"embedded by {version.embedding_model} ({version.dim} dimensions)"
    )
    return {"kb": version.kb, "version": version.version, "id": version.id, "chunks": version.row_count}
