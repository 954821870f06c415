"""`split` and `sample`: seeded, reproducible partitions and samples that stream.

Every random choice about row `i` is a hash of (seed, i): SplitMix64 on the row position, mapped to [0, 1).
So the outcome depends on the seed and the row's position only, never on how rows were batched or on the
state of a generator, and reruns give the same rows. `sample` with `n` keeps a reservoir (algorithm R with
the same hashed draws) of n rows and emits it, in input order, at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from podium.data.steps.base import Step, StepConfig, StepContext, register

_MASK64 = (1 << 64) - 1
_SPLIT_STREAM = 0x5EED_5B11  # distinct streams, so a sample and a split with one seed are independent
_SAMPLE_STREAM = 0x5EED_5A4B


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The SplitMix64 finalizer: a bijection on 64-bit integers that mixes every input bit into every output bit."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(seed: int, stream: int, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """A number in [0, 1) for each row position, a pure function of (seed, stream, position)."""
    key = _splitmix64(np.array([(seed * 0x100000001B3 + stream) & _MASK64], dtype=np.uint64))[0]
    h = _splitmix64(positions.astype(np.uint64) ^ key)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@register
class Split(Step):
    """Add a column naming each row's split (train, validation, test by default), by seeded hash of its position."""

    name = "split"

    class Config(StepConfig):
        """Settings of `split`."""

        fractions: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
        seed: int | None = None  # None: the pipeline's seed
        column: str = Field(default="split", min_length=1)

        @field_validator("fractions")
        @classmethod
        def _sums_to_one(cls, fractions: dict[str, float]) -> dict[str, float]:
            if not fractions:
                raise ValueError("name at least one split")
            bad = [name for name, f in fractions.items() if not name or not f > 0]
            if bad:
                raise ValueError(f"each split needs a name and a fraction above 0 (check {', '.join(map(repr, bad))})")
            total = sum(fractions.values())
            if abs(total - 1) > 1e-6:
                raise ValueError(f"fractions must add up to 1, not {total:g}")
            return fractions

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.seed = self.config.seed if self.config.seed is not None else ctx.seed
        self.names = pa.array(list(self.config.fractions), pa.string())
        self.bounds = np.cumsum(list(self.config.fractions.values()))
        self.counts = np.zeros(len(self.names), dtype=np.int64)

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The input columns plus the split name (string)."""
        if self.config.column in schema.names:
            raise self.field_error(f"the data already has a column {self.config.column!r}", "column")
        return schema.append(pa.field(self.config.column, pa.string()))

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The batch with each row's split."""
        u = uniform(self.seed, _SPLIT_STREAM, np.arange(offset, offset + batch.num_rows, dtype=np.int64))
        which = np.minimum(np.searchsorted(self.bounds, u, side="right"), len(self.names) - 1)
        self.counts += np.bincount(which, minlength=len(self.names))
        column = pc.take(self.names, pa.array(which, pa.int64()))
        return batch.append_column(pa.field(self.config.column, pa.string()), column)

    def report(self) -> dict[str, Any]:
        """Rows per split, and the seed used."""
        return {"seed": self.seed, "counts": dict(zip(self.names.to_pylist(), self.counts.tolist(), strict=True))}


@register
class Sample(Step):
    """A seeded sample: each row kept with probability `fraction` (streaming), or exactly `n` rows (reservoir)."""

    name = "sample"

    class Config(StepConfig):
        """Settings of `sample`: exactly one of `n` and `fraction`."""

        n: int | None = Field(default=None, ge=1)
        fraction: float | None = Field(default=None, gt=0, le=1)
        seed: int | None = None  # None: the pipeline's seed

        @model_validator(mode="after")
        def _one_of(self) -> Sample.Config:
            if (self.n is None) == (self.fraction is None):
                raise ValueError("set exactly one of n and fraction")
            return self

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.seed = self.config.seed if self.config.seed is not None else ctx.seed
        self.rows_in = 0
        self.rows_out = 0
        self.held: pa.Table | None = None  # the reservoir (at most n rows) ...
        self.held_at = np.zeros(0, dtype=np.int64)  # ... and each held row's input position

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The kept rows of the batch (fraction), or nothing yet (n: the reservoir is emitted by `finish`)."""
        n_rows = batch.num_rows
        self.rows_in += n_rows
        positions = np.arange(offset, offset + n_rows, dtype=np.int64)
        u = uniform(self.seed, _SAMPLE_STREAM, positions)
        if self.config.fraction is not None:
            keep = u < self.config.fraction
            self.rows_out += int(keep.sum())
            return batch.filter(pa.array(keep, pa.bool_()))
        assert self.config.n is not None
        self._reservoir(batch, positions, u, self.config.n)
        return batch.slice(0, 0)

    def _reservoir(self, batch: pa.Table, positions: npt.NDArray[np.int64], u: npt.NDArray[np.float64], n: int) -> None:
        """Algorithm R: the first n rows fill the slots; row i after them takes slot floor(u_i * (i + 1)) when
        that is below n (probability n / (i + 1)), replacing the row held there."""
        slot = np.where(positions < n, positions, np.floor(u * (positions + 1)).astype(np.int64))
        entering = np.flatnonzero(slot < n)
        if not len(entering):
            return
        held = 0 if self.held is None else self.held.num_rows
        size = min(n, int(positions[-1]) + 1)
        # pool = held rows, then the entering rows; each slot takes the last entering row aimed at it
        source = np.arange(size, dtype=np.int64)
        aimed = slot[entering][::-1]
        slots, first_in_reversed = np.unique(aimed, return_index=True)
        source[slots] = held + (len(entering) - 1 - first_in_reversed)
        new_rows = batch.take(pa.array(entering, pa.int64()))
        pool = new_rows if self.held is None else pa.concat_tables([self.held, new_rows])
        pool_at = np.concatenate([self.held_at, positions[entering]])
        self.held = pool.take(pa.array(source, pa.int64()))
        self.held_at = pool_at[source]

    def finish(self) -> pa.Table | None:
        """The reservoir, in input order (n), or nothing (fraction)."""
        if self.held is None:
            return None
        order = np.argsort(self.held_at, kind="stable")
        out = self.held.take(pa.array(order, pa.int64()))
        self.rows_out = out.num_rows
        self.held, self.held_at = None, np.zeros(0, dtype=np.int64)
        return out

    def report(self) -> dict[str, Any]:
        """Rows in and out, the mode and the seed."""
        mode = {"n": self.config.n} if self.config.n is not None else {"fraction": self.config.fraction}
        return {"rows_in": self.rows_in, "rows_out": self.rows_out, "seed": self.seed, **mode}
