"""Tables of the fine-tuning domain: blueprints, each stored once per project under the id its content hash
gives it (`ftb_…`), with the plan's report (token lengths, estimates) measured when it was first stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow


class FinetuneBlueprint(Base):
    """A checked blueprint (`spec`, as `Blueprint` dumps it) of one project; immutable once written."""

    __tablename__ = "finetune_blueprints"
    __table_args__ = (
        UniqueConstraint("project_id", "id", name="uq_finetune_blueprint"),
        Index("ix_finetune_blueprints_project", "project_id", "created_at"),
    )

    pk: Mapped[str] = mapped_column(String(40), primary_key=True)  # the row; `id` is the blueprint's
    id: Mapped[str] = mapped_column(String(40), index=True)  # ftb_ + the content hash's first 32 hex digits
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    content_hash: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column()
    source: Mapped[str] = mapped_column(Text, default="")  # the YAML the blueprint is shown and diffed as
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)  # what plan measured and estimated
    base_model: Mapped[str] = mapped_column(String(200))
    train: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FinetuneRun(Base):
    """One run of a blueprint through the pipeline's stages (`stages`: each stage's status, times and
    outputs), executed by a job; what it produced is in `result` once it ends."""

    __tablename__ = "finetune_runs"
    __table_args__ = (Index("ix_finetune_runs_project", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ftrun_…
    project_id: Mapped[str | None] = mapped_column(String(40), default=None)
    blueprint_id: Mapped[str] = mapped_column(String(40), index=True)
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)
    backend: Mapped[str] = mapped_column(String(20), default="local")
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued running succeeded failed cancelled
    stage: Mapped[str] = mapped_column(String(20), default="")  # the stage running (or that ended the run)
    stages: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class FinetuneMetric(Base):
    """One logged training step of a run: loss, learning rate, tokens/s, eval loss (the charts' points)."""

    __tablename__ = "finetune_metrics"
    __table_args__ = (UniqueConstraint("run_id", "step", "kind", name="uq_finetune_metric"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    step: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(10), default="train")  # train | eval
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)
