"""monitors

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 19:50:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("width", sa.Integer()),
    ("slot", sa.BigInteger()),
    ("project_id", sa.String(length=40)),
    ("route", sa.String(length=200)),
    ("model", sa.String(length=200)),
    ("prompt", sa.String(length=200)),
)
_SUMS = (
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


def _key(*extra: tuple[str, sa.types.TypeEngine[Any]]) -> list[sa.Column[Any]]:
    columns = [*_KEY, *extra]
    kinds = {"width", "slot", "bin"}
    return [
        sa.Column(name, kind, autoincrement=False if name in kinds else "auto", nullable=False)
        for name, kind in columns
    ]


def upgrade() -> None:
    """Apply this revision: the monitor rollup (totals, latency histograms, scores), the minutes it was rolled
    from and the roller's watermarks."""
    op.create_table(
        "monitor_rollup",
        *_key(),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
        sa.PrimaryKeyConstraint("width", "slot", "project_id", "route", "model", "prompt"),
    )
    op.create_table(
        "monitor_latency",
        *_key(("bin", sa.SmallInteger())),
        sa.Column("traces", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("width", "slot", "project_id", "route", "model", "prompt", "bin"),
    )
    op.create_table(
        "monitor_scores",
        *_key(("name", sa.String(length=120)), ("source", sa.String(length=20))),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("width", "slot", "project_id", "route", "model", "prompt", "name", "source"),
    )
    op.create_table(
        "monitor_minutes",
        sa.Column("slot", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("traces", "prompt_tokens", "completion_tokens", "cost_micros", "errors")
        ),
        sa.PrimaryKeyConstraint("slot", "project_id"),
    )
    op.create_table(
        "monitor_state",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    """Undo this revision."""
    for table in ("monitor_state", "monitor_minutes", "monitor_scores", "monitor_latency", "monitor_rollup"):
        op.drop_table(table)
