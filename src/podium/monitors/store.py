"""The monitor rollup's tables: per minute, hour and day (`width` seconds from `slot`, seconds since the
epoch), per project, route, model and prompt version, the totals of the traces that started then
(`monitor_rollup`), their latency histogram (`monitor_latency`, bins of `podium.tracing.latency`), and the
scores given then (`monitor_scores`); what each rolled minute was computed from (`monitor_minutes`) and the
roller's watermark (`monitor_state`). An absent value is stored as "" (key columns hold no NULL)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base

# what the rollup groups by besides time, and the totals it keeps
DIMENSIONS = ("project_id", "route", "model", "prompt")
SUMS = (
    "traces",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_micros",
    "cache_lookups",
    "cache_hits",
    "blocks",
    "answers",
    "refusals",
)


class MonitorRollup(Base):
    """Totals of the traces that started in one minute, hour or day, per project, route, model and prompt."""

    __tablename__ = "monitor_rollup"

    width: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    prompt: Mapped[str] = mapped_column(String(200), primary_key=True)
    traces: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    cache_lookups: Mapped[int] = mapped_column(BigInteger)  # traces whose cache was looked up (hit or miss)
    cache_hits: Mapped[int] = mapped_column(BigInteger)  # exact or semantic hits
    blocks: Mapped[int] = mapped_column(BigInteger)  # refused by a guardrail
    answers: Mapped[int] = mapped_column(BigInteger)  # successful traces with an output (refusal rate's base)
    refusals: Mapped[int] = mapped_column(BigInteger)  # answers that open as a refusal


class MonitorLatency(Base):
    """How many traces of one (slot, project, route, model, prompt) had a latency in one bin."""

    __tablename__ = "monitor_latency"

    width: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    prompt: Mapped[str] = mapped_column(String(200), primary_key=True)
    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    traces: Mapped[int] = mapped_column(BigInteger)


class MonitorScore(Base):
    """Count and sum of the scores of one name and source given in one minute, hour or day, per the project,
    route, model and prompt of their traces."""

    __tablename__ = "monitor_scores"

    width: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    prompt: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(Float)


class MonitorMinute(Base):
    """What one project's minute was last rolled from (the traces' count, tokens, cost and errors): the roller
    compares it with the trace rollup's figures and rolls the minute again when they differ."""

    __tablename__ = "monitor_minutes"

    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    traces: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)


class MonitorState(Base):
    """The roller's watermarks (`scores`: the last score id rolled) and when it last rolled."""

    __tablename__ = "monitor_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
