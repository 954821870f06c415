"""Tables of the drift domain: stored drift reports, one row per report, with the columns lists and alerts filter
on (project, time, verdict, the classifier's score) and the whole report as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow


class DriftReportRow(Base):
    """One drift report of a project: `spec` as asked (windows, reference, filters, thresholds), `report` as
    `DriftReport` dumps it; immutable once written."""

    __tablename__ = "drift_reports"
    __table_args__ = (Index("ix_drift_reports_project", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # drr_…
    project_id: Mapped[str] = mapped_column(String(40))
    drift: Mapped[bool] = mapped_column()
    score: Mapped[float | None] = mapped_column(default=None)  # the highest domain-classifier ROC AUC
    current_from: Mapped[datetime] = mapped_column()
    current_to: Mapped[datetime] = mapped_column()
    reference: Mapped[str] = mapped_column(String(400))  # what the current window was compared with, in words
    spec: Mapped[dict[str, Any]] = mapped_column()
    report: Mapped[dict[str, Any]] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
