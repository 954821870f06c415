"""`POST /v1/traces`: OTLP/HTTP trace ingest (protobuf or JSON, optionally gzipped), answered as an OTLP
collector answers. Auth is the same API key bearer as `/api`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing.otlp.decode import decode_request, decompress, encode_response, map_request, request_format
from podium.tracing.routes import submit_spans

router = APIRouter(tags=["tracing"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.post("/v1/traces", openapi_extra=_BODY, response_class=Response)
async def otlp_traces(request: Request, actor: ActorDep, platform: PlatformDep) -> Response:
    """Accept an OTLP `ExportTraceServiceRequest`; spans are mapped (GenAI and OpenInference attributes) and
    written in the background. Spans that cannot be taken are counted in `partial_success`."""
    actor.require("member", "send traces")
    fmt = request_format(request.headers.get("content-type"))
    body = await request.body()
    encoding = request.headers.get("content-encoding")
    limit = platform.settings.max_body_bytes
    mapped = await asyncio.to_thread(lambda: map_request(decode_request(decompress(body, encoding, limit), fmt)))
    if mapped.spans:
        await submit_spans(request, actor, platform, {"spans": mapped.spans}, "otlp")
    content, media_type = encode_response(fmt, mapped.rejected, mapped.message)
    return Response(content, media_type=media_type)
