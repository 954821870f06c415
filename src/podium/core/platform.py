"""The handful of process-wide objects every service needs, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from podium.core.auth.service import KeyCache
from podium.core.blobs import BlobStore
from podium.core.config import Settings
from podium.core.db import Database, get_database


@dataclass
class Platform:
    """Settings, the metadata database, the artifact store and the key cache of one process."""

    settings: Settings
    db: Database
    blobs: BlobStore
    keys: KeyCache

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        """Open the database and artifact store the settings name."""
        db = get_database(settings.effective_database_url)
        return cls(
            settings=settings, db=db, blobs=BlobStore(settings.effective_artifacts_url), keys=KeyCache(db)
        )
