"""alerts: rules, their states, events and deliveries

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 19:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import podium.core.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the alerts domain's tables."""
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=True),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=140), nullable=False),
        sa.Column("created_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_alert_rule_name"),
    )
    op.create_table(
        "alert_states",
        sa.Column("rule_id", sa.String(length=40), nullable=False),
        sa.Column("group_key", sa.String(length=200), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("since", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("pending_since", podium.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("incident_id", sa.String(length=40), nullable=True),
        sa.Column("incident_notified", sa.Boolean(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("evaluated_at", podium.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("notified_at", podium.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "group_key"),
    )
    with op.batch_alter_table("alert_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_states_project_id"), ["project_id"], unique=False)

    op.create_table(
        "alert_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rule_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=True),
        sa.Column("group_key", sa.String(length=200), nullable=False),
        sa.Column("incident_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_events_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_alert_events_project", ["project_id", "at"], unique=False)
        batch_op.create_index("ix_alert_events_rule", ["rule_id", "at"], unique=False)

    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("rule_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("log", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("next_attempt_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", podium.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", podium.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alert_leases",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=80), nullable=False),
        sa.Column("until", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_deliveries_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_deliveries_rule_id"), ["rule_id"], unique=False)
        batch_op.create_index("ix_alert_deliveries_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    """Drop the alerts domain's tables."""
    op.drop_table("alert_leases")
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_rule_id"))
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_event_id"))
    op.drop_table("alert_deliveries")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_events_rule")
        batch_op.drop_index("ix_alert_events_project")
        batch_op.drop_index(batch_op.f("ix_alert_events_incident_id"))
    op.drop_table("alert_events")
    with op.batch_alter_table("alert_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_states_project_id"))
    op.drop_table("alert_states")
    op.drop_table("alert_rules")
