"""guard policies

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 19:50:00.000000
"""

from collections.abc import Sequence

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision (nothing yet: reserved so that the domains landing together keep one chain)."""


def downgrade() -> None:
    """Undo this revision."""
