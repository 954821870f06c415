"""The storage and search layer of knowledge bases: one LanceDB table of chunks per knowledge-base version.

A knowledge-base version (a dataset version, a chunker configuration, an embedding model version) is written
once and then only read:

- `ChunkIndex.create(uri, name, dim)` makes the table and returns a `ChunkWriter`. Its `add` takes pyarrow
  record batches or tables, or lists of dicts, with the columns of `chunk_schema(dim)`; rows are checked,
  buffered and appended `WRITE_ROWS` at a time. `finish()` builds the indexes, then tags the table's last
  version `finished`: the table is readable from then on, and only at that tag, so nothing written later
  changes what a search sees.
- `ChunkIndex.open(uri, name)` opens a finished table at its tag; a table without the tag is still building
  (or its build died) and is refused with `Conflict`.
- `ChunkIndex.search` runs one of three modes, with prefilters on source, tags and creation time:
  `vector` (cosine similarity; exact below `EXACT_MAX_ROWS` rows, HNSW above), `text` (BM25 on the native
  full-text index: English, lower-cased, ASCII-folded, stop words removed, stemmed) and `hybrid`
  (reciprocal rank fusion of the two, `RRF_K` = 60). Every hit carries its chunk text, source, document,
  offsets, tags and metadata, its score in the mode, and the per-mode scores it has.

Hybrid fusion is computed here rather than with LanceDB's `RRFReranker`: its merge keeps the first copy of
a row that both searches found and drops the other search's score (lancedb 0.40, `Reranker.merge_results`),
where a hybrid hit here carries both its similarity and its BM25 score.

Above `EXACT_MAX_ROWS` rows, an unfiltered vector search (and the vector half of an unfiltered hybrid one)
is served by the table's resident copy (`podium.kb.resident`: an HNSW graph and the hit columns in the
process), because any LanceDB query costs about 5 ms here; a filtered one by LanceDB's own HNSW index with
the filter applied first.

`exact_top_k` is the honest exact baseline (numpy `argpartition` over every vector) and `recall_at_k`
measures a search against it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from podium.core.errors import Conflict, InvalidInput, NotFound, validated
from podium.kb.resident import Resident, build_graph, graph_path, remove_graph, save_graph

# Below this many rows a table gets no vector index and every search compares the query with every vector
# (exact, recall 1). Measured on this 2-core machine (lancedb 0.40, 384-dim clustered unit vectors, median
# of 40 queries, k=10): an exact search takes 4.7 ms at 2k rows, 4.8 ms at 5k, 9.2 ms at 10k and 16.4 ms at
# 20k, growing with the rows; with IVF_HNSW_SQ a search takes 3-6 ms at 10k-20k rows and the index costs
# 2.5-3.5 s to build at 10k and 5-16 s at 20k. Up to 10k rows exact search stays under 10 ms and the build
# skips the index.
EXACT_MAX_ROWS = 10_000

# The vector index above EXACT_MAX_ROWS: IVF_HNSW_SQ (an HNSW graph over 8-bit scalar-quantised vectors) on
# cosine distance with one IVF partition (a single graph: no partition can be missed), LanceDB's graph
# defaults (m=20, ef_construction=300), searched with ef=ANN_EF candidates and the best
# k * ANN_REFINE_FACTOR of them re-ranked on the full vectors, so the distances returned are exact.
# A colleague measured recall@10 1.000 with ef=64 on 20k clustered 384-dim vectors. Re-measured here on
# 20k 384-dim vectors in 20, 50 and 200 Gaussian clusters (100 queries each, a stored vector plus noise,
# cosine 0.65-0.8 to it): ef=64 gave recall@10 0.970-0.999 with some queries at recall 0 (the search never
# reached their cluster: 1 to 3 queries in 100 on 200 clusters); ef=128 gave 0.998-1.000 and no such query,
# for about the same latency (4.5-6 ms on this shared, busy machine). Queries far from every stored vector
# (cosine ~0.45) are harder: ef=128 gave 0.982-1.000, still with at most one such query in 100.
# ef is raised to k * ANN_REFINE_FACTOR when larger (LanceDB refuses ef below the candidates it returns).
ANN_PARTITIONS = 1
ANN_M = 20
ANN_EF_CONSTRUCTION = 300
ANN_EF = 128
ANN_REFINE_FACTOR = 2

RRF_K = 60  # reciprocal rank fusion: score = sum over the result lists of 1 / (RRF_K + rank), rank from 1
HYBRID_DEPTH = 50  # each search of a hybrid query returns max(2k, HYBRID_DEPTH) candidates to fuse
MAX_K = 1000
MAX_QUERY_CHARS = 8192
MAX_FILTER_VALUES = 100
MAX_FILTER_VALUE_CHARS = 1000
WRITE_ROWS = 16_384  # rows buffered by a writer before one append (fewer, larger Lance fragments)
FINISHED_TAG = "finished"  # the tag of a finished table's version; a table without it is still building

Mode = Literal["vector", "text", "hybrid"]
MODES: tuple[str, ...] = ("vector", "text", "hybrid")
FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IndexArray = np.ndarray[Any, np.dtype[np.int64]]
Rows: TypeAlias = "pa.RecordBatch | pa.Table | Sequence[Mapping[str, Any]]"

REQUIRED = ("id", "vector", "text", "source", "doc_id", "start", "end")
OPTIONAL = ("tags", "created_at", "metadata", "hash")
_HIT_COLUMNS = ["id", "text", "source", "doc_id", "start", "end", "tags", "created_at", "metadata"]
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # what LanceDB accepts as a table name, bounded


def chunk_schema(dim: int) -> pa.Schema:
    """The columns of a chunk table whose vectors have `dim` dimensions."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("start", pa.int64(), nullable=False),  # text == document[start:end]
            pa.field("end", pa.int64(), nullable=False),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
            pa.field("metadata", pa.string()),  # a JSON object
            pa.field("hash", pa.string()),  # the content hash its vector was made for (re-used by later builds)
        ]
    )


class Filters(BaseModel):
    """Prefilters of a search: any of these sources, any of these tags, created in [created_from, created_to).
    Naive datetimes are UTC; an unknown field is refused (a misspelt filter must not widen a search)."""

    model_config = ConfigDict(extra="forbid")

    source: list[str] | None = Field(default=None, min_length=1, max_length=MAX_FILTER_VALUES)
    tags_any: list[str] | None = Field(default=None, min_length=1, max_length=MAX_FILTER_VALUES)
    created_from: datetime | None = None
    created_to: datetime | None = None

    @field_validator("source", "tags_any")
    @classmethod
    def _values(cls, values: list[str] | None) -> list[str] | None:
        for value in values or ():
            if not value or len(value) > MAX_FILTER_VALUE_CHARS or "\x00" in value:
                raise ValueError(f"values must be 1 to {MAX_FILTER_VALUE_CHARS} characters without NUL")
        return values

    @field_validator("created_from", "created_to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)

    @model_validator(mode="after")
    def _range(self) -> Filters:
        if self.created_from is not None and self.created_to is not None and self.created_from >= self.created_to:
            raise ValueError("created_from must be before created_to")
        return self

    def where(self) -> str | None:
        """The filters as a LanceDB SQL predicate, or None without filters. Strings are quoted by LanceDB's
        own literal (`lancedb.expr.lit`, which doubles single quotes); times are formatted from datetimes."""
        parts: list[str] = []
        if self.source:
            parts.append(f"source IN ({', '.join(_quote(v) for v in self.source)})")
        if self.tags_any:
            parts.append(f"array_has_any(tags, make_array({', '.join(_quote(v) for v in self.tags_any)}))")
        if self.created_from is not None:
            parts.append(f"created_at >= {_timestamp(self.created_from)}")
        if self.created_to is not None:
            parts.append(f"created_at < {_timestamp(self.created_to)}")
        return " AND ".join(f"({p})" for p in parts) if parts else None


def _quote(value: str) -> str:
    from lancedb.expr import lit  # lancedb is imported on first use: it adds seconds to every server start

    quoted: str = lit(value).to_sql()
    assert quoted.startswith("'") and quoted.endswith("'"), quoted
    return quoted


def _timestamp(value: datetime) -> str:
    # UTC by construction (Filters._utc); the column's values are UTC microseconds
    return (
        f"CAST('{value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=' ', timespec='microseconds')}' AS TIMESTAMP)"
    )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Hit(BaseModel):
    """One chunk found by a search. `score` is the mode's: the cosine similarity (vector), the BM25 score
    (text) or the reciprocal rank fusion score (hybrid); `similarity` and `bm25` are set where known (a
    hybrid hit has a similarity always, a BM25 score when the text search found it)."""

    id: str
    text: str
    source: str
    doc_id: str
    start: int
    end: int
    tags: list[str]
    created_at: datetime | None
    metadata: dict[str, Any]
    score: float
    similarity: float | None = None
    bm25: float | None = None
    rerank: float | None = None  # the re-ranking model's relevance score, when a search was re-ranked


def unit_rows(matrix: FloatArray) -> FloatArray:
    """`matrix` (float32) with every row scaled to length 1 (all-zero rows left as they are)."""
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: FloatArray = m / norms
    return unit


def exact_top_k(matrix: FloatArray, query: FloatArray, k: int, *, unit: bool = False) -> IndexArray:
    """The row indices of the `k` rows of `matrix` most cosine-similar to `query`, most similar first
    (every row compared: `argpartition`, then the k sorted). With `unit=True` the rows are taken to be of
    length 1 already (`unit_rows`), which saves scaling the whole matrix on every query."""
    m = np.asarray(matrix, dtype=np.float32)
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if m.ndim != 2 or m.shape[1] != q.shape[0]:
        raise InvalidInput(f"a query of dimension {q.shape[0]} does not fit a matrix of shape {m.shape}")
    sims = (m if unit else unit_rows(m)) @ (q / (float(np.linalg.norm(q)) or 1.0))
    k = min(k, len(sims))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    return top[np.argsort(-sims[top], kind="stable")].astype(np.int64)


def recall_at_k(index: ChunkIndex, queries: FloatArray | Sequence[Sequence[float]], k: int = 10) -> float:
    """The mean recall@k of `index.search` (vector mode) against `exact_top_k` over the index's vectors."""
    ids, matrix = index.vectors()
    unit = unit_rows(matrix)
    recalls = []
    for query in np.asarray(queries, dtype=np.float32):
        truth = {ids[i] for i in exact_top_k(unit, query, k, unit=True)}
        found = {hit.id for hit in index.search(query_vector=query, k=k)}
        recalls.append(len(truth & found) / len(truth) if truth else 1.0)
    return float(np.mean(recalls)) if recalls else 1.0


def _connect(uri: str, storage_options: Mapping[str, str] | None) -> Any:
    import lancedb  # on first use, not at import: `podium serve` imports this module at start

    return lancedb.connect(uri, storage_options=dict(storage_options) if storage_options else None)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"index name {name!r} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        )


class ChunkWriter:
    """Appends chunks to a table being built; `finish` indexes it and makes it readable."""

    def __init__(self, table: Any, name: str, dim: int, graph: Path | None = None):
        self._table = table
        self._graph = graph
        self.name = name
        self.dim = dim
        self.schema = chunk_schema(dim)
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._finished = False

    def add(self, rows: Rows) -> int:
        """Check and buffer chunks (a record batch, a table or a list of dicts); the number of rows added."""
        if self._finished:
            raise Conflict(f"knowledge-base index {self.name!r} is finished and cannot change")
        batch = _to_batch(rows, self.schema)
        if batch.num_rows:
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            self.rows += batch.num_rows
            if self._pending_rows >= WRITE_ROWS:
                self._flush()
        return int(batch.num_rows)

    def _flush(self) -> None:
        if self._pending:
            self._table.add(pa.Table.from_batches(self._pending, schema=self.schema))
        self._pending, self._pending_rows = [], 0

    def finish(self, *, exact_max_rows: int = EXACT_MAX_ROWS) -> ChunkIndex:
        """Write what is buffered, build the indexes (full text, scalar, and the vector index above
        `exact_max_rows` rows), tag the version finished and open it for search."""
        if self._finished:
            raise Conflict(f"knowledge-base index {self.name!r} is already finished")
        from lancedb.index import FTS, BTree, HnswSq, LabelList

        self._flush()
        table = self._table
        table.create_index(
            "text",
            config=FTS(language="English", stem=True, remove_stop_words=True, lower_case=True, ascii_folding=True),
        )
        table.create_index("source", config=BTree())
        table.create_index("created_at", config=BTree())
        table.create_index("tags", config=LabelList())
        if self.rows > exact_max_rows:
            table.create_index(
                "vector",
                config=HnswSq(
                    distance_type="cosine",
                    num_partitions=ANN_PARTITIONS,
                    m=ANN_M,
                    ef_construction=ANN_EF_CONSTRUCTION,
                ),
            )
            if self._graph is not None:  # the resident copy's graph, so the first search need not build it
                data = table.search().select(["vector"]).with_row_id(True).limit(None).to_arrow()
                keys = data["_rowid"].to_numpy().astype(np.uint64)
                save_graph(build_graph(keys, _matrix(data["vector"], self.dim)), self._graph)
        table.tags.create(FINISHED_TAG, table.version)
        self._finished = True
        return ChunkIndex(table, self.name, self._graph)


class ChunkIndex:
    """A finished chunk table, read at its `finished` tag."""

    def __init__(self, table: Any, name: str, graph: Path | None = None):
        tags = table.tags.list()
        if FINISHED_TAG not in tags:
            raise Conflict(f"knowledge-base index {name!r} is still building")
        table.checkout(FINISHED_TAG)
        self._table = table
        self.name = name
        self.dim: int = table.schema.field("vector").type.list_size
        self.rows: int = table.count_rows()
        self.ann = any("vector" in ix.columns for ix in table.list_indices())
        self._graph = graph
        self._resident: Resident | None = None
        self._resident_lock = threading.Lock()

    @staticmethod
    def create(uri: str, name: str, dim: int, *, storage_options: Mapping[str, str] | None = None) -> ChunkWriter:
        """A new, empty table `name` in the LanceDB database at `uri` (a directory or an object-storage URL),
        for vectors of `dim` dimensions; `Conflict` if it exists."""
        _check_name(name)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 8192:
            raise InvalidInput(f"the vector dimension must be an integer from 1 to 8192, not {dim!r}")
        db = _connect(uri, storage_options)
        try:
            table = db.create_table(name, schema=chunk_schema(dim))
        except ValueError as exc:
            if "already exists" in str(exc):
                raise Conflict(f"knowledge-base index {name!r} exists already") from None
            raise
        graph = graph_path(uri, name)
        remove_graph(graph)  # a graph left by a dropped table of the same name is not this table's
        return ChunkWriter(table, name, dim, graph)

    @staticmethod
    def open(uri: str, name: str, *, storage_options: Mapping[str, str] | None = None) -> ChunkIndex:
        """The finished table `name`: `NotFound` if there is none, `Conflict` if it is still building."""
        _check_name(name)
        db = _connect(uri, storage_options)
        try:
            table = db.open_table(name)
        except ValueError as exc:
            if "not found" in str(exc):
                raise NotFound(f"knowledge-base index {name!r} does not exist") from None
            raise
        return ChunkIndex(table, name, graph_path(uri, name))

    @staticmethod
    def drop(uri: str, name: str, *, storage_options: Mapping[str, str] | None = None) -> None:
        """Delete the table `name` (finished or not); nothing if there is none."""
        _check_name(name)
        _connect(uri, storage_options).drop_table(name, ignore_missing=True)
        remove_graph(graph_path(uri, name))

    def vectors(self) -> tuple[list[str], FloatArray]:
        """Every chunk's id and its vector, as a (rows, dim) float32 matrix in the same order."""
        data = self._table.search().select(["id", "vector"]).limit(None).to_arrow()
        return data["id"].to_pylist(), _matrix(data["vector"], self.dim)

    def hashed_vectors(self) -> tuple[list[str], FloatArray]:
        """The content hash and vector of every chunk that has a hash, in the same order (for a later build
        with the same embedding model to re-use the vectors of unchanged chunks)."""
        data = self._table.search().where("hash IS NOT NULL").select(["hash", "vector"]).limit(None).to_arrow()
        return data["hash"].to_pylist(), _matrix(data["vector"], self.dim)

    def search(
        self,
        query_vector: Sequence[float] | FloatArray | None = None,
        query_text: str | None = None,
        *,
        mode: Mode = "vector",
        k: int = 10,
        filters: Filters | Mapping[str, Any] | None = None,
        min_similarity: float | None = None,
    ) -> list[Hit]:
        """The `k` best chunks for the query in `mode` (`vector` takes query_vector, `text` query_text,
        `hybrid` both), among those matching `filters`. With `min_similarity`, only chunks at least that
        cosine-similar to query_vector are found (a hybrid search fuses the chunks above it)."""
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be an integer from 1 to {MAX_K}, not {k!r}")
        vector = self._query_vector(query_vector) if mode in ("vector", "hybrid") else None
        text = _query_text(query_text) if mode in ("text", "hybrid") else None
        if mode == "vector" and query_text is not None:
            raise InvalidInput("query_text is for the text and hybrid modes; a vector search takes query_vector")
        if mode == "text" and query_vector is not None:
            raise InvalidInput("query_vector is for the vector and hybrid modes; a text search takes query_text")
        if min_similarity is not None:
            if mode == "text":
                raise InvalidInput("min_similarity needs a query vector: use the vector or hybrid mode")
            if isinstance(min_similarity, bool) or not isinstance(min_similarity, int | float):
                raise InvalidInput(f"min_similarity must be a number, not {min_similarity!r}")
            if not -1.0 <= min_similarity <= 1.0:
                raise InvalidInput(f"min_similarity must be from -1 to 1, not {min_similarity}")
        if filters is None:
            where = None
        else:
            where = (filters if isinstance(filters, Filters) else validated(Filters, filters, "filters")).where()
        if mode == "vector":
            assert vector is not None
            return [
                _hit(row, score=row["similarity"], similarity=row["similarity"])
                for row in self._vector_rows(vector, k, where, min_similarity)
            ]
        if mode == "text":
            assert text is not None
            return [_hit(row, score=row["_score"], bm25=row["_score"]) for row in self._text_rows(text, k, where)]
        assert vector is not None and text is not None
        return self._hybrid(vector, text, k, where, min_similarity)

    def _query_vector(self, query_vector: Sequence[float] | FloatArray | None) -> FloatArray:
        if query_vector is None:
            raise InvalidInput("the vector and hybrid modes need a query_vector")
        try:
            vector = np.asarray(query_vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidInput("query_vector must be a list of numbers") from None
        if vector.ndim != 1:
            raise InvalidInput("query_vector must be a flat list of numbers")
        if vector.shape[0] != self.dim:
            raise InvalidInput(f"query_vector has dimension {vector.size}; this index holds {self.dim}-dim vectors")
        if not np.isfinite(vector).all():
            raise InvalidInput("query_vector holds a NaN or an infinite value")
        if not np.any(vector):
            raise InvalidInput("query_vector is all zeros, which has no cosine similarity")
        return vector

    def _vector_rows(
        self, vector: FloatArray, limit: int, where: str | None, min_similarity: float | None
    ) -> list[dict[str, Any]]:
        if self.ann and where is None:
            rows = self._resident_copy().search(vector, limit)
        else:
            rows = self._lance_vector_rows(vector, limit, where)
        if min_similarity is not None:  # the rows come most similar first: the top k above the threshold
            rows = [row for row in rows if row["similarity"] >= min_similarity]
        return rows

    def _resident_copy(self) -> Resident:
        """The in-process copy that serves unfiltered vector searches of an indexed table, loaded once."""
        with self._resident_lock:
            if self._resident is None:
                self._resident = Resident.load(
                    self._table, _HIT_COLUMNS, rows=self.rows, dim=self.dim, path=self._graph
                )
            return self._resident

    def _lance_vector_rows(self, vector: FloatArray, limit: int, where: str | None) -> list[dict[str, Any]]:
        query = (
            self._table.search(vector, vector_column_name="vector")
            .distance_type("cosine")
            .select([*_HIT_COLUMNS, "_distance"])
            .with_row_id(True)
            .limit(limit)
        )
        if self.ann:
            query = query.ef(max(ANN_EF, limit * ANN_REFINE_FACTOR)).refine_factor(ANN_REFINE_FACTOR)
        else:
            query = query.bypass_vector_index()
        if where is not None:
            query = query.where(where, prefilter=True)
        rows: list[dict[str, Any]] = query.to_arrow().to_pylist()
        for row in rows:
            row["similarity"] = 1.0 - float(row.pop("_distance"))
        return rows

    def _text_rows(
        self, text: str, limit: int, where: str | None, columns: list[str] = _HIT_COLUMNS
    ) -> list[dict[str, Any]]:
        query = self._table.search(text, query_type="fts", fts_columns="text")
        query = query.select([*columns, "_score"]).with_row_id(True)
        if where is not None:
            query = query.where(where, prefilter=True)
        rows: list[dict[str, Any]] = query.limit(limit).to_arrow().to_pylist()
        return rows

    def _hybrid(
        self, vector: FloatArray, text: str, k: int, where: str | None, min_similarity: float | None
    ) -> list[Hit]:
        depth = max(2 * k, HYBRID_DEPTH)
        by_vector = self._vector_rows(vector, depth, where, min_similarity)
        by_text = self._text_rows(text, depth, where, [*_HIT_COLUMNS, "vector"])
        if by_text:  # the similarity of the chunks found by text, so every hybrid hit has one
            matrix = np.asarray([row.pop("vector") for row in by_text], dtype=np.float32)
            sims = (matrix @ vector) / (np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(vector)))
            for row, sim in zip(by_text, sims, strict=True):
                row["similarity"] = float(sim)
            if min_similarity is not None:
                by_text = [row for row in by_text if row["similarity"] >= min_similarity]
        fused: dict[int, dict[str, Any]] = {}
        for rank, row in enumerate(by_vector, 1):
            fused[row["_rowid"]] = {**row, "rrf": 1.0 / (RRF_K + rank), "bm25": None}
        for rank, row in enumerate(by_text, 1):
            entry = fused.setdefault(row["_rowid"], {**row, "rrf": 0.0})
            entry["rrf"] += 1.0 / (RRF_K + rank)
            entry["bm25"] = row["_score"]
        ranked = sorted(fused.values(), key=lambda r: (-r["rrf"], -r["similarity"], r["id"]))[:k]
        return [_hit(row, score=row["rrf"], similarity=row["similarity"], bm25=row["bm25"]) for row in ranked]


def _query_text(query_text: str | None) -> str:
    if query_text is None:
        raise InvalidInput("the text and hybrid modes need a query_text")
    if not isinstance(query_text, str) or not query_text.strip():
        raise InvalidInput("query_text is empty")
    if len(query_text) > MAX_QUERY_CHARS or "\x00" in query_text:
        raise InvalidInput(f"query_text must be at most {MAX_QUERY_CHARS} characters without NUL")
    return query_text


def _hit(row: Mapping[str, Any], *, score: float, similarity: float | None = None, bm25: float | None = None) -> Hit:
    metadata = row["metadata"]
    created = row["created_at"]
    return Hit(
        id=row["id"],
        text=row["text"],
        source=row["source"],
        doc_id=row["doc_id"],
        start=row["start"],
        end=row["end"],
        tags=row["tags"] or [],
        created_at=None if created is None else _as_utc(created),
        metadata=orjson.loads(metadata) if metadata else {},
        score=float(score),
        similarity=None if similarity is None else float(similarity),
        bm25=None if bm25 is None else float(bm25),
    )


def _matrix(column: pa.Array | pa.ChunkedArray, dim: int) -> FloatArray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values: FloatArray = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(-1, dim)


def _to_batch(rows: Rows, schema: pa.Schema) -> pa.RecordBatch:
    """The rows as a record batch of `schema`, checked: required values present, vectors of the table's
    dimension, finite and non-zero, offsets 0 <= start <= end, metadata a JSON object."""
    dim = schema.field("vector").type.list_size
    if isinstance(rows, pa.RecordBatch | pa.Table):
        data = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
    elif isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
        data = _from_dicts(rows)
    else:
        raise InvalidInput("chunks must be a pyarrow record batch or table, or a list of dicts")
    missing = [name for name in REQUIRED if name not in data.column_names]
    if missing:
        raise InvalidInput(f"chunks lack the column(s) {', '.join(missing)}")
    n = data.num_rows
    columns: list[pa.Array] = []
    for field in schema:
        if field.name not in data.column_names:
            columns.append(pa.nulls(n, field.type))
            continue
        column = data[field.name].combine_chunks()
        if not field.nullable and column.null_count:
            raise InvalidInput(f"chunk column {field.name!r} holds nulls")
        if field.name == "vector":
            columns.append(_vectors(column, dim))
            continue
        if field.name == "metadata" and not pa.types.is_string(column.type):
            raise InvalidInput("chunk column 'metadata' must hold JSON objects as strings (or dicts in a list)")
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise InvalidInput(f"chunk column {field.name!r} cannot be read as {field.type}: {exc}") from None
    batch = pa.RecordBatch.from_arrays(columns, schema=schema)
    start, end = batch.column("start"), batch.column("end")
    if n and (pc.any(pc.less(start, 0)).as_py() or pc.any(pc.less(end, start)).as_py()):
        raise InvalidInput("chunk offsets must satisfy 0 <= start <= end")
    for value in batch.column("metadata").to_pylist():
        if value is not None and not isinstance(_json(value), dict):
            raise InvalidInput("chunk metadata must be a JSON object")
    return batch


def _from_dicts(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    names = [*REQUIRED, *OPTIONAL]
    cols: dict[str, list[Any]] = {name: [] for name in names}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInput("each chunk must be a dict")
        missing = [name for name in REQUIRED if name not in row]
        if missing:
            raise InvalidInput(f"chunk {i} lacks {', '.join(missing)}")
        unknown = set(row) - set(names)
        if unknown:
            raise InvalidInput(f"chunks hold unknown column(s) {', '.join(sorted(map(str, unknown)))}")
        for name in names:
            value = row.get(name)
            if name == "metadata" and isinstance(value, Mapping):
                value = orjson.dumps(value).decode()
            elif name == "created_at" and isinstance(value, datetime):
                value = _as_utc(value)
            cols[name].append(value)
    present = [name for name in names if name in REQUIRED or any(v is not None for v in cols[name])]
    try:
        return pa.table({name: cols[name] for name in present if name != "vector"} | {"vector": _vector_list(cols)})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"chunks cannot be read: {exc}") from None


def _vector_list(cols: Mapping[str, list[Any]]) -> pa.Array:
    vectors = cols["vector"]
    if any(v is None for v in vectors):
        raise InvalidInput("chunk column 'vector' holds nulls")
    try:
        return pa.array([np.asarray(v, dtype=np.float32) for v in vectors], type=pa.list_(pa.float32()))
    except (TypeError, ValueError, pa.ArrowInvalid, pa.ArrowTypeError):
        raise InvalidInput("chunk vectors must be lists of numbers") from None


def _vectors(column: pa.Array, dim: int) -> pa.FixedSizeListArray:
    if not (
        pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type)
    ):
        raise InvalidInput(f"chunk column 'vector' must hold lists of numbers, not {column.type}")
    if pa.types.is_fixed_size_list(column.type):
        sizes = np.full(len(column), column.type.list_size)
    else:
        sizes = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(sizes != dim)
    if wrong.size:
        raise InvalidInput(f"chunk vector {int(wrong[0])} has dimension {int(sizes[wrong[0]])}; the index holds {dim}")
    values = column.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InvalidInput(f"chunk vectors must hold numbers, not {values.type}")
    if values.null_count:
        raise InvalidInput("chunk vectors hold nulls")
    matrix = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    if not np.isfinite(matrix).all():
        raise InvalidInput("chunk vectors hold a NaN or an infinite value")
    if len(matrix) and not np.any(matrix, axis=1).all():
        raise InvalidInput("a chunk vector is all zeros, which has no cosine similarity")
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), dim)


def _json(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidInput("chunk metadata must be a JSON object") from None


__all__ = [
    "ANN_EF",
    "ANN_REFINE_FACTOR",
    "EXACT_MAX_ROWS",
    "RRF_K",
    "ChunkIndex",
    "ChunkWriter",
    "Filters",
    "Hit",
    "Mode",
    "chunk_schema",
    "exact_top_k",
    "recall_at_k",
    "unit_rows",
]
