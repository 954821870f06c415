"""trace rollup: per minute, hour and day totals (per model and route, and per key) and latency histograms (per
model) of traces, filled from the traces already stored

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 11:15:27.404374

The backfill runs in SQL, one INSERT … SELECT per view and row width, with the latency bins of
`podium.tracing.latency` written out here (a migration must not change when the code does; a test checks
that both agree). It reads every trace nine times: on a large database this upgrade takes a while.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDTHS = (60, 3600, 86400)
# podium.tracing.latency at this revision: six bins per doubling from 2^-6 ms to 2^22 ms, plus under and over
EDGES = tuple(2.0 ** (-6 + i / 6) for i in range(28 * 6 + 1))
BINS = len(EDGES) + 1
# the two views of the totals (podium.tracing.store): per model and route, and per key
VIEWS = {
    1: "COALESCE(model, '') AS model, COALESCE(route, '') AS route, '' AS key_id",
    2: "'' AS model, '' AS route, COALESCE(key_id, '') AS key_id",
}


def upgrade() -> None:
    """Create the rollup and fill it from the traces already stored."""
    op.create_table(
        "trace_latency",
        sa.Column("width", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("slot", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("bin", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("traces", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("width", "slot", "project_id", "model", "bin"),
    )
    op.create_table(
        "trace_rollup",
        sa.Column("view", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("width", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("slot", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("traces", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("view", "width", "slot", "project_id", "model", "route", "key_id", "source", "status"),
    )
    backfill(op.get_bind())


def downgrade() -> None:
    """Drop the rollup."""
    op.drop_table("trace_rollup")
    op.drop_table("trace_latency")


def _bin(lo: int = 0, hi: int = BINS - 1) -> str:
    """The latency bin as nested CASEs (a binary search over the edges, bound as exact floats)."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return f"CASE WHEN latency_ms < :e{mid} THEN {_bin(lo, mid)} ELSE {_bin(mid + 1, hi)} END"


def backfill(conn: sa.Connection) -> None:
    """Add every stored trace to its rows."""
    if conn.dialect.name == "sqlite":
        seconds = "CAST(strftime('%s', start_time) AS INTEGER)"
    else:
        seconds = "CAST(FLOOR(EXTRACT(EPOCH FROM start_time)) AS BIGINT)"
    dims = "project_id, model, route, key_id, source, status"
    for width in WIDTHS:
        slot = f"({seconds} / {width}) * {width} AS slot, COALESCE(project_id, '') AS project_id"
        for view, columns in VIEWS.items():
            conn.execute(
                sa.text(
                    f"INSERT INTO trace_rollup (view, width, slot, {dims}, traces, prompt_tokens, completion_tokens,"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
                    f" cost_micros) SELECT {view}, {width}, slot, {dims}, COUNT(*), SUM(prompt_tokens),"
                    f" SUM(completion_tokens), SUM(cost_micros) FROM (SELECT {slot}, {columns}, source, status,"
                    f" prompt_tokens, completion_tokens, cost_micros FROM traces) AS t GROUP BY slot, {dims}"
                )
            )
        latency = sa.text(
            f"INSERT INTO trace_latency (width, slot, project_id, model, bin, traces)"  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
            f" SELECT {width}, slot, project_id, model, bin, COUNT(*) FROM (SELECT {slot},"
            f" COALESCE(model, '') AS model, {_bin()} AS bin FROM traces WHERE latency_ms IS NOT NULL) AS t"
            " GROUP BY slot, project_id, model, bin"
        )
        edges = [sa.bindparam(f"e{i}", edge, type_=sa.Float()) for i, edge in enumerate(EDGES)]
        conn.execute(latency.bindparams(*edges))
