"""Writing rows as one Parquet file, with the statistics a dataset card shows, in bounded memory.

Imports do not know their schema before the last row (a JSONL key may first appear on line 900,000), so
`Spool` keeps each batch in a temporary Arrow IPC file and widens one schema as batches come; replayed,
every batch is cast to it. Pipelines know their schema in advance (each step declares it) and write
straight through `ParquetOut`. Either way rows go to a temporary file first: a version is made from it
only once it is complete.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 10_000
LENGTH_EDGES = (0, 16, 64, 256, 1024, 4096, 16384, 65536)  # histogram buckets of text lengths (characters)
TOKEN_EDGES = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
COUNTED = ("lang", "split", "label", "format", "source", "model", "status")  # columns whose values are counted
MAX_COUNTED_VALUES = 50
MAX_DISTINCT_COUNTED = 10_000  # a counted column with more distinct values stops being counted (memory)


def is_text(kind: pa.DataType) -> bool:
    """Whether a column of this type holds text."""
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _merge_type(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """One type holding values of both: the wider number, or text when they disagree (kept as JSON)."""
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    try:
        merged = pa.unify_schemas([pa.schema([("x", a)]), pa.schema([("x", b)])], promote_options="permissive")
        return merged.field("x").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.string()


def merge_schemas(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    """Columns of both, in order of first appearance, each typed to hold the values of both."""
    fields = {f.name: f.type for f in a}
    for f in b:
        fields[f.name] = _merge_type(fields[f.name], f.type) if f.name in fields else f.type
    return pa.schema(list(fields.items()))


def settled(schema: pa.Schema) -> pa.Schema:
    """A schema ready to write: columns that held only nulls become text."""
    return pa.schema([(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in schema])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: missing ones null, others cast (values that cannot be cast to
    text become JSON text)."""
    columns = []
    for f in schema:
        if f.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        column = table.column(f.name)
        if column.type == f.type:
            columns.append(column)
            continue
        try:
            columns.append(pc.cast(column, f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            if not is_text(f.type):
                raise
            values = column.to_pylist()
            columns.append(
                pa.array([v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values], f.type)
            )
    return pa.table(columns, schema=schema)


class Spool:
    """Batches of unknown, widening schema kept in temporary files, replayed cast to the final schema."""

    def __init__(self, folder: Path, *, numbers_from_text: bool = False):
        self.folder = folder
        self.numbers_from_text = numbers_from_text  # CSV: text columns whose every value is a number become one
        self.schema = pa.schema([])
        self.rows = 0
        self._files: list[Path] = []

    def add(self, table: pa.Table) -> None:
        """Keep a batch."""
        if table.num_rows == 0:
            return
        self.schema = merge_schemas(self.schema, table.schema)
        path = self.folder / f"part-{len(self._files):06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
            out.write_table(table)
        self._files.append(path)
        self.rows += table.num_rows

    def _pieces(self) -> Iterator[tuple[Path, pa.Table]]:
        for path in self._files:
            with pa.memory_map(str(path), "r") as source:
                yield path, pa.ipc.open_file(source).read_all()

    def _numbers(self) -> dict[str, pa.DataType]:
        """The text columns every value of which (over all batches) is an integer, or else a number."""
        from podium.data.formats import numbers_of

        candidates = {f.name: [pa.int64(), pa.float64()] for f in self.schema if is_text(f.type)}
        for _, table in self._pieces():
            for name, kinds in candidates.items():
                if name not in table.column_names:
                    continue
                for kind in list(kinds):
                    try:
                        numbers_of(table.column(name), kind)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                        kinds.remove(kind)
        found = {}
        for name, kinds in candidates.items():
            if kinds:
                found[name] = kinds[0]
        return found

    @property
    def final_schema(self) -> pa.Schema:
        """The schema rows are written with (computed once: it reads every batch when numbers are inferred)."""
        if not hasattr(self, "_final"):
            numbers = self._numbers() if self.numbers_from_text else {}
            self._casts = numbers
            schema = settled(self.schema)
            self._final = pa.schema([(f.name, numbers.get(f.name, f.type)) for f in schema])
        return self._final

    def __iter__(self) -> Iterator[pa.Table]:
        from podium.data.formats import numbers_of

        schema = self.final_schema
        for path, table in self._pieces():
            for name, kind in self._casts.items():
                if name in table.column_names:
                    i = table.column_names.index(name)
                    table = table.set_column(i, name, numbers_of(table.column(name), kind))
            yield conform(table, schema)
            path.unlink()


@dataclass
class _ColumnStats:
    kind: str
    nulls: int = 0
    minimum: float | None = None
    maximum: float | None = None
    total: float = 0.0
    count: int = 0
    histogram: list[int] | None = None
    values: Counter[str] = field(default_factory=Counter)

    def add(self, lo: float | None, hi: float | None, total: float, count: int) -> None:
        if count == 0 or lo is None or hi is None:
            return
        self.minimum = lo if self.minimum is None else min(self.minimum, lo)
        self.maximum = hi if self.maximum is None else max(self.maximum, hi)
        self.total += total
        self.count += count

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "nulls": self.nulls}
        if self.count:
            out.update(min=self.minimum, max=self.maximum, mean=round(self.total / self.count, 3))
        if self.histogram is not None:
            out["histogram"] = self.histogram
        if len(self.values) > MAX_DISTINCT_COUNTED:  # counting stopped: the counts would mislead
            out["distinct_values_over"] = MAX_DISTINCT_COUNTED
        elif self.values:
            out["values"] = dict(self.values.most_common(MAX_COUNTED_VALUES))
        return out


def _bucket(values: pa.Array, edges: tuple[int, ...]) -> list[int]:
    """Counts of `values` per bucket `[edges[i], edges[i+1])`, the last open-ended."""
    counts = []
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        mask = pc.greater_equal(values, low)
        if high is not None:
            mask = pc.and_(mask, pc.less(values, high))
        counts.append(int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0))
    return counts


class Stats:
    """Per-column statistics gathered batch by batch: nulls; text lengths (min, max, mean, histogram);
    numbers (min, max, mean); value counts of a few well-known columns; token counts when present."""

    def __init__(self, schema: pa.Schema):
        self.rows = 0
        self.columns = {f.name: _ColumnStats(str(f.type)) for f in schema}
        self._schema = schema

    def add(self, table: pa.Table) -> None:
        """Count one batch."""
        self.rows += table.num_rows
        for f in self._schema:
            column = table.column(f.name)
            st = self.columns[f.name]
            st.nulls += column.null_count
            valid = column.drop_null() if column.null_count else column
            if len(valid) == 0:
                continue
            numbers: pa.ChunkedArray | None = None
            edges: tuple[int, ...] | None = None
            if is_text(f.type):
                numbers, edges = pc.utf8_length(valid), LENGTH_EDGES
                if f.name in COUNTED and len(st.values) <= MAX_DISTINCT_COUNTED:
                    st.values.update({str(d["values"]): int(d["counts"]) for d in pc.value_counts(valid).to_pylist()})
            elif pa.types.is_integer(f.type) or pa.types.is_floating(f.type):
                numbers = valid
                if f.name == "n_tokens":
                    edges = TOKEN_EDGES
            if numbers is None:
                continue
            lo_hi = pc.min_max(numbers).as_py()
            lo, hi = lo_hi["min"], lo_hi["max"]
            if isinstance(lo, float) and not (math.isfinite(lo) and math.isfinite(hi)):
                continue
            st.add(lo, hi, float(pc.sum(numbers).as_py() or 0), len(numbers))
            if edges is not None:
                counts = _bucket(pa.chunked_array([numbers]) if isinstance(numbers, pa.Array) else numbers, edges)
                st.histogram = (
                    counts if st.histogram is None else [a + b for a, b in zip(st.histogram, counts, strict=True)]
                )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able statistics: `rows` and `columns` by name; histogram edges alongside."""
        return {
            "rows": self.rows,
            "columns": {name: st.as_dict() for name, st in self.columns.items()},
            "length_edges": list(LENGTH_EDGES),
            "token_edges": list(TOKEN_EDGES),
        }


@dataclass(frozen=True)
class Written:
    """A complete Parquet file of rows, waiting to become a version."""

    path: Path
    rows: int
    schema: pa.Schema
    stats: dict[str, Any]


class ParquetOut:
    """Rows of a known schema written to a temporary Parquet file (zstd, row groups of `ROW_GROUP_ROWS`),
    counted as they go. Two writes of the same rows make the same bytes, so the same content hashes alike."""

    def __init__(self, folder: Path, schema: pa.Schema):
        fd, name = tempfile.mkstemp(dir=folder, prefix="version-", suffix=".parquet")
        os.close(fd)
        self.path = Path(name)
        self.schema = schema
        self.stats = Stats(schema)
        self._writer = pq.ParquetWriter(str(self.path), schema, compression="zstd")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def write(self, table: pa.Table) -> None:
        """Add rows (cast to the schema); row groups are cut at fixed sizes, whatever the batches were."""
        if table.num_rows == 0:
            return
        table = conform(table, self.schema)
        self.stats.add(table)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            merged = pa.concat_tables(self._pending)
            self._writer.write_table(merged.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
            rest = merged.slice(ROW_GROUP_ROWS)
            self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> Written:
        """Finish the file."""
        if self._pending_rows:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=ROW_GROUP_ROWS)
        self._writer.close()
        return Written(self.path, self.stats.rows, self.schema, self.stats.as_dict())

    def abort(self) -> None:
        """Drop the file (a failed import or pipeline leaves nothing behind)."""
        try:
            self._writer.close()
        finally:
            self.path.unlink(missing_ok=True)


def write_all(folder: Path, schema: pa.Schema, batches: Iterable[pa.Table]) -> Written:
    """Every batch into one Parquet file; nothing is left behind on error."""
    out = ParquetOut(folder, schema)
    try:
        for batch in batches:
            out.write(batch)
        return out.close()
    except BaseException:
        out.abort()
        raise
