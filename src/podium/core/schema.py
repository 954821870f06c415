"""The one metadata that Alembic migrates: every installed domain's tables."""

from __future__ import annotations

from sqlalchemy import MetaData

from podium.core.db import Base
from podium.core.domains import import_tables


def metadata() -> MetaData:
    """Every Podium table (importing each domain's table modules first)."""
    import_tables()
    return Base.metadata
