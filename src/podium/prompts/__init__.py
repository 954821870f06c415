"""Prompt registry: versioned templates, labels, rendering, experiments.

`podium.prompts.get(name, label=...)` and `podium.prompts.run(name, model=...)` are the SDK entry points
(see `podium.prompts.sdk`), on the server `podium.configure(url=..., api_key=...)` set or the one given to
the call; it is imported on first use so that the server's imports of this package stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.prompts.sdk import Prompt, RunResult


def get(name: str, *, label: str | None = None, version: int | None = None, **options: Any) -> Prompt:
    """A prompt version by label, number or the latest, cached client-side (see `podium.prompts.sdk.get`)."""
    from podium.prompts.sdk import get as _get

    return _get(name, label=label, version=version, **options)


def run(name: str, *, model: str, **options: Any) -> RunResult:
    """Run a version on a gateway model through the playground (see `podium.prompts.sdk.run`)."""
    from podium.prompts.sdk import run as _run

    return _run(name, model=model, **options)
