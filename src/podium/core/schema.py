"""The one metadata that Alembic migrates: importing this module imports every domain's tables."""

from __future__ import annotations

from sqlalchemy import MetaData

from podium.auth import store as _auth_store  # noqa: F401
from podium.core.db import Base
from podium.gateway import store as _gateway_store  # noqa: F401
from podium.jobs import store as _jobs_store  # noqa: F401
from podium.models import store as _models_store  # noqa: F401
from podium.prompts import store as _prompts_store  # noqa: F401
from podium.tracing import store as _tracing_store  # noqa: F401
from podium.tracing.scores import store as _scores_store  # noqa: F401


def metadata() -> MetaData:
    """Every Podium table."""
    return Base.metadata
