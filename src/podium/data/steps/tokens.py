"""`tokenize`: token counts by a model's own tokenizer, with length filters or truncation.

Counts are those of the tokenizer of the model the data is for (a model reference), encoded a batch at a
time. The statistics keep one counter per distinct length, not one number per row, so they stay small
however many rows pass, and the percentiles are still exact.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from podium.core.errors import InvalidInput, NotFound
from podium.data.steps.base import Step, StepConfig, StepContext, Tokenizer, register, texts

HISTOGRAM_EDGES = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)  # the last bucket is open-ended


def histogram(counts: Counter[int], edges: tuple[int, ...] = HISTOGRAM_EDGES) -> dict[str, list[int]]:
    """Rows per bucket: `counts[i]` rows have `edges[i] <= n < edges[i+1]` (the last bucket has no end)."""
    buckets = [0] * len(edges)
    for value, rows in counts.items():
        buckets[int(np.searchsorted(edges, value, side="right")) - 1] += rows
    return {"edges": list(edges), "counts": buckets}


def summary(counts: Counter[int]) -> dict[str, Any]:
    """Min, max, mean, p50 and p95 of the values counted (exact; None when there are none)."""
    total = sum(counts.values())
    if not total:
        return {"min": None, "max": None, "mean": None, "p50": None, "p95": None}
    values = sorted(counts)
    cumulative = np.cumsum([counts[v] for v in values])

    def pct(q: float) -> int:  # nearest-rank percentile
        return int(values[int(np.searchsorted(cumulative, max(1, int(np.ceil(q * total)))))])

    mean = sum(v * n for v, n in counts.items()) / total
    return {"min": values[0], "max": values[-1], "mean": round(mean, 2), "p50": pct(0.5), "p95": pct(0.95)}


def load_tokenizer(step: Step, ref: str) -> Tokenizer:
    """The tokenizer of model `ref`; the error when it cannot load (`InvalidInput`, or `NotFound` for an
    unknown model) names this step's `tokenizer` setting."""
    where = f"{step.prefix}.tokenizer" if step.prefix else "tokenizer"
    try:
        return step.ctx.load_tokenizer(ref, where)
    except (InvalidInput, NotFound) as exc:
        message = f"{where}: cannot load the tokenizer of {ref!r}: {exc.message}"
        raise type(exc)(message, details={**exc.details, "field": where}, code=exc.code) from None


@register
class Tokenize(Step):
    """Count tokens per row into a column; drop rows out of bounds, or truncate the long ones."""

    name = "tokenize"

    class Config(StepConfig):
        """Settings of `tokenize`."""

        tokenizer: str = Field(min_length=1)
        field: str = Field(default="text", min_length=1)
        column: str = Field(default="n_tokens", min_length=1)
        min_tokens: int | None = Field(default=None, ge=0)
        max_tokens: int | None = Field(default=None, ge=1)
        truncate: bool = False

        @model_validator(mode="after")
        def _bounds(self) -> Tokenize.Config:
            if self.min_tokens is not None and self.max_tokens is not None and self.min_tokens > self.max_tokens:
                raise ValueError(f"min_tokens ({self.min_tokens}) is above max_tokens ({self.max_tokens})")
            if self.truncate and self.max_tokens is None:
                raise ValueError("truncate needs max_tokens")
            return self

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.tokenizer: Tokenizer | None = None
        self.lengths: Counter[int] = Counter()  # token count -> rows, over the input rows
        self.too_short = 0
        self.too_long = 0
        self.truncated = 0

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The input columns plus the int64 count column; loads the tokenizer now, so a bad one fails first."""
        self.require_column(schema, self.config.field)
        if self.config.column in schema.names:
            raise self.field_error(f"the data already has a column {self.config.column!r}", "column")
        self.tokenizer = load_tokenizer(self, self.config.tokenizer)
        return schema.append(pa.field(self.config.column, pa.int64()))

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The batch with token counts; rows out of bounds dropped (or truncated, with `truncate`)."""
        assert self.tokenizer is not None, "output_schema loads the tokenizer before any batch"
        c = self.config
        values = texts(batch, c.field)
        ids = self.tokenizer.encode_batch(values) if values else []
        counts = [len(x) for x in ids]
        self.lengths.update(counts)
        index = batch.schema.get_field_index(c.field)
        if c.truncate and c.max_tokens is not None:
            long_rows = [i for i, n in enumerate(counts) if n > c.max_tokens]
            if long_rows:
                column = batch.column(index).to_pylist()
                for i, (text, n) in zip(long_rows, self._truncate([ids[i] for i in long_rows]), strict=True):
                    column[i] = text
                    counts[i] = n
                self.truncated += len(long_rows)
                batch = batch.set_column(
                    index, batch.schema.field(index), pa.array(column, type=batch.schema.field(index).type)
                )
        batch = batch.append_column(pa.field(c.column, pa.int64()), pa.array(counts, pa.int64()))
        keep = [True] * len(counts)
        for i, n in enumerate(counts):
            if c.min_tokens is not None and n < c.min_tokens:
                keep[i] = False
                self.too_short += 1
            elif c.max_tokens is not None and n > c.max_tokens and not c.truncate:
                keep[i] = False
                self.too_long += 1
        return batch if all(keep) else batch.filter(pa.array(keep, pa.bool_()))

    def _truncate(self, ids: list[list[int]]) -> list[tuple[str, int]]:
        """Texts cut to at most `max_tokens` tokens, with their token counts. Decoding then encoding again
        does not always give the same tokens back, so a cut that still counts too many is cut shorter."""
        assert self.tokenizer is not None and self.config.max_tokens is not None
        limit = self.config.max_tokens
        keep = [limit] * len(ids)
        out: list[tuple[str, int]] = [("", 0)] * len(ids)
        todo = list(range(len(ids)))
        for _ in range(4):
            cut = [self.tokenizer.decode(ids[i][: keep[i]]) for i in todo]
            again = self.tokenizer.encode_batch(cut)
            retry = []
            for i, text, tokens in zip(todo, cut, again, strict=True):
                out[i] = (text, len(tokens))
                if len(tokens) > limit and keep[i] > 1:
                    keep[i] = max(1, keep[i] - (len(tokens) - limit))
                    retry.append(i)
            if not retry:
                break
            todo = retry
        return out

    def report(self) -> dict[str, Any]:
        """Token counts of the input rows (histogram and summary), and rows dropped or truncated."""
        return {
            "tokenizer": self.config.tokenizer,
            "rows_in": sum(self.lengths.values()),
            "histogram": histogram(self.lengths),
            **summary(self.lengths),
            "dropped_too_short": self.too_short,
            "dropped_too_long": self.too_long,
            "truncated": self.truncated,
        }
