"""Evaluators: reference metrics, model judges, RAG and safety checks, operational thresholds, custom ones."""

from __future__ import annotations

import importlib

_BUILTIN_MODULES = (
    "podium.evals.evaluators.reference",
    "podium.evals.evaluators.safety",
    "podium.evals.evaluators.operational",
    "podium.evals.evaluators.judge",
    "podium.evals.evaluators.rag",
    "podium.evals.evaluators.modelbased",
)
_loaded = False


def load_builtins() -> None:
    """Import the built-in evaluator modules (each registers its types) and the `podium.evaluators` plugins."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for ep in entry_points(group="podium.evaluators"):
        ep.load()
