"""guard policies

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 19:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import podium.core.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision: the guardrail policies and their versions."""
    op.create_table(
        "guard_policies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=140), nullable=False),
        sa.Column("created_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=140), nullable=False),
        sa.Column("updated_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_guard_policy_name"),
        sa.UniqueConstraint("project_id", "scope", "target", name="uq_guard_policy_target"),
    )
    op.create_table(
        "guard_policy_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("policy_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=140), nullable=False),
        sa.Column("created_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("policy_id", "version", name="uq_guard_policy_version"),
    )
    with op.batch_alter_table("guard_policy_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guard_policy_versions_policy_id"), ["policy_id"], unique=False)


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("guard_policy_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guard_policy_versions_policy_id"))
    op.drop_table("guard_policy_versions")
    op.drop_table("guard_policies")
