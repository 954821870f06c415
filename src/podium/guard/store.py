"""Tables of the guard domain: guardrail policies, one row per policy of a project, updated in place (its
`version` counts the updates), and every version each has had; the gateway keeps the current ones in memory
(`guard/enforce.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from podium.core.db import Base, utcnow


class GuardPolicy(Base):
    """A checked policy (`spec`, as `PolicySpec` dumps it, and the text it was written as) of one project. Its
    scope (`key`, `route` or `project`) and target (a key id, a route name, or "") are columns so that two
    policies can never claim the same place."""

    __tablename__ = "guard_policies"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_guard_policy_name"),
        UniqueConstraint("project_id", "scope", "target", name="uq_guard_policy_target"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # gpol_…
    project_id: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(10))
    target: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(default=1)
    spec: Mapped[dict[str, Any]] = mapped_column()
    source: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(140), default="system")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class GuardPolicyVersion(Base):
    """Every version a policy has had (the current one included), as written: its history, kept while the
    policy exists."""

    __tablename__ = "guard_policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "version", name="uq_guard_policy_version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # gpv_…
    policy_id: Mapped[str] = mapped_column(String(40), index=True)
    project_id: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column()
    spec: Mapped[dict[str, Any]] = mapped_column()
    source: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
