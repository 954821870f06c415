"""The handful of process-wide objects every service needs, built once from the settings."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from podium.core.blobs import BlobStore
from podium.core.config import Settings
from podium.core.db import Database, get_database
from podium.core.secrets import SecretBox


def load_secret_key(settings: Settings) -> str:
    """The server secret: from settings, else `<home>/secret.key`, created once (mode 0600)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.home_dir / "secret.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass
class Platform:
    """Settings, the metadata database, the artifact store and the secret box of one process."""

    settings: Settings
    db: Database
    blobs: BlobStore
    secret_key: str
    box: SecretBox

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        """Open the database and artifact store the settings name."""
        db = get_database(settings.effective_database_url)
        secret = load_secret_key(settings)
        return cls(
            settings=settings,
            db=db,
            blobs=BlobStore(settings.effective_artifacts_url),
            secret_key=secret,
            box=SecretBox(secret, [p.get_secret_value() for p in settings.secret_key_previous]),
        )
