"""Knowledge bases: chunked, embedded dataset versions searchable by vector, full text or both.

SDK: `podium.kb.get("support-docs@prod").search("reset my password")`, `.info()`, `.eval(dataset=...)`, and
`podium.kb.create(...)`, `podium.kb.build(...)`, `podium.kb.list()` (`podium.kb.sdk`), on the server
`podium.configure(url=..., api_key=...)` set or the one given to the call; imported on first use so that the
server's imports of this package stay light.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.kb.sdk import KnowledgeBase


def get(ref: str, **options: Any) -> KnowledgeBase:
    """A handle on `name`, `name@3` or `name@label` that searches and evaluates (see `podium.kb.sdk.get`)."""
    from podium.kb.sdk import get as _get

    return _get(ref, **options)


def create(name: str, **options: Any) -> dict[str, Any]:
    """A new, empty knowledge base (see `podium.kb.sdk.create`)."""
    from podium.kb.sdk import create as _create

    return _create(name, **options)


def build(name: str, dataset: str, *, embedding_model: str, **options: Any) -> dict[str, Any]:
    """Build the next version from a dataset version, waiting for it by default (see `podium.kb.sdk.build`)."""
    from podium.kb.sdk import build as _build

    return _build(name, dataset, embedding_model=embedding_model, **options)


def list(**options: Any) -> builtins.list[dict[str, Any]]:
    """The knowledge bases you see (see `podium.kb.sdk.list`)."""
    from podium.kb.sdk import list as _list

    return _list(**options)
