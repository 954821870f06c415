"""Fine-tuning: blueprints (every setting of a fine-tune, planned against the data and stored content-hashed)
and runs of them through prepare, train, evaluate, gate, register and deploy.

SDK (`podium.finetune.sdk`, imported on first use): `podium.finetune.plan(path_or_yaml_or_dict, **choices)`,
`podium.finetune.run(blueprint_id, wait=True)`, `podium.finetune.get(run_id)`, `podium.finetune.list()`,
`podium.finetune.cancel(run_id)`, `podium.finetune.promote(run_id)`.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any


def plan(blueprint: str | Path | dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Plan and store a blueprint (see `podium.finetune.sdk.plan`)."""
    from podium.finetune.sdk import plan as _plan

    return _plan(blueprint, **options)


def run(blueprint_id: str, **options: Any) -> dict[str, Any]:
    """Start (and with `wait=True` follow) a run of a blueprint (see `podium.finetune.sdk.run`)."""
    from podium.finetune.sdk import run as _run

    return _run(blueprint_id, **options)


def get(run_id: str, **options: Any) -> dict[str, Any]:
    """A run with its stages and metrics."""
    from podium.finetune.sdk import get as _get

    return _get(run_id, **options)


def list(**options: Any) -> builtins.list[dict[str, Any]]:
    """The runs you see, newest first."""
    from podium.finetune.sdk import list as _list

    return _list(**options)


def cancel(run_id: str, **options: Any) -> dict[str, Any]:
    """Stop a run."""
    from podium.finetune.sdk import cancel as _cancel

    return _cancel(run_id, **options)


def promote(run_id: str, **options: Any) -> dict[str, Any]:
    """Give a deployed run's tuned version all the traffic."""
    from podium.finetune.sdk import promote as _promote

    return _promote(run_id, **options)
