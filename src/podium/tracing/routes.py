"""`/api/traces`: span ingest from the SDK, queries (lists, one trace and its spans, payloads, aggregates),
retention, purge and erasure; the logic is in `service`."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from podium.core.errors import InvalidInput
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing import service
from podium.tracing.writer import TraceWriter

router = APIRouter(prefix="/api/traces", tags=["tracing"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


def trace_writer(request: Request) -> TraceWriter:
    """The process's trace writer."""
    writer: TraceWriter = request.app.state.runtime.get(TraceWriter)
    return writer


async def submit_spans(request: Request, actor: Actor, platform: Platform, data: Any, source: str) -> dict[str, int]:
    """Hand a body of spans to the tracing service with this process's writer."""
    return await service.accept_spans(platform, actor, trace_writer(request), data, source)


@router.post("/ingest", status_code=status.HTTP_202_ACCEPTED)
async def ingest(request: Request, actor: ActorDep, platform: PlatformDep) -> dict[str, int]:
    """Accept a batch of spans (`{"spans": [...]}`, see `SpanIn`); they are written in the background."""
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    return await submit_spans(request, actor, platform, data, "sdk")


# --- queries ---------------------------------------------------------------------------------------

Param = Annotated[str | None, Query()]


def trace_filters(
    from_: Annotated[
        str | None, Query(alias="from", description="Start time at or after: ISO-8601, or a duration ago (24h).")
    ] = None,
    to: Annotated[str | None, Query(description="Start time before: ISO-8601, or a duration ago.")] = None,
    project: Annotated[str | None, Query(description="Project name or id (admins; others see their own).")] = None,
    model: Param = None,
    user: Annotated[str | None, Query(description="The end user's id, as the application sent it.")] = None,
    session: Param = None,
    tag: Annotated[str | None, Query(description="One tag, exactly.")] = None,
    status: Annotated[str | None, Query(description="ok or error.")] = None,
    name: Annotated[str | None, Query(description="The trace's name, exactly.")] = None,
    source: Annotated[str | None, Query(description="gateway, sdk or otlp.")] = None,
    route: Param = None,
    key: Annotated[str | None, Query(description="API key id or prefix (pk-…).")] = None,
    min_latency_ms: Param = None,
    max_latency_ms: Param = None,
    min_cost_usd: Param = None,
    max_cost_usd: Param = None,
    q: Annotated[str | None, Query(description="Case-insensitive text in the trace's input or output.")] = None,
) -> service.TraceFilters:
    """The filters every trace query shares, validated by the service."""
    return service.parse_filters(
        {
            "from": from_,
            "to": to,
            "project": project,
            "model": model,
            "user": user,
            "session": session,
            "tag": tag,
            "status": status,
            "name": name,
            "source": source,
            "route": route,
            "key": key,
            "min_latency_ms": min_latency_ms,
            "max_latency_ms": max_latency_ms,
            "min_cost_usd": min_cost_usd,
            "max_cost_usd": max_cost_usd,
            "q": q,
        }
    )


FiltersDep = Annotated[service.TraceFilters, Depends(trace_filters)]


@router.get("")
def list_traces(
    actor: ActorDep,
    platform: PlatformDep,
    filters: FiltersDep,
    limit: Annotated[str | None, Query(description=f"1-{service.MAX_LIMIT}, default {service.DEFAULT_LIMIT}.")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    sort: Annotated[str, Query(description="start_time, latency_ms, cost or tokens.")] = "start_time",
    order: Annotated[str, Query(description="desc (default) or asc.")] = "desc",
    bodies: Annotated[bool, Query(description="Include stored inputs, outputs and metadata (exports).")] = False,
) -> service.TracePage:
    """Traces matching the filters, newest (or slowest, or costliest) first, with a cursor to the next page."""
    n = service.int_param("limit", limit, service.DEFAULT_LIMIT, 1, service.MAX_LIMIT)
    return service.list_traces(
        platform, actor, filters, sort=sort, order=order, limit=n, cursor=cursor or None, bodies=bodies
    )


@router.get("/aggregate")
def aggregate(
    actor: ActorDep,
    platform: PlatformDep,
    filters: FiltersDep,
    bucket: Annotated[str, Query(description="minute, hour or day (UTC).")] = "hour",
    by: Annotated[str, Query(description="model, route, key, user or none.")] = "none",
) -> service.Aggregate:
    """Count, errors, tokens, cost and latency percentiles per time bucket and group."""
    return service.aggregate(platform, actor, filters, bucket=bucket, by=by)


# --- retention and erasure -------------------------------------------------------------------------


@router.get("/retention/{project}")
def get_retention(project: str, actor: ActorDep, platform: PlatformDep) -> service.RetentionInfo:
    """How many days a project's traces are kept (null: forever)."""
    return service.get_retention(platform, actor, project)


@router.put("/retention/{project}")
def set_retention(
    project: str, actor: ActorDep, platform: PlatformDep, body: Annotated[dict[str, Any], Body(examples=[{"days": 30}])]
) -> service.RetentionInfo:
    """Keep a project's traces N days (admin); older ones are deleted by the hourly retention job."""
    return service.set_retention(platform, actor, project, body)


@router.delete("/retention/{project}")
def clear_retention(project: str, actor: ActorDep, platform: PlatformDep) -> service.RetentionInfo:
    """Keep a project's traces forever (admin)."""
    return service.clear_retention(platform, actor, project)


@router.post("/purge")
def purge(
    actor: ActorDep,
    platform: PlatformDep,
    body: Annotated[dict[str, Any], Body(examples=[{"before": "2026-01-01T00:00:00Z", "project": "default"}])],
) -> service.Deleted:
    """Delete the traces (of one project, or all) that started before a time, with their spans (admin)."""
    before, project = service.parse_purge(body)
    return service.purge(platform, actor, before, project)


@router.delete("/users/{user_id}")
def erase_user(user_id: str, actor: ActorDep, platform: PlatformDep) -> service.Deleted:
    """Delete every trace of an end user and their spans (admin; the right to erasure); audited."""
    return service.erase_user(platform, actor, user_id)


# --- one trace -------------------------------------------------------------------------------------


@router.get("/{trace_id}")
def get_trace(
    trace_id: str,
    actor: ActorDep,
    platform: PlatformDep,
    offset: Annotated[int, Query(description="First skeleton node to return.")] = 0,
    limit: Annotated[int, Query(description=f"Skeleton nodes to return (at most {service.MAX_SKELETON}).")] = 1000,
) -> service.TraceDetail:
    """A trace in full and its span skeleton (no span payloads) in tree order, a page at a time: a trace
    of many spans opens with its first `limit` nodes; `next_offset` fetches more."""
    return service.get_trace(platform, actor, trace_id, offset=offset, limit=limit)


@router.get("/{trace_id}/spans")
def get_spans(
    trace_id: str,
    actor: ActorDep,
    platform: PlatformDep,
    ids: Annotated[str | None, Query(description="Comma-separated span ids (at most 500).")] = None,
    offset: Annotated[str | None, Query(description="Position in tree order.")] = None,
    limit: Annotated[str | None, Query(description=f"1-{service.MAX_SPAN_PAGE}, default 100.")] = None,
) -> service.SpanPage:
    """Full spans (inputs, outputs, attributes) of a trace: by id, or a page of its tree order."""
    wanted = [i.strip() for i in ids.split(",") if i.strip()] if ids is not None else None
    start = service.int_param("offset", offset, 0, 0, 10**9)
    n = service.int_param("limit", limit, 100, 1, service.MAX_SPAN_PAGE)
    return service.get_spans(platform, actor, trace_id, ids=wanted, offset=start, limit=n)


@router.get("/{trace_id}/payload", response_class=Response)
def get_payload(
    trace_id: str,
    actor: ActorDep,
    platform: PlatformDep,
    span: Annotated[str | None, Query(description="Span id; absent: the trace's own payload.")] = None,
    field: Annotated[str, Query(description="input or output.")] = "input",
) -> Response:
    """An input or output in full, read from the artifact store when the row keeps a marker."""
    payload = service.get_payload(platform, actor, trace_id, span_id=span or None, field=field)
    if payload.sha256 is None:
        return Response(payload.data, media_type=payload.media_type)
    headers = {"X-Podium-Artifact": payload.sha256}
    return StreamingResponse(payload.chunks(), media_type=payload.media_type, headers=headers)
