"""The tracing domain's interface: trace queries, aggregates, retention and erasure, the logic behind
`/api/traces`, `podium traces` and the dashboard's trace pages (no HTTP here). Other modules and domains
import from here; the work is done along the seams below it:

- `filters`: the filters as query parameters and as SQL conditions, and the caller's project scope;
- `views`: what reads answer (summaries, records, span skeletons and pages, payloads);
- `queries`: lists paged with keyset cursors, one trace and its spans, payloads;
- `aggregates`: totals and latency percentiles per time bucket and group, from the trace rollup or, for
  filters it does not keep, from the traces (bounded);
- `retention`: purges, per-project retention and a user's erasure, in short transactions that keep the
  rollup in step.

Scope: a key that is not an admin's sees its own project's traces only; admins see every project.
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing.aggregates import (
    BUCKETS,
    GROUPS,
    MAX_BUCKETS,
    Aggregate,
    AggregateRow,
    aggregate,
    aggregate_with_total,
)
from podium.tracing.filters import (
    FILTER_PARAMS,
    TraceFilters,
    int_param,
    parse_filters,
    started_before,
    started_from,
)
from podium.tracing.ingest import parse_spans, to_records
from podium.tracing.queries import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_SKELETON,
    MAX_SPAN_PAGE,
    SORTS,
    SortKey,
    check_trace_ids,
    encode_cursor,
    get_payload,
    get_spans,
    get_trace,
    list_traces,
)
from podium.tracing.retention import (
    DELETE_CHUNK,
    MAX_RETENTION_DAYS,
    Deleted,
    RetentionInfo,
    apply_retention,
    clear_retention,
    delete_traces,
    erase_user,
    get_retention,
    parse_purge,
    purge,
    retention_loop,
    set_retention,
)
from podium.tracing.texts import TextSample, sample_texts
from podium.tracing.views import (
    ArtifactRef,
    Payload,
    SpanFull,
    SpanNode,
    SpanPage,
    TraceDetail,
    TracePage,
    TraceRecord,
    TraceSummary,
    artifact_ref,
)
from podium.tracing.writer import TraceWriter

__all__ = [
    "BUCKETS",
    "DEFAULT_LIMIT",
    "DELETE_CHUNK",
    "FILTER_PARAMS",
    "GROUPS",
    "MAX_BUCKETS",
    "MAX_LIMIT",
    "MAX_RETENTION_DAYS",
    "MAX_SKELETON",
    "MAX_SPAN_PAGE",
    "SORTS",
    "Aggregate",
    "AggregateRow",
    "ArtifactRef",
    "Deleted",
    "Payload",
    "RetentionInfo",
    "SortKey",
    "SpanFull",
    "SpanNode",
    "SpanPage",
    "TextSample",
    "TraceDetail",
    "TraceFilters",
    "TracePage",
    "TraceRecord",
    "TraceSummary",
    "accept_spans",
    "aggregate",
    "aggregate_with_total",
    "apply_retention",
    "artifact_ref",
    "check_trace_ids",
    "clear_retention",
    "delete_traces",
    "encode_cursor",
    "erase_user",
    "get_payload",
    "get_retention",
    "get_spans",
    "get_trace",
    "int_param",
    "list_traces",
    "parse_filters",
    "parse_purge",
    "purge",
    "retention_loop",
    "sample_texts",
    "set_retention",
    "started_before",
    "started_from",
]


async def accept_spans(platform: Platform, actor: Actor, writer: TraceWriter, data: Any, source: str) -> dict[str, int]:
    """Validate a body of spans (`{"spans": [...]}`), refuse trace ids another project holds, and hand the
    records to the writer (waiting for room if its queue is full); the counts accepted."""
    actor.require("member", "send traces")
    spans = parse_spans(data)
    project_id = actor.project_id or ""
    key_id = actor.principal.key_id if actor.principal is not None else None
    await asyncio.to_thread(check_trace_ids, platform, project_id, [s.trace_id for s in spans])
    records = await asyncio.to_thread(
        to_records, spans, project_id=project_id, key_id=key_id, blobs=platform.blobs, source=source
    )
    for record in records:
        await writer.submit(record)
    return {"spans": len(spans), "traces": len(records)}
