"""Tables of traces and their spans, and the rollup of trace totals that aggregates read.

A trace is one unit of work (a gateway request, an SDK-traced function call) with its totals; spans are
its steps. Links to prompt, model and dataset versions are columns, not free text, so lineage queries
are joins. Gateway columns (route, deployment, cache status, attempts) live on the trace because the
dashboards filter and group by them. The rollup (`trace_rollup`) is kept by the trace writer and by
deletions in the same transactions as the traces themselves; see `podium.tracing.rollup`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, PrimaryKeyConstraint, String, Table, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base
from podium.tracing.kinds import SPAN_KINDS
from podium.tracing.latency import BINS

__all__ = ["SPAN_KINDS", "STATUSES", "Span", "Trace", "TraceRetention", "TraceRollup"]

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


class TraceRetention(Base):
    """How many days a project's traces are kept (absent: forever)."""

    __tablename__ = "trace_retention"

    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    days: Mapped[int] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(140), default="")
    updated_at: Mapped[datetime] = mapped_column()


# What the rollup groups traces by, besides time; an absent value is stored as "" (a key column has no NULL).
ROLLUP_DIMENSIONS = ("project_id", "model", "route", "key_id", "source", "status")
ROLLUP_SUMS = ("traces", "prompt_tokens", "completion_tokens", "cost_micros")
HISTOGRAM = tuple(f"h{i}" for i in range(BINS))  # traces per latency bin (`podium.tracing.latency`)

rollup_table = Table(
    "trace_rollup",
    Base.metadata,
    Column("width", Integer, nullable=False),  # seconds a row covers: 60, 3600 or 86400
    Column("slot", BigInteger, nullable=False),  # its start, in seconds since the epoch (UTC), a multiple of width
    Column("project_id", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("route", String(200), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("source", String(20), nullable=False),
    Column("status", String(10), nullable=False),
    Column("traces", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    *(Column(name, Integer, nullable=False) for name in HISTOGRAM),
    PrimaryKeyConstraint("width", "slot", *ROLLUP_DIMENSIONS, name="pk_trace_rollup"),
)


class TraceRollup(Base):
    """Totals of the traces that started in one minute, hour or day, per project, model, route, key, source
    and status: counts, tokens, cost, and a latency histogram."""

    __table__ = rollup_table
