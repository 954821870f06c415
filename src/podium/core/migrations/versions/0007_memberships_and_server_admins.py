"""memberships and server admins

Roles become per project: a `memberships` row gives a user a role in one project, and `users.is_admin`
marks the server admins who manage every project. Existing users keep what they could do: a user whose
role was `admin` becomes a server admin; every user becomes a member, with their old role, of the default
project and of every project they hold a key in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 13:18:27.556591
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import podium.core.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("viewer", "member", "admin")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "memberships",
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", podium.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=140), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("project_id", "user_id"),
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memberships_user_id"), ["user_id"], unique=False)
    # plain ALTER TABLE on SQLite too (3.35+ drops columns): recreating `users` would trip the foreign keys
    # of the tables that reference it
    with op.batch_alter_table("users", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))

    conn = op.get_bind()
    users = conn.execute(sa.text("SELECT id, role FROM users")).all()
    default = conn.execute(sa.text("SELECT id FROM projects WHERE name = 'default'")).scalar()
    keyed = conn.execute(sa.text("SELECT DISTINCT user_id, project_id FROM api_keys")).all()
    now = datetime.now(UTC)
    rows: dict[tuple[str, str], str] = {}
    role_of = {uid: (role if role in ROLES else "viewer") for uid, role in users}
    for uid, role in role_of.items():
        if default is not None:
            rows[(default, uid)] = role
    for uid, pid in keyed:
        if uid in role_of:
            rows[(pid, uid)] = role_of[uid]
    if rows:
        conn.execute(
            sa.text(
                "INSERT INTO memberships (project_id, user_id, role, created_at, created_by)"
                " VALUES (:project_id, :user_id, :role, :created_at, 'migration 0007')"
            ),
            [{"project_id": p, "user_id": u, "role": r, "created_at": now} for (p, u), r in rows.items()],
        )
    conn.execute(sa.text("UPDATE users SET is_admin = (role = 'admin')"))
    with op.batch_alter_table("users", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("role")


def downgrade() -> None:
    """Revert this revision: a user's role becomes their highest project role (`admin` for server admins)."""
    with op.batch_alter_table("users", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default="viewer"))
    conn = op.get_bind()
    best: dict[str, str] = {}
    for uid, role in conn.execute(sa.text("SELECT user_id, role FROM memberships")).all():
        if ROLES.index(role) > ROLES.index(best.get(uid, "viewer")):
            best[uid] = role
    for uid, role in best.items():
        conn.execute(sa.text("UPDATE users SET role = :role WHERE id = :id"), {"role": role, "id": uid})
    conn.execute(sa.text("UPDATE users SET role = 'admin' WHERE is_admin"))
    with op.batch_alter_table("users", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("is_admin")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memberships_user_id"))
    op.drop_table("memberships")
