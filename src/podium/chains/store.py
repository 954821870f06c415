"""Tables of the chains domain: chains, their versions (a checked chain spec, immutable), labels with their
history, runs, and the approvals an agent's run waits for; and `CHAINS`, the registry kernel over the first
four.

A run row is written when a run starts and once more when it ends (`ok` or `error`, with the output or the
error and the step that failed). An approval row is written when an agent asks to call a tool that needs a
person's approval, and decided once (`approved` or `rejected`, by whom, with an optional comment)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow
from podium.core.registry import Registry

RUNNING = "running"
OK = "ok"
ERROR = "error"
PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"


class Chain(Base):
    """A named chain owned by a project; what it does lives in its versions."""

    __tablename__ = "chains"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainVersion(Base):
    """One version: the checked spec (`spec`, as `ChainSpec` dumps it), the YAML it was pushed as, and the
    hash of the spec (pushing the same content again returns this version)."""

    __tablename__ = "chain_versions"
    __table_args__ = (UniqueConstraint("chain_id", "version", name="uq_chain_version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    chain_id: Mapped[str] = mapped_column(ForeignKey("chains.id"), index=True)
    version: Mapped[int] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column()
    source: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainLabel(Base):
    """A movable name (`prod`, `canary`) pointing at one version of a chain."""

    __tablename__ = "chain_labels"

    chain_id: Mapped[str] = mapped_column(ForeignKey("chains.id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(60), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("chain_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainLabelMove(Base):
    """History: who moved which label from which version to which, and when."""

    __tablename__ = "chain_label_history"
    __table_args__ = (Index("ix_chain_label_history", "chain_id", "label", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    chain_id: Mapped[str] = mapped_column(ForeignKey("chains.id"))
    label: Mapped[str] = mapped_column(String(60))
    from_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    to_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    actor: Mapped[str] = mapped_column(String(140))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainRun(Base):
    """One run of a chain version: who ran it, on what inputs, how it ended, and its trace."""

    __tablename__ = "chain_runs"
    __table_args__ = (Index("ix_chain_runs_chain", "chain_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    chain_id: Mapped[str] = mapped_column(ForeignKey("chains.id"))
    version_id: Mapped[str] = mapped_column(ForeignKey("chain_versions.id"))
    ref: Mapped[str] = mapped_column(String(200))  # `name@version`
    source: Mapped[str] = mapped_column(String(20), default="api")  # api, gateway, eval, sdk
    status: Mapped[str] = mapped_column(String(20), default=RUNNING)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    failed_step: Mapped[str | None] = mapped_column(String(120), default=None)
    steps: Mapped[list[Any]] = mapped_column(default=list)  # the step timeline: id, status, times
    trace_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    # the run's model calls together (their spans in the trace own them)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class ChainApproval(Base):
    """A tool call an agent asked for that waits for a person: approved or rejected once."""

    __tablename__ = "chain_approvals"
    __table_args__ = (Index("ix_chain_approvals_status", "project_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    run_id: Mapped[str] = mapped_column(ForeignKey("chain_runs.id"), index=True)
    step: Mapped[str] = mapped_column(String(120))
    tool: Mapped[str] = mapped_column(String(120))
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    comment: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str | None] = mapped_column(String(140), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


CHAINS: Registry[Chain, ChainVersion] = Registry(
    kind="chain",
    entity=Chain,
    version=ChainVersion,
    label=ChainLabel,
    move=ChainLabelMove,
    entity_fk="chain_id",
    label_column="label",
    word="label",
    hash_column="content_hash",
    version_prefix="chv",
    move_prefix="clm",
    project_column="project_id",
)
