"""`/api/traces`: span ingest from the SDK (and, later in this module's neighbours, queries)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, status

from podium.core.auth.service import Actor
from podium.core.errors import InvalidInput
from podium.core.http import current_actor, get_platform
from podium.core.platform import Platform
from podium.tracing.ingest import parse_spans, to_records
from podium.tracing.writer import TraceWriter

router = APIRouter(prefix="/api/traces", tags=["tracing"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


def trace_writer(request: Request) -> TraceWriter:
    """The process's trace writer."""
    writer: TraceWriter = request.app.state.trace_writer
    return writer


async def submit_spans(request: Request, actor: Actor, platform: Platform, data: Any, source: str) -> dict[str, int]:
    """Validate spans, hand them to the writer (waiting for room if its queue is full), and count them."""
    actor.require("member", "send traces")
    spans = parse_spans(data)
    project_id = actor.project_id or ""
    key_id = actor.principal.key_id if actor.principal is not None else None
    records = await asyncio.to_thread(
        to_records, spans, project_id=project_id, key_id=key_id, blobs=platform.blobs, source=source
    )
    writer = trace_writer(request)
    for record in records:
        await writer.submit(record)
    return {"spans": len(spans), "traces": len(records)}


@router.post("/ingest", status_code=status.HTTP_202_ACCEPTED)
async def ingest(request: Request, actor: ActorDep, platform: PlatformDep) -> dict[str, int]:
    """Accept a batch of spans (`{"spans": [...]}`, see `SpanIn`); they are written in the background."""
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    return await submit_spans(request, actor, platform, data, "sdk")
