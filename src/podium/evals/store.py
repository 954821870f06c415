"""Tables of the evals domain: eval runs and their rows, the eval cache (model calls, verdicts and G-Eval
steps, keyed by a hash of everything that decides them), and online evaluation rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow


class EvalRun(Base):
    """One target run over one dataset version with its evaluators: what ran (`target`, `evaluators`, `config`,
    the `suite` it came from), how it went (`status`, counts, cost) and its aggregates with intervals and the
    gate's checks (`summary`). Immutable once finished."""

    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20), default="eval")  # eval, bias
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued, running, succeeded, failed, cancelled
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)
    dataset: Mapped[str] = mapped_column(String(200))  # the reference as given (`tickets@golden`)
    dataset_version_id: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)
    target_label: Mapped[str] = mapped_column(String(300))
    evaluators: Mapped[list[Any]] = mapped_column(default=list)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    suite: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plan_key: Mapped[str | None] = mapped_column(String(64), default=None, index=True)  # see service.plan_key
    row_count: Mapped[int] = mapped_column(default=0)
    rows_done: Mapped[int] = mapped_column(default=0)
    failed_rows: Mapped[int] = mapped_column(default=0)
    evaluator_errors: Mapped[int] = mapped_column(default=0)
    model_calls: Mapped[int] = mapped_column(default=0)
    cached_calls: Mapped[int] = mapped_column(default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class EvalRow(Base):
    """One dataset row of a run: its inputs, the target's output (or its error), every score, each
    evaluator's label, explanation or error (`details`), and the trace of the target call."""

    __tablename__ = "eval_rows"

    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(primary_key=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reference: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"value": the reference answer}
    output: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(20), default="ok")  # ok, failed
    error: Mapped[str | None] = mapped_column(Text, default=None)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    trace_id: Mapped[str | None] = mapped_column(String(40), default=None)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cached: Mapped[bool] = mapped_column(default=False)


class EvalCache(Base):
    """A remembered result: a model call's answer (`call`), an evaluator's verdict (`verdict`) or G-Eval's
    evaluation steps (`memo`), under the sha256 of the model, parameters and full input (or the evaluator's
    settings and the sample). Shared by the project's runs, so an unchanged suite re-runs for free."""

    __tablename__ = "eval_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # call, verdict, memo
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OnlineRule(Base):
    """Online evaluation: evaluators run on a sample of a project's production traces (those matching the
    route, prompt and model filters), writing scores to the traces. `cursor` is the start time of the newest
    trace considered."""

    __tablename__ = "eval_online_rules"
    __table_args__ = (Index("ix_eval_online_rules_project", "project_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    name: Mapped[str] = mapped_column(String(120))
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)  # route, prompt, model
    sample_rate: Mapped[float] = mapped_column(Float, default=0.1)
    evaluators: Mapped[list[Any]] = mapped_column(default=list)
    judge_model: Mapped[str | None] = mapped_column(String(200), default=None)
    enabled: Mapped[bool] = mapped_column(default=True)
    cursor: Mapped[datetime | None] = mapped_column(default=None)
    key_id: Mapped[str | None] = mapped_column(String(40), default=None)  # whose rights judge calls use
    traces_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    traces_scored: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
