"""A fixed log-scale latency histogram: how the trace rollup keeps latencies so that percentiles can be
read back from summed counts, and the bound on how far such a percentile is from the exact one.

Bins grow by a factor `GROWTH` = 2^(1/6) (six per doubling) from `LOW` = 2^-6 ms (16 µs) to `HIGH` = 2^22 ms
(70 min); bin 0 holds everything below `LOW` and the last bin everything from `HIGH` up, `BINS` in all.
The bins are part of the schema (one rollup column each, `h0` … `h169`): changing them needs a migration
that rebuilds the rollup.

A percentile is computed as the exact one is (linear interpolation between the two nearest ranks), each
rank's value taken as its bin's representative: the harmonic midpoint `2·lo·hi / (lo + hi)`, which is
within `ERROR` = (GROWTH - 1) / (GROWTH + 1) ≈ 5.77% of any value in the bin. An interpolation between two
values each within that relative distance is within it too, so for latencies between `LOW` and `HIGH` an
estimated percentile is within `ERROR` of the exact one. Below `LOW` the estimate is off by less than
`LOW` / 2 in absolute terms; from `HIGH` up it reads `HIGH` (an underestimate).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Sequence

PER_DOUBLING = 6
LOW_EXPONENT = -6  # LOW = 2^-6 ms
DOUBLINGS = 28  # HIGH = 2^22 ms
GROWTH = 2 ** (1 / PER_DOUBLING)
LOW = 2.0**LOW_EXPONENT
EDGES: tuple[float, ...] = tuple(2.0 ** (LOW_EXPONENT + i / PER_DOUBLING) for i in range(DOUBLINGS * PER_DOUBLING + 1))
HIGH = EDGES[-1]
BINS = len(EDGES) + 1  # underflow, one per pair of neighbouring edges, overflow
ERROR = (GROWTH - 1) / (GROWTH + 1)
PERCENTILES = (50, 95, 99)


def bin_of(latency_ms: float) -> int:
    """The bin a latency falls in: 0 below `LOW`, `BINS - 1` from `HIGH` up (edges belong to the bin above)."""
    return bisect_right(EDGES, latency_ms)


def representative(index: int) -> float:
    """The value a bin stands for in percentiles."""
    if index <= 0:
        return LOW / 2
    if index >= BINS - 1:
        return HIGH
    lo, hi = EDGES[index - 1], EDGES[index]
    return 2 * lo * hi / (lo + hi)


def exact_percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) of sorted values, interpolating linearly between ranks (as PostgreSQL's
    `percentile_cont`)."""
    if not values:
        return None
    rank = (len(values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def estimates(counts: Sequence[int], ps: Sequence[float] = PERCENTILES) -> list[float | None]:
    """The p-th percentiles (0-100) of the latencies counted per bin, as `exact_percentile` reads them from
    the values themselves (within `ERROR`, see the module docstring); None when there are none."""
    cumulative = list(itertools.accumulate(counts))
    n = cumulative[-1] if cumulative else 0
    if n <= 0:
        return [None for _ in ps]

    def value_at(rank: int) -> float:  # the representative of the bin holding the 0-based rank
        return representative(bisect_right(cumulative, rank))

    out: list[float | None] = []
    for p in ps:
        rank = (n - 1) * p / 100
        low = math.floor(rank)
        a = value_at(low)
        b = value_at(min(low + 1, n - 1))
        out.append(a + (b - a) * (rank - low))
    return out


def estimate(counts: Sequence[int], p: float) -> float | None:
    """The p-th percentile (0-100) of the latencies counted per bin (see `estimates`)."""
    return estimates(counts, (p,))[0]


def histogram(values: Sequence[float]) -> list[int]:
    """Counts per bin of some latencies."""
    counts = [0] * BINS
    for v in values:
        counts[bin_of(v)] += 1
    return counts
