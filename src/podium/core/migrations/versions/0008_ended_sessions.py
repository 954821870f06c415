"""ended sessions: dashboard sessions signed out before their cookie expired, so that a copy of the cookie
stops working on every server process at once

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 15:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import podium.core.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "ended_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index(op.f("ix_ended_sessions_expires_at"), "ended_sessions", ["expires_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_ended_sessions_expires_at"), table_name="ended_sessions")
    op.drop_table("ended_sessions")
