"""trace rollup: per minute, hour and day totals and latency histograms of traces, filled from existing traces

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 11:15:27.404374

The backfill runs in SQL, one INSERT … SELECT per row width, with the latency bins of
`podium.tracing.latency` written out here (a migration must not change when the code does; a test checks
that both agree). It reads every trace three times: on a large database this upgrade takes a while.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMENSIONS = ("project_id", "model", "route", "key_id", "source", "status")
WIDTHS = (60, 3600, 86400)
# podium.tracing.latency at this revision: six bins per doubling from 2^-6 ms to 2^22 ms, plus under and over
EDGES = tuple(2.0 ** (-6 + i / 6) for i in range(28 * 6 + 1))
BINS = len(EDGES) + 1


def upgrade() -> None:
    """Create the rollup and fill it from the traces already stored."""
    op.create_table(
        "trace_rollup",
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
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
        *(sa.Column(f"h{i}", sa.Integer(), nullable=False) for i in range(BINS)),
        sa.PrimaryKeyConstraint("width", "slot", *DIMENSIONS, name="pk_trace_rollup"),
    )
    backfill(op.get_bind())


def downgrade() -> None:
    """Drop the rollup."""
    op.drop_table("trace_rollup")


def _bin(lo: int = 0, hi: int = BINS - 1) -> str:
    """The latency bin as nested CASEs (a binary search over the edges, bound as exact floats)."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return f"CASE WHEN latency_ms < :e{mid} THEN {_bin(lo, mid)} ELSE {_bin(mid + 1, hi)} END"


def backfill(conn: sa.Connection) -> None:
    """Add every stored trace to its minute, hour and day rows."""
    if conn.dialect.name == "sqlite":
        seconds = "CAST(strftime('%s', start_time) AS INTEGER)"
    else:
        seconds = "CAST(FLOOR(EXTRACT(EPOCH FROM start_time)) AS BIGINT)"
    dims = ", ".join(DIMENSIONS)
    histogram = [f"h{i}" for i in range(BINS)]
    sums = ", ".join(f"SUM(CASE WHEN bin = {i} THEN 1 ELSE 0 END)" for i in range(BINS))
    edges = {f"e{i}": edge for i, edge in enumerate(EDGES)}
    for width in WIDTHS:
        sql = (
            f"INSERT INTO trace_rollup (width, slot, {dims}, traces, prompt_tokens, completion_tokens, cost_micros,"
            f" {', '.join(histogram)})"
            f" SELECT {width}, slot, {dims}, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens),"
            f" SUM(cost_micros), {sums}"
            f" FROM (SELECT ({seconds} / {width}) * {width} AS slot,"
            " COALESCE(project_id, '') AS project_id, COALESCE(model, '') AS model,"
            " COALESCE(route, '') AS route, COALESCE(key_id, '') AS key_id, source, status,"
            " prompt_tokens, completion_tokens, cost_micros,"
            f" CASE WHEN latency_ms IS NULL THEN NULL ELSE {_bin()} END AS bin FROM traces) AS t"
            f" GROUP BY slot, {dims}"
        )
        conn.execute(sa.text(sql).bindparams(*(sa.bindparam(k, v, type_=sa.Float()) for k, v in edges.items())))
