"""Evaluation: evaluators, LLM judges, eval runs over dataset versions, comparisons, suites and the CI gate,
counterfactual bias tests and online evaluation of production traces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podium.evals.evaluators.base import Sample, Verdict, evaluator

if TYPE_CHECKING:
    from podium.evals.sdk import EvalRun

__all__ = ["Sample", "Verdict", "compare", "evaluator", "run"]


def run(dataset: str, target: Any, evaluators: Any, **options: Any) -> EvalRun:
    """Evaluate a target over a dataset version (see `podium.evals.sdk.run`)."""
    from podium.evals.sdk import run as _run

    return _run(dataset, target, evaluators, **options)


def compare(a: str, b: str, **options: Any) -> dict[str, Any]:
    """Compare two runs (see `podium.evals.sdk.compare`)."""
    from podium.evals.sdk import compare as _compare

    return _compare(a, b, **options)
