"""Models: the registry (versions, aliases, lineage), providers, the local engine and model workers.

SDK: `podium.models.get("name@alias").chat(...)`, `.complete(...)`, `.embed(...)`, on the server
`podium.configure(url=..., api_key=...)` set (see `podium.core.sdkconfig`), or the one given to the call.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.models.sdk import ModelHandle


def get(ref: str, *, url: str | None = None, api_key: str | None = None) -> ModelHandle:
    """A handle on `name`, `name@version` or `name@alias` that chats, completes and embeds."""
    from podium.models.sdk import get as _get

    return _get(ref, url=url, api_key=api_key)


def list(*, url: str | None = None, api_key: str | None = None) -> builtins.list[dict[str, Any]]:
    """Every registered model on the server."""
    from podium.models.sdk import list_models

    return list_models(url=url, api_key=api_key)
