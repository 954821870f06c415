"""Tables of the gateway: routes (public names over deployments), limits on keys, projects and users, and
the spend ledger budgets are checked against."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from podium.core.db import Base, utcnow


class GatewayRoute(Base):
    """A public model name mapped to deployments, with its strategy, fallbacks and options.

    Deployment credentials are stored encrypted (`api_key_enc`); the API never returns them.
    """

    __tablename__ = "gateway_routes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    strategy: Mapped[str] = mapped_column(String(30), default="weighted")
    deployments: Mapped[list[Any]] = mapped_column(default=list)
    fallbacks: Mapped[list[Any]] = mapped_column(default=list)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(140), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class GatewayLimit(Base):
    """Limits on one key, project or user: allowed models, requests and tokens per minute, budgets."""

    __tablename__ = "gateway_limits"

    scope: Mapped[str] = mapped_column(String(10), primary_key=True)  # key, project, user
    scope_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    allowed_models: Mapped[list[Any] | None] = mapped_column(default=None, nullable=True)
    rpm: Mapped[int | None] = mapped_column(default=None)
    tpm: Mapped[int | None] = mapped_column(default=None)
    daily_budget_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)
    monthly_budget_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)
    updated_by: Mapped[str] = mapped_column(String(140), default="system")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Spend(Base):
    """Money spent by a key, project or user in one period (`d:2026-11-24`, `m:2026-11`), in micro-dollars.

    Gateway workers add settled costs to it in batches (`spent = spent + delta`), so several workers and
    hosts add up correctly.
    """

    __tablename__ = "gateway_spend"

    scope: Mapped[str] = mapped_column(String(10), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period: Mapped[str] = mapped_column(String(12), primary_key=True)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)


SPEND_COUNTER = "gateway_spend"


def add_spend(session: Session, backend: str, deltas: dict[tuple[str, ...], int]) -> None:
    """Add summed spend deltas (`(scope, scope_id, period) -> micros`) in the caller's transaction; the trace
    writer calls it for the `gateway_spend` counter."""
    ins = pg_insert(Spend) if backend == "postgresql" else sqlite_insert(Spend)
    rows = [
        {"scope": a, "scope_id": b, "period": c, "spent_micros": micros} for (a, b, c), micros in sorted(deltas.items())
    ]
    stmt = ins.on_conflict_do_update(
        index_elements=["scope", "scope_id", "period"],
        set_={"spent_micros": Spend.spent_micros + ins.excluded.spent_micros},
    )
    session.execute(stmt, rows)
