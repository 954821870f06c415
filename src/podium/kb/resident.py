"""The in-process serving copy of a large finished chunk table: an HNSW graph and the columns a hit shows.

Why it exists: every LanceDB query costs about 5 ms on this machine whatever the table and index (a 1-row
table, flat search: bench/RESULTS.md, issue 17), which is more than numpy needs to compare a query with
100,000 vectors exactly, so no LanceDB search can be the fast path of an unfiltered vector query. A
finished version never changes, so a read-only copy kept in the process cannot go stale: the graph
(usearch, f32 cosine, so the similarities it returns are exact for the candidates it finds) answers in well
under a millisecond, and the hit columns, held as one Arrow table sorted by row id, turn its keys into hits
with one `take`. LanceDB stays the store and serves the filtered, full-text and small searches.

The graph is keyed by LanceDB row id (stable for a table's finished version: it is never compacted). On a
local database it is saved beside the table (`<name>.hnsw`, written to a temporary file and renamed, so a
reader sees a whole file or none) when the version is finished, and memory-mapped when the copy is loaded;
a graph that is missing, unreadable or of another size is rebuilt from the table. On object storage the
graph is built in memory when the copy is first needed (about 30-40 s per 100,000 384-dim vectors here).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from usearch.index import Index

log = logging.getLogger(__name__)

# The graph: each node linked to RESIDENT_M neighbours, RESIDENT_EF_CONSTRUCTION candidates while it is
# built, RESIDENT_EF while searching (usearch raises it to the number of results asked when larger).
# Measured on the benchmark's 100,000 MiniLM vectors of real text and 1,000 held-out queries (bench/rag.py's
# cache, 2026-12-01, 2 cores), recall@10 and ms per query:
#   M=16, ef_construction=128 (built in 26 s): ef 64 0.948 0.57 ms, 96 0.969 0.84, 128 0.981 1.06,
#                                              192 0.990 1.37, 256 0.993 1.72
#   M=32, ef_construction=200 (built in 56 s): ef 64 0.976 0.77 ms, 128 0.992 1.27, 192 0.996 1.93
# M=16 with ef=192 reaches 0.99 for half the build time of M=32.
RESIDENT_M = 16
RESIDENT_EF_CONSTRUCTION = 128
RESIDENT_EF = 192
GRAPH_SUFFIX = ".hnsw"

FloatArray = np.ndarray[Any, np.dtype[np.float32]]


def graph_path(uri: str, name: str) -> Path | None:
    """Where the graph of table `name` is kept: beside the table on a local database, nowhere on object
    storage (`scheme://…`, except `file://`)."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://")) / f"{name}{GRAPH_SUFFIX}"


def build_graph(keys: np.ndarray[Any, np.dtype[np.uint64]], vectors: FloatArray) -> Index:
    """An HNSW graph of `vectors` (cosine) under `keys`."""
    graph = Index(
        ndim=vectors.shape[1],
        metric="cos",
        dtype="f32",
        connectivity=RESIDENT_M,
        expansion_add=RESIDENT_EF_CONSTRUCTION,
        expansion_search=RESIDENT_EF,
    )
    if len(keys):
        graph.add(keys, vectors, threads=0)
    return graph


def save_graph(graph: Index, path: Path) -> None:
    """Write `graph` to `path` whole or not at all (a temporary file in the same directory, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        graph.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_graph(path: Path | None) -> None:
    """Delete a table's saved graph, if it has one."""
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _load_graph(path: Path | None, rows: int, dim: int) -> Index | None:
    """The saved graph, memory-mapped, if it is there, readable and of the table's size and dimension."""
    if path is None or not path.exists():
        return None
    try:
        graph = Index.restore(str(path), view=True, expansion_search=RESIDENT_EF)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("knowledge-base graph %s is unreadable (%s); rebuilding it from the table", path, exc)
        return None
    if graph is None or len(graph) != rows or graph.ndim != dim:
        log.warning("knowledge-base graph %s does not match its table; rebuilding it", path)
        return None
    return graph


class Resident:
    """A finished table's graph and hit columns, searched without LanceDB."""

    def __init__(self, graph: Index, hits: pa.Table):
        self._graph = graph
        self._hits = hits  # sorted by _rowid
        self._rowids = hits["_rowid"].to_numpy()

    @staticmethod
    def load(table: Any, columns: list[str], *, rows: int, dim: int, path: Path | None) -> Resident:
        """The copy of `table` (checked out at its finished version): `columns` and the row ids read once,
        and the graph from `path` or built from the table's vectors (and saved to `path` when there is one)."""
        graph = _load_graph(path, rows, dim)
        read = columns if graph is not None else [*columns, "vector"]
        data = table.search().select(read).with_row_id(True).limit(None).to_arrow().sort_by("_rowid")
        if graph is None:
            vectors = data["vector"].combine_chunks()
            matrix = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
            graph = build_graph(data["_rowid"].to_numpy().astype(np.uint64), matrix)
            if path is not None:
                try:
                    save_graph(graph, path)
                except OSError as exc:  # a read-only database still serves searches, from memory
                    log.warning("could not save knowledge-base graph %s: %s", path, exc)
            data = data.drop_columns(["vector"])
        return Resident(graph, data.combine_chunks())

    def search(self, vector: FloatArray, limit: int) -> list[dict[str, Any]]:
        """The rows of the `limit` chunks nearest `vector` by the graph, most similar first, each with its
        cosine `similarity` and `_rowid`, as LanceDB's rows are."""
        matches = self._graph.search(vector, count=limit)
        keys = np.asarray(matches.keys, dtype=np.uint64)
        positions = np.searchsorted(self._rowids, keys)
        rows: list[dict[str, Any]] = self._hits.take(pa.array(positions)).to_pylist()
        for row, distance in zip(rows, np.asarray(matches.distances), strict=True):
            row["similarity"] = 1.0 - float(distance)
        return rows


__all__ = ["GRAPH_SUFFIX", "RESIDENT_EF", "Resident", "build_graph", "graph_path", "remove_graph", "save_graph"]
