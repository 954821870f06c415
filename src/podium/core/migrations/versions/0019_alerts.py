"""alerts

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 19:50:00.000000
"""

from collections.abc import Sequence

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision (nothing yet: reserved so that the domains landing together keep one chain)."""


def downgrade() -> None:
    """Undo this revision."""
