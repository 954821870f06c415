"""Chains and agents: versioned graphs of typed steps (prompts, models, retrieval, tools, guardrails,
branches, maps, agents), run as one trace each and served through `/api/chains` and `chain:` models.

SDK: `podium.chains.get("support-bot@prod").run(question=...)`, `.info()`, `.runs()`, and
`podium.chains.push(name, yaml_or_path_or_dict)`, `podium.chains.list()` (`podium.chains.sdk`); tools are
made with `podium.chains.tools.tool`. Imported on first use, so the server's imports of this package stay
light.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.chains.sdk import Chain


def get(ref: str, **options: Any) -> Chain:
    """A handle on `name`, `name@3` or `name@label` that runs the chain (see `podium.chains.sdk.get`)."""
    from podium.chains.sdk import get as _get

    return _get(ref, **options)


def push(name: str, chain: str | Path | dict[str, Any], **options: Any) -> dict[str, Any]:
    """Push a chain version (see `podium.chains.sdk.push`)."""
    from podium.chains.sdk import push as _push

    return _push(name, chain, **options)


def list(**options: Any) -> builtins.list[dict[str, Any]]:
    """The chains you see (see `podium.chains.sdk.list`)."""
    from podium.chains.sdk import list as _list

    return _list(**options)
