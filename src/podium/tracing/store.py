"""Tables of traces and their spans, and the rollup of trace totals that aggregates read.

A trace is one unit of work (a gateway request, an SDK-traced function call) with its totals; spans are
its steps. Links to prompt, model and dataset versions are columns, not free text, so lineage queries
are joins. Gateway columns (route, deployment, cache status, attempts) live on the trace because the
dashboards filter and group by them. The rollup (`trace_rollup`, `trace_latency`) is kept by the trace
writer and by deletions in the same transactions as the traces themselves; see `podium.tracing.rollup`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base
from podium.tracing.kinds import SPAN_KINDS

__all__ = [
    "SPAN_KINDS",
    "STATUSES",
    "Span",
    "SpanEvent",
    "Trace",
    "TraceLatency",
    "TraceRetention",
    "TraceRollup",
]

STATUSES = ("ok", "error")


class Trace(Base):
    """One traced unit of work and its totals."""

    __tablename__ = "traces"
    __table_args__ = (
        Index("ix_traces_project_start", "project_id", "start_time"),
        Index("ix_traces_model_start", "model", "start_time"),
        Index("ix_traces_user_start", "user_id", "start_time"),
        Index("ix_traces_session", "session_id"),
        Index("ix_traces_key_start", "key_id", "start_time"),
        Index("ix_traces_start", "start_time"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    session_id: Mapped[str | None] = mapped_column(String(200), default=None)
    user_id: Mapped[str | None] = mapped_column(String(200), default=None)
    key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    source: Mapped[str] = mapped_column(String(20), default="sdk")  # gateway, sdk, otlp
    status: Mapped[str] = mapped_column(String(10), default="ok")
    start_time: Mapped[datetime] = mapped_column()
    end_time: Mapped[datetime | None] = mapped_column(default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    ttft_ms: Mapped[float | None] = mapped_column(default=None)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    route: Mapped[str | None] = mapped_column(String(200), default=None)
    deployment: Mapped[str | None] = mapped_column(String(200), default=None)
    cache_status: Mapped[str | None] = mapped_column(String(12), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    span_count: Mapped[int] = mapped_column(default=0, server_default="0")
    http_status: Mapped[int | None] = mapped_column(default=None)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    input: Mapped[Any] = mapped_column(Text, default=None, nullable=True)
    output: Mapped[Any] = mapped_column(Text, default=None, nullable=True)


class Span(Base):
    """One step of a trace."""

    __tablename__ = "spans"
    __table_args__ = (
        Index("ix_spans_trace_start", "trace_id", "start_time"),
        # experiments and prompt pages find the spans of a prompt version; most spans have none, and a
        # partial index costs them nothing at ingest
        Index(
            "ix_spans_prompt_version",
            "prompt_version_id",
            sqlite_where=text("prompt_version_id IS NOT NULL"),
            postgresql_where=text("prompt_version_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(40))
    parent_id: Mapped[str | None] = mapped_column(String(40), default=None)
    kind: Mapped[str] = mapped_column(String(20), default="other")
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(10), default="ok")
    start_time: Mapped[datetime] = mapped_column()
    end_time: Mapped[datetime | None] = mapped_column(default=None)
    ttft_ms: Mapped[float | None] = mapped_column(default=None)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    prompt_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    model_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    dataset_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    input: Mapped[Any] = mapped_column(Text, default=None, nullable=True)
    output: Mapped[Any] = mapped_column(Text, default=None, nullable=True)


class SpanEvent(Base):
    """An event of a span sent apart from it, as an OTLP log record (`POST /v1/logs`): GenAI instrumentations
    send the messages of a call this way. It is found by its trace and span ids, among its project's events
    only, and may arrive before or after its span. Its id is a digest of what it holds, so a re-sent record
    is kept once."""

    __tablename__ = "span_events"
    __table_args__ = (Index("ix_span_events_span", "trace_id", "span_id", "time"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    trace_id: Mapped[str] = mapped_column(String(40))
    span_id: Mapped[str] = mapped_column(String(40))
    time: Mapped[datetime] = mapped_column()
    name: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[Any] = mapped_column(JSON, default=None, nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TraceRetention(Base):
    """How many days a project's traces are kept (absent: forever)."""

    __tablename__ = "trace_retention"

    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    days: Mapped[int] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(140), default="")
    updated_at: Mapped[datetime] = mapped_column()


# What the rollup groups traces by, besides time; an absent value is stored as "" (key columns hold no NULL).
ROLLUP_DIMENSIONS = ("project_id", "model", "route", "key_id", "source", "status")
ROLLUP_SUMS = ("traces", "prompt_tokens", "completion_tokens", "cost_micros")
VIEW_MODEL_ROUTE = 1  # rows per model and route (key_id "")
VIEW_KEY = 2  # rows per key (model and route "")


class TraceRollup(Base):
    """Totals of the traces that started in one minute, hour or day (`width` seconds from `slot`, seconds
    since the epoch), per project, source and status, and per model and route or per key (`view`)."""

    __tablename__ = "trace_rollup"

    view: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    width: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(10), primary_key=True)
    traces: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_micros: Mapped[int] = mapped_column(BigInteger)


class TraceLatency(Base):
    """How many traces of a project and model that started in one minute, hour or day had a latency in one
    bin of `podium.tracing.latency` (only bins with traces have a row)."""

    __tablename__ = "trace_latency"

    width: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    traces: Mapped[int] = mapped_column(BigInteger)
