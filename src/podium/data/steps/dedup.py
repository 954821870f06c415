"""`dedup`: exact deduplication on one text column, keeping the first occurrence.

Each text (optionally NFKC-normalized, case-folded and whitespace-collapsed first, so trivial variants
count as copies) is hashed to 8 bytes; only the hashes are held, so memory grows by a few tens of bytes
per distinct row, never by the texts. Two different texts share a 64-bit hash with odds near n²/2⁶⁵:
about one false duplicate in ten billion rows at a million rows.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from podium.data.steps.base import Step, StepConfig, StepContext, register

MAX_EXAMPLES = 20
TRACKED_ORIGINALS = 100_000  # distinct texts whose first row is remembered, to name it in examples


@register
class Dedup(Step):
    """Drop rows whose text already appeared earlier in the input."""

    name = "dedup"

    class Config(StepConfig):
        """Settings of `dedup`."""

        field: str = Field(default="text", min_length=1)
        normalize: bool = True

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.seen: set[int] = set()
        self.first_row: dict[int, int] = {}  # bounded: only the first TRACKED_ORIGINALS distinct texts
        self.rows_in = 0
        self.duplicates = 0
        self.examples: list[dict[str, int]] = []

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The field must be a text column; the columns stay as they are."""
        self.require_column(schema, self.config.field)
        return schema

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The batch without rows seen before (in earlier batches or earlier in this one)."""
        self.rows_in += batch.num_rows
        keep = [True] * batch.num_rows
        seen, first_row = self.seen, self.first_row
        for i, key in enumerate(self._keys(batch.column(self.config.field))):
            h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
            if h not in seen:
                seen.add(h)
                if len(first_row) < TRACKED_ORIGINALS:
                    first_row[h] = offset + i
                continue
            keep[i] = False
            self.duplicates += 1
            if len(self.examples) < MAX_EXAMPLES and h in first_row:
                self.examples.append({"row": offset + i, "duplicate_of": first_row[h]})
        if all(keep):
            return batch
        return batch.filter(pa.array(keep, type=pa.bool_()))

    def _keys(self, column: pa.ChunkedArray) -> list[bytes]:
        """The bytes hashed for each row: the text, or its normalized form (nulls as empty text)."""
        if pa.types.is_null(column.type):
            return [b""] * len(column)
        column = pc.fill_null(column, "")
        if not self.config.normalize:
            return [s.encode() for s in column.to_pylist()]
        column = pc.utf8_normalize(column, form="NFKC")
        return [" ".join(s.casefold().split()).encode() for s in column.to_pylist()]

    def report(self) -> dict[str, Any]:
        """Rows in and out, how many were copies, and the first few copies with the row they repeat."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_in - self.duplicates,
            "duplicates": self.duplicates,
            "examples": list(self.examples),
        }
