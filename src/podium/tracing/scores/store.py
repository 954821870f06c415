"""The scores table: one number or label on a trace (or one of its spans), from a person, an evaluator or
the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import Float, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base

ScoreSource = Literal["user", "evaluator", "api"]  # who gave a score: a person, an evaluator, any API caller
SCORE_SOURCES: tuple[ScoreSource, ...] = get_args(ScoreSource)


class Score(Base):
    """A number attached to a trace (or one of its spans): user feedback, an evaluator's verdict, or any
    score posted to `/api/scores`. Experiments read them per prompt version."""

    __tablename__ = "scores"
    __table_args__ = (Index("ix_scores_trace", "trace_id"), Index("ix_scores_name_at", "name", "created_at"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(40))
    span_id: Mapped[str | None] = mapped_column(String(40), default=None)
    name: Mapped[str] = mapped_column(String(120))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20), default="api")
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column()
