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
