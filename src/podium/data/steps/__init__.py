"""Preparation steps; importing this package registers every built-in step in `base.STEPS`."""

from __future__ import annotations

import importlib

_MODULES = ("text", "dedup", "neardup", "pii", "quality", "langid", "tokens", "chat", "split", "chunk")

for _name in _MODULES:
    try:
        importlib.import_module(f"podium.data.steps.{_name}")
    except ModuleNotFoundError as _exc:  # TEMPORARY while the steps are being written
        if _exc.name != f"podium.data.steps.{_name}":
            raise
