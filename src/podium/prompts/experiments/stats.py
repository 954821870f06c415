"""The statistics of experiment results: means and rates with 95% intervals, percentiles, and the
probability that each arm is best.

- Means carry Student's t intervals (exact quantiles to 30 degrees of freedom, a Cornish-Fisher expansion
  above); rates and 0/1 scores carry Wilson score intervals, which stay inside [0, 1] and behave at 0 and n.
- The probability that an arm is best is estimated by Monte Carlo from posteriors of each arm's mean:
  Beta(1 + successes, 1 + failures) for 0/1 values, a normal N(mean, sd/√n) otherwise. The bandit's
  Thompson step draws from the same posteriors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

DRAWS = 2_000  # posterior draws per Thompson step and per probability-of-best estimate
Z95 = 1.959963984540054
# two-sided 95% quantiles of Student's t for 1-30 degrees of freedom; above 30 a Cornish-Fisher expansion
_T95 = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
)


class Estimate(BaseModel):
    """A mean (or a rate) over `n` samples with its 95% interval; `low`/`high` are null below two samples
    (rates: below one), `mean` is null with none."""

    n: int
    mean: float | None
    low: float | None
    high: float | None


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df <= len(_T95):
        return _T95[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values: Sequence[float]) -> Estimate:
    """The mean with a 95% Student's t interval."""
    n = len(values)
    if n == 0:
        return Estimate(n=0, mean=None, low=None, high=None)
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if n < 2:
        return Estimate(n=n, mean=mean, low=None, high=None)
    half = t95(n - 1) * float(arr.std(ddof=1)) / math.sqrt(n)
    return Estimate(n=n, mean=mean, low=mean - half, high=mean + half)


def wilson(successes: float, n: int) -> Estimate:
    """A proportion with its 95% Wilson score interval."""
    if n == 0:
        return Estimate(n=0, mean=None, low=None, high=None)
    p = successes / n
    z2 = Z95 * Z95
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # rounded: at p = 0 or 1 the bound is exactly 0 or 1 but floating point leaves 1e-17
    return Estimate(n=n, mean=p, low=round(max(0.0, center - half), 12), high=round(min(1.0, center + half), 12))


def percentiles(values: Sequence[float], *ps: float) -> list[float | None]:
    """The `ps`-th percentiles (0-100) of `values`, interpolating linearly between ranks (numpy's default);
    None for each when there are no values."""
    if not values:
        return [None] * len(ps)
    return [float(x) for x in np.percentile(np.asarray(values, dtype=float), ps)]


def is_binary(samples: Sequence[Sequence[float]]) -> bool:
    """Whether every value of every arm is 0 or 1 (and there is at least one)."""
    seen = False
    for values in samples:
        for v in values:
            if v not in (0.0, 1.0):
                return False
            seen = True
    return seen


def posterior_draws(
    samples: Sequence[Sequence[float]], binary: bool, draws: int, rng: np.random.Generator
) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """Draws of each arm's mean from its posterior, shape (arms, draws); None when some arm of a non-0/1
    score has under two samples (no spread to draw from)."""
    rows = []
    for values in samples:
        n = len(values)
        if binary:
            hits = float(sum(values))
            rows.append(rng.beta(1 + hits, 1 + n - hits, draws))
            continue
        if n < 2:
            return None
        arr = np.asarray(values, dtype=float)
        se = max(float(arr.std(ddof=1)) / math.sqrt(n), 1e-12)
        rows.append(rng.normal(float(arr.mean()), se, draws))
    return np.vstack(rows)


def prob_best(draws: np.ndarray[Any, np.dtype[np.float64]], higher_is_better: bool = True) -> list[float]:
    """For each arm (row), the fraction of draws (columns) in which it is the best."""
    winners = draws.argmax(axis=0) if higher_is_better else draws.argmin(axis=0)
    counts = np.bincount(winners, minlength=draws.shape[0])
    return [float(c) / draws.shape[1] for c in counts]
