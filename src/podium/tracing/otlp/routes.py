"""`POST /v1/traces` and `POST /v1/logs`: OTLP/HTTP trace and log ingest (protobuf or JSON, optionally
gzipped), answered as an OTLP collector answers; errors in the `/v1` (OpenAI) shape. Auth is the same API key
bearer as `/api`; what is sent belongs to the key's project."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing.events import store_events
from podium.tracing.otlp.decode import (
    Format,
    decode_request,
    decompress,
    encode_response,
    map_request,
    request_format,
)
from podium.tracing.otlp.logs import decode_logs, encode_logs_response, map_logs
from podium.tracing.routes import submit_spans

router = APIRouter(tags=["tracing"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
_T = TypeVar("_T")

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


async def _mapped(request: Request, platform: Platform, parse: Callable[[bytes, Format], _T]) -> tuple[Format, _T]:
    """The request's format and its body, decompressed within the body limit and parsed by `parse` on a worker
    thread (protobuf parsing of a large export would hold the event loop)."""
    fmt = request_format(request.headers.get("content-type"))
    body = await request.body()
    encoding = request.headers.get("content-encoding")
    limit = platform.settings.max_body_bytes
    return fmt, await asyncio.to_thread(lambda: parse(decompress(body, encoding, limit), fmt))


@router.post("/v1/traces", openapi_extra=_BODY, response_class=Response)
async def otlp_traces(request: Request, actor: ActorDep, platform: PlatformDep) -> Response:
    """Accept an OTLP `ExportTraceServiceRequest`; spans are mapped (GenAI and OpenInference attributes) and
    written in the background. Spans that cannot be taken are counted in `partial_success`."""
    actor.require("member", "send traces")
    fmt, mapped = await _mapped(request, platform, lambda data, f: map_request(decode_request(data, f)))
    if mapped.spans:
        await submit_spans(request, actor, platform, {"spans": mapped.spans}, "otlp")
    content, media_type = encode_response(fmt, mapped.rejected, mapped.message)
    return Response(content, media_type=media_type)


@router.post("/v1/logs", openapi_extra=_BODY, response_class=Response)
async def otlp_logs(request: Request, actor: ActorDep, platform: PlatformDep) -> Response:
    """Accept an OTLP `ExportLogsServiceRequest`: log records naming a trace and span (GenAI events such as
    `gen_ai.user.message`, `gen_ai.choice`, `gen_ai.client.inference.operation.details`) are kept as events
    of that span and shown with it; others are counted in `partial_success`."""
    actor.require("member", "send logs")
    fmt, mapped = await _mapped(request, platform, lambda data, f: map_logs(decode_logs(data, f)))
    if mapped.events:
        await asyncio.to_thread(store_events, platform, actor, mapped.events)
    content, media_type = encode_logs_response(fmt, mapped.rejected, mapped.message)
    return Response(content, media_type=media_type)
