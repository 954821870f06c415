"""The SDK's one client configuration: which server `podium.models`, `podium.prompts` and the tracing exporter
talk to, and with which key.

Resolution, first found wins, for the URL and the key separately: values given to the call, then
`podium.configure(url=..., api_key=...)`, then `PODIUM_URL` / `PODIUM_API_KEY`, then `podium.toml`, then
(the key only) `<home>/admin.key`, and (the URL only) `http://<host>:<port>` from the settings. The CLI's
`Client` resolves the same way, so a script and the `podium` command reach the same server.

Settings are read lazily (pydantic-settings is not imported until a value is missing) and what they give is
kept until the `PODIUM_*` environment or the working directory changes.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podium.core.config import Settings

log = logging.getLogger("podium.sdk")

DEFAULT_URL = "http://127.0.0.1:8800"


@dataclass(frozen=True)
class ClientConfig:
    """Values set with `configure()`; None means "not set here": look further down the resolution order."""

    url: str | None = None
    api_key: str | None = None


_config = ClientConfig()
_lock = threading.Lock()
# (cwd, PODIUM_* environment) -> (url, key) read from the settings under them
_defaults: tuple[tuple[object, ...], tuple[str, str | None]] | None = None


def configure(*, url: str | None = None, api_key: str | None = None) -> ClientConfig:
    """Set the server URL and API key every SDK part uses (None leaves a value as it is)."""
    global _config
    with _lock:
        _config = ClientConfig(
            url=url.rstrip("/") if url is not None else _config.url,
            api_key=api_key if api_key is not None else _config.api_key,
        )
        return _config


def configured() -> ClientConfig:
    """What `configure()` set (a new object after every change, so callers can tell it changed)."""
    return _config


def reset() -> None:
    """Forget what `configure()` set: back to the environment and settings."""
    global _config
    with _lock:
        _config = ClientConfig()


def resolve_api_key(settings: Settings) -> str | None:
    """`PODIUM_API_KEY` (or `api_key` in podium.toml), else the bootstrap key in `<home>/admin.key`."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    path = settings.admin_key_path
    if path.exists():
        return path.read_text().strip() or None
    return None


def resolve(url: str | None = None, api_key: str | None = None, *, lenient: bool = False) -> tuple[str, str | None]:
    """The server URL (no trailing slash) and API key (None: no key found) in the order above. A bad
    podium.toml raises its `ConfigError`, or with `lenient` is logged and skipped (traced code must run on)."""
    config = _config
    url = url if url is not None else config.url
    api_key = api_key if api_key is not None else config.api_key
    if url is None or api_key is None:
        default_url, default_key = _from_settings(lenient)
        url = url if url is not None else default_url
        api_key = api_key if api_key is not None else default_key
    return url.rstrip("/"), api_key


def _from_settings(lenient: bool) -> tuple[str, str | None]:
    """URL and key from the environment, podium.toml and `<home>/admin.key`, remembered while nothing they
    depend on changes (a key not found yet is looked for again: `podium serve` may write it meanwhile)."""
    global _defaults
    try:
        cwd = os.getcwd()  # podium.toml is read from there
    except OSError:
        cwd = ""
    fingerprint = (cwd, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PODIUM_"))))
    cached = _defaults
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    try:
        from podium.core.config import load_settings

        settings = load_settings()
        found = (settings.effective_url, resolve_api_key(settings))
    except Exception as exc:
        if not lenient:
            raise
        log.warning("podium: cannot read settings (%s); using PODIUM_URL / PODIUM_API_KEY only", exc)
        return os.environ.get("PODIUM_URL") or DEFAULT_URL, os.environ.get("PODIUM_API_KEY")
    if found[1] is not None:
        _defaults = (fingerprint, found)
    return found
