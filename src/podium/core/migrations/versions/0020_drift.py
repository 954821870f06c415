"""drift reports

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import podium.core.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("drift", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("current_from", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("current_to", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(length=400), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=140), nullable=False),
        sa.Column("created_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("drift_reports", schema=None) as batch_op:
        batch_op.create_index("ix_drift_reports_project", ["project_id", "created_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("drift_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_drift_reports_project")
    op.drop_table("drift_reports")
