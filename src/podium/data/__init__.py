"""Datasets: versioned rows in the artifact store, imports and exports, preparation pipelines with lineage.

`podium.data.get("support-tickets@train-v3").to_pandas()`, `podium.data.push(name, rows)` and
`podium.data.prep(ref, steps)` are the SDK entry points (`podium.data.sdk`), imported on first use so that
the server's imports of this package stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.data.sdk import DatasetVersion


def get(ref: str, **options: Any) -> DatasetVersion:
    """A dataset version by reference, its rows cached locally (see `podium.data.sdk.get`)."""
    from podium.data.sdk import get as _get

    return _get(ref, **options)


def push(name: str, data: Any, **options: Any) -> dict[str, Any]:
    """Import rows (a DataFrame, a table, dicts or a file) as a new version (see `podium.data.sdk.push`)."""
    from podium.data.sdk import push as _push

    return _push(name, data, **options)


def prep(ref: str, pipeline: Any, **options: Any) -> dict[str, Any]:
    """Run a preparation pipeline over a version on the server (see `podium.data.sdk.prep`)."""
    from podium.data.sdk import prep as _prep

    return _prep(ref, pipeline, **options)
