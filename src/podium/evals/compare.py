"""Comparing two eval runs over the same rows: per score, a paired test of B against A; per row, what moved.

Rows are paired by their `index` (a row's position in the dataset version), so runs over a filtered or partly
failed dataset still line up; rows in only one run are counted as unpaired and left out of every test. A score
is compared on the paired rows where both runs have it (an errored row has no scores: never a silent zero).

A score's direction decides what "worse" means: names ending in `_ms`, `_usd` or `_tokens`, and `toxicity`,
`perplexity`, `latency_ms` and `cost_usd`, are lower-is-better by default, everything else higher-is-better;
the caller overrides per name. The rows come back regressions first, the worst first, so a reviewer reads the
damage before the wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from podium.evals.stats import PairedTest, paired_test

LOWER_IS_BETTER_NAMES = frozenset({"toxicity", "perplexity", "latency_ms", "cost_usd"})
LOWER_IS_BETTER_SUFFIXES = ("_ms", "_usd", "_tokens")
SIGNIFICANCE = 0.05


class RowResult(BaseModel):
    """One row of an eval run: the dataset row's `index` and fields, the target's output, the scores, and the
    error when the row could not be run or scored."""

    index: int
    inputs: dict[str, Any]
    output: str | None
    scores: dict[str, float]
    error: str | None = None


class MetricComparison(BaseModel):
    """One score of run B against run A, with its direction and whether the difference is significant
    (p < 0.05, uncorrected for the number of scores compared)."""

    name: str
    higher_is_better: bool
    test: PairedTest
    significant: bool


class RowDelta(BaseModel):
    """One paired row: both outputs and errors, each shared score's change (b - a), the scores that got worse
    or better beyond the tie tolerance, and the most negative (`worst`) and most positive (`best`) change once
    turned so that positive means better (0 when the rows share no score)."""

    index: int
    inputs: dict[str, Any]
    output_a: str | None
    output_b: str | None
    error_a: str | None = None
    error_b: str | None = None
    deltas: dict[str, float]
    regressed: list[str]
    improved: list[str]
    worst: float
    best: float


class Comparison(BaseModel):
    """Run B against run A: row counts, the scores compared, and the paired rows (regressions first, the worst
    first; then unchanged rows by index; then improvements, the largest first)."""

    rows_a: int
    rows_b: int
    paired: int
    unpaired: int
    only_a: list[int]
    only_b: list[int]
    metrics: list[MetricComparison]
    rows: list[RowDelta]


def default_higher_is_better(name: str) -> bool:
    """Whether a score named `name` is better when higher, by its name (costs, latencies, token counts,
    toxicity and perplexity are better lower)."""
    return not (name in LOWER_IS_BETTER_NAMES or name.endswith(LOWER_IS_BETTER_SUFFIXES))


def _by_index(rows: list[RowResult], run: str) -> dict[int, RowResult]:
    out: dict[int, RowResult] = {}
    for row in rows:
        if row.index in out:
            raise ValueError(f"run {run} holds row index {row.index} twice")
        out[row.index] = row
    return out


def _order(row: RowDelta) -> tuple[int, float, int]:
    if row.regressed:
        return (0, row.worst, row.index)
    if row.improved:
        return (2, -row.best, row.index)
    return (1, 0.0, row.index)


def compare(
    a: list[RowResult],
    b: list[RowResult],
    *,
    higher_is_better: Mapping[str, bool] | None = None,
    tie: float = 1e-9,
) -> Comparison:
    """Run B against run A, rows paired by index. Raises ValueError when a run holds an index twice."""
    rows_a, rows_b = _by_index(a, "A"), _by_index(b, "B")
    shared = sorted(rows_a.keys() & rows_b.keys())
    overrides = dict(higher_is_better or {})

    def direction(name: str) -> bool:
        return overrides.get(name, default_higher_is_better(name))

    names_a = {name for row in a for name in row.scores}
    names_b = {name for row in b for name in row.scores}
    metrics = []
    for name in sorted(names_a & names_b):
        pairs = [
            (rows_a[i].scores[name], rows_b[i].scores[name])
            for i in shared
            if name in rows_a[i].scores and name in rows_b[i].scores
        ]
        test = paired_test([x for x, _ in pairs], [y for _, y in pairs], tie=tie, higher_is_better=direction(name))
        metrics.append(
            MetricComparison(
                name=name, higher_is_better=direction(name), test=test, significant=test.p_value < SIGNIFICANCE
            )
        )

    deltas_out = []
    for i in shared:
        ra, rb = rows_a[i], rows_b[i]
        deltas = {name: rb.scores[name] - ra.scores[name] for name in sorted(ra.scores.keys() & rb.scores.keys())}
        turned = {name: d if direction(name) else -d for name, d in deltas.items()}
        deltas_out.append(
            RowDelta(
                index=i,
                inputs=ra.inputs,
                output_a=ra.output,
                output_b=rb.output,
                error_a=ra.error,
                error_b=rb.error,
                deltas=deltas,
                regressed=[name for name, d in turned.items() if d < -tie],
                improved=[name for name, d in turned.items() if d > tie],
                worst=min(turned.values(), default=0.0),
                best=max(turned.values(), default=0.0),
            )
        )
    deltas_out.sort(key=_order)
    return Comparison(
        rows_a=len(rows_a),
        rows_b=len(rows_b),
        paired=len(shared),
        unpaired=len(rows_a) + len(rows_b) - 2 * len(shared),
        only_a=sorted(rows_a.keys() - rows_b.keys()),
        only_b=sorted(rows_b.keys() - rows_a.keys()),
        metrics=metrics,
        rows=deltas_out,
    )
