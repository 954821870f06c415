"""Preparation steps; importing this package registers every built-in step in `base.STEPS`."""

from __future__ import annotations

from podium.data.steps import (  # noqa: F401  (each module registers its steps)
    chat,
    chunk,
    dedup,
    langid,
    neardup,
    pii,
    quality,
    split,
    text,
    tokens,
)
