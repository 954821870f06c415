"""Artifact maintenance built on the blob store: verification as a background job."""

from __future__ import annotations

from typing import Any

from podium.jobs.service import SERVER_ADMIN, JobContext, job_kind


@job_kind("artifacts.verify", role=SERVER_ADMIN, description="Re-hash every stored artifact and list corrupt ones.")
def verify_artifacts(ctx: JobContext) -> dict[str, Any]:
    """Re-hash every blob; the result lists the hashes whose content no longer matches."""
    store = ctx.platform.blobs
    hashes = sorted(store.list())
    corrupt: list[str] = []
    ctx.log(f"verifying {len(hashes)} artifacts in {store.root}")
    for i, digest in enumerate(hashes):
        if not store.verify(digest):
            corrupt.append(digest)
            ctx.log(f"corrupt: sha256:{digest}")
        ctx.progress((i + 1) / max(1, len(hashes)), f"{i + 1}/{len(hashes)} checked, {len(corrupt)} corrupt")
    return {"checked": len(hashes), "corrupt": corrupt}
