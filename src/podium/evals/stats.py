"""The statistics of eval runs: bootstrap intervals of a mean, and the paired test that says whether run B
differs from run A on the same rows.

- `bootstrap_ci` is the percentile bootstrap of the mean: resample the rows with replacement `draws` times and
  take the quantiles of the resampled means. It assumes nothing about the shape of the scores (0/1 verdicts,
  bounded judge scores, skewed latencies), which Student's t intervals (`podium.prompts.experiments.stats`) do.
- `paired_test` is a two-sided sign-flip permutation test on the per-row differences b - a: under the null
  hypothesis that A and B are exchangeable on every row, each difference is as likely to have either sign, so
  the p value is the share of sign assignments whose |sum| is at least the observed one. With at most 16 non-zero
  differences every assignment is enumerated (exact); above, `draws` random assignments are drawn and
  p = (count + 1) / (draws + 1), which never reports 0 and stays valid (conservative) for a Monte Carlo test.

Everything is deterministic for a seed (numpy's `default_rng`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

EXACT_MAX = 16  # non-zero differences up to which the permutation test enumerates all 2^k sign assignments
_CHUNK = 1 << 22  # numbers generated at once (about 32 MB of float64), so large runs do not exhaust memory

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class Interval(BaseModel):
    """A mean over `n` values with its interval; all null with no values."""

    n: int
    mean: float | None
    low: float | None
    high: float | None


class PairedTest(BaseModel):
    """Run B against run A on the same `n` rows: the means, the mean difference (b - a) with its 95% bootstrap
    interval, the two-sided permutation p value, and how many rows B won, lost and tied (by the score's
    direction, within the tie tolerance). `method` says how the p value was computed."""

    n: int
    mean_a: float | None
    mean_b: float | None
    mean_delta: float | None
    low: float | None
    high: float | None
    p_value: float
    wins: int
    losses: int
    ties: int
    method: str


def _array(values: Sequence[float], what: str) -> FloatArray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds a NaN or an infinite value")
    return arr


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, draws: int = 2000, seed: int = 0) -> Interval:
    """The mean of `values` with its percentile bootstrap interval at `level` (deterministic for a seed).

    One value gives a zero-width interval at the value; none gives nulls."""
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    if draws < 1:
        raise ValueError("draws must be at least 1")
    arr = _array(values, "values")
    n = len(arr)
    if n == 0:
        return Interval(n=0, mean=None, low=None, high=None)
    mean = float(arr.mean())
    if n == 1:
        return Interval(n=1, mean=mean, low=mean, high=mean)
    rng = np.random.default_rng(seed)
    means = np.empty(draws)
    step = max(1, _CHUNK // n)
    for start in range(0, draws, step):
        stop = min(draws, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(n=n, mean=mean, low=float(low), high=float(high))


def bootstrap_many(
    columns: Mapping[str, Sequence[float]], *, level: float = 0.95, draws: int = 2000, seed: int = 0
) -> dict[str, Interval]:
    """`bootstrap_ci` of many score columns at once: columns of the same length share each chunk of resampled
    indices, so a run's seven scores cost about one resampling instead of seven. Each column's interval is
    a valid percentile bootstrap of its own mean (draws are shared, which only correlates the columns)."""
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    if draws < 1:
        raise ValueError("draws must be at least 1")
    arrays = {name: _array(values, name) for name, values in columns.items()}
    out: dict[str, Interval] = {}
    by_n: dict[int, list[str]] = {}
    for name, arr in arrays.items():
        n = len(arr)
        if n == 0:
            out[name] = Interval(n=0, mean=None, low=None, high=None)
        elif n == 1:
            out[name] = Interval(n=1, mean=float(arr[0]), low=float(arr[0]), high=float(arr[0]))
        else:
            by_n.setdefault(n, []).append(name)
    tail = (1 - level) / 2
    for n, names in by_n.items():
        rng = np.random.default_rng(seed)
        means = {name: np.empty(draws) for name in names}
        step = max(1, _CHUNK // n)
        for start in range(0, draws, step):
            stop = min(draws, start + step)
            idx = rng.integers(0, n, size=(stop - start, n))
            for name in names:
                means[name][start:stop] = arrays[name][idx].mean(axis=1)
        for name in names:
            low, high = np.quantile(means[name], [tail, 1 - tail])
            out[name] = Interval(n=n, mean=float(arrays[name].mean()), low=float(low), high=float(high))
    return out


def _sign_flip_p(diffs: FloatArray, draws: int, rng: np.random.Generator) -> tuple[float, str]:
    """The two-sided p value of the sign-flip test on non-zero `diffs`, and how it was computed."""
    k = len(diffs)
    observed = abs(float(diffs.sum()))
    # sums reached by another order of additions can differ from the observed one in the last bits
    threshold = observed - 1e-9 * float(np.abs(diffs).sum())
    if k <= EXACT_MAX:
        total = 1 << k
        bits = (np.arange(total)[:, None] >> np.arange(k)) & 1
        sums = np.abs((1 - 2 * bits) @ diffs)
        count = int((sums >= threshold).sum())
        return count / total, f"exact sign-flip permutation test over {total} sign assignments"
    count = 0
    step = max(1, _CHUNK // k)
    for start in range(0, draws, step):
        rows = min(draws, start + step) - start
        signs = 1 - 2 * rng.integers(0, 2, size=(rows, k))
        count += int((np.abs(signs @ diffs) >= threshold).sum())
    return (count + 1) / (draws + 1), f"Monte Carlo sign-flip permutation test with {draws} draws"


def paired_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    tie: float = 1e-9,
    draws: int = 10_000,
    seed: int = 0,
    higher_is_better: bool = True,
) -> PairedTest:
    """Whether run B differs from run A on the same rows (`a[i]` and `b[i]` are one row's scores).

    Differences within `tie` count as ties and as zero in the test (float noise is not evidence); when every
    difference is zero the p value is 1. Raises ValueError when the runs differ in length."""
    if len(a) != len(b):
        raise ValueError(f"paired runs differ in length: {len(a)} and {len(b)}")
    if tie < 0:
        raise ValueError("tie must not be negative")
    if draws < 1:
        raise ValueError("draws must be at least 1")
    arr_a, arr_b = _array(a, "a"), _array(b, "b")
    n = len(arr_a)
    if n == 0:
        return PairedTest(
            n=0,
            mean_a=None,
            mean_b=None,
            mean_delta=None,
            low=None,
            high=None,
            p_value=1.0,
            wins=0,
            losses=0,
            ties=0,
            method="no rows",
        )
    deltas = arr_b - arr_a
    better = deltas if higher_is_better else -deltas
    wins = int((better > tie).sum())
    losses = int((better < -tie).sum())
    nonzero = deltas[np.abs(deltas) > tie]
    rng = np.random.default_rng(seed)
    if len(nonzero) == 0:
        p_value, method = 1.0, "every difference is a tie"
    else:
        p_value, method = _sign_flip_p(nonzero, draws, rng)
    ci = bootstrap_ci(deltas.tolist(), draws=2000, seed=seed)
    return PairedTest(
        n=n,
        mean_a=float(arr_a.mean()),
        mean_b=float(arr_b.mean()),
        mean_delta=ci.mean,
        low=ci.low,
        high=ci.high,
        p_value=min(1.0, p_value),
        wins=wins,
        losses=losses,
        ties=n - wins - losses,
        method=method,
    )
