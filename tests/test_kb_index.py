"""The knowledge-base chunk index on LanceDB (`podium.kb.index`): a tiny corpus with planted answers for each
search mode (near-duplicate vectors, a stemmed word, a chunk strong in both), prefilters, the similarity
threshold, the fields every hit carries, the HNSW path above a lowered size threshold measured against the
exact baseline, the building/finished life of a version, and the refusals of bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.kb import index as kbindex
from podium.kb.index import ChunkIndex, Filters, Hit, chunk_schema, exact_top_k, recall_at_k
from podium.kb.resident import graph_path

DIM = 32
DOCS = {
    "d-vec": "Vectors close to the query. Nothing else matches.",
    "d-both": "Indexing databases: keep an index per column you filter on.",
    "d-text": "We rebuild the search indexes every night, after the import job has finished.",
    "d-wiki1": "The history of the printing press and movable type in Europe.",
    "d-wiki2": "Tea is grown on terraced hillsides in cool, misty climates.",
    "d-man1": "To reset the router, hold the button for ten seconds.",
    "d-man2": "O'Reilly books on gardening: soil, compost and seasonal planting.",
}


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def orthogonal(rng: np.random.Generator, q: np.ndarray) -> np.ndarray:
    v = rng.normal(size=q.shape)
    return unit(v - (v @ q) * q)  # cosine similarity 0 to the query


@pytest.fixture(scope="module")
def query() -> np.ndarray:
    return unit(np.random.default_rng(1).normal(size=DIM))


def corpus(query: np.ndarray) -> list[dict[str, Any]]:
    """Chunks of DOCS (whole documents, or slices with their offsets) with planted vectors: d-vec's chunks are
    near-duplicates of the query, d-both's chunk is fairly close (cosine ~0.8), every other chunk is
    orthogonal to it."""
    rng = np.random.default_rng(2)
    rows = []
    when = datetime(2024, 1, 1, tzinfo=UTC)
    plan = [  # (id, doc, start, end, vector, source, tags)
        ("vec-a", "d-vec", 0, 27, unit(query + 0.02 * rng.normal(size=DIM)), "wiki", ["near"]),
        ("vec-b", "d-vec", 28, 50, unit(query + 0.03 * rng.normal(size=DIM)), "manual", ["near", "it's"]),
        ("both", "d-both", 0, None, unit(query + 0.75 * orthogonal(rng, query)), "wiki", ["db"]),
        ("text", "d-text", 0, None, orthogonal(rng, query), "manual", ["db", "ops"]),
        ("wiki1", "d-wiki1", 0, None, orthogonal(rng, query), "wiki", []),
        ("wiki2", "d-wiki2", 0, None, orthogonal(rng, query), "wiki", ["tea"]),
        ("man1", "d-man1", 0, None, orthogonal(rng, query), "manual", ["ops"]),
        ("man2", "d-man2", 0, None, orthogonal(rng, query), "o'reilly", ["garden"]),
    ]
    for i, (cid, doc, start, end, vector, source, tags) in enumerate(plan):
        end = len(DOCS[doc]) if end is None else end
        rows.append(
            {
                "id": cid,
                "vector": vector.tolist(),
                "text": DOCS[doc][start:end],
                "source": source,
                "doc_id": doc,
                "start": start,
                "end": end,
                "tags": tags,
                "created_at": when + timedelta(days=10 * i),
                "metadata": {"position": i, "title": doc.upper()},
            }
        )
    return rows


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, query: np.ndarray) -> tuple[ChunkIndex, list[dict[str, Any]]]:
    rows = corpus(query)
    writer = ChunkIndex.create(str(tmp_path_factory.mktemp("kb")), "kb_small", DIM)
    assert writer.add(rows[:3]) == 3
    assert writer.add(rows[3:]) == len(rows) - 3
    index = writer.finish()
    return index, rows


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


# --- the three modes ---------------------------------------------------------------------------------------------


def test_vector_search_finds_the_planted_near_duplicates_first(small: Any, query: np.ndarray) -> None:
    index, rows = small
    assert index.ann is False and index.rows == len(rows) and index.dim == DIM
    hits = index.search(query, k=3)
    assert ids(hits)[:2] in (["vec-a", "vec-b"], ["vec-b", "vec-a"])
    assert ids(hits)[2] == "both"
    for hit in hits:
        assert hit.score == hit.similarity and hit.bm25 is None
    assert hits[0].similarity > 0.98 and hits[1].similarity > 0.98
    assert 0.6 < hits[2].similarity < 0.9
    # similarities are the true cosines, most similar first
    by_id = {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}
    for hit in hits:
        assert hit.similarity == pytest.approx(float(by_id[hit.id] @ query), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # k bounds the hits; a k above the rows returns them all
    assert len(index.search(query, k=1)) == 1
    assert len(index.search(query, k=100)) == len(rows)


def test_text_search_matches_stems_and_ranks_by_bm25(small: Any) -> None:
    index, _ = small
    hits = index.search(query_text="indexes", mode="text", k=10)
    # "indexes" finds "Indexing ... index" (stem index) and "indexes", and nothing else
    assert ids(hits) == ["both", "text"]
    for hit in hits:
        assert hit.score == hit.bm25 and hit.bm25 > 0 and hit.similarity is None
    assert hits[0].bm25 > hits[1].bm25
    # case, plural and stop words do not matter; a word in no chunk finds nothing
    assert ids(index.search(query_text="The Printing Presses", mode="text")) == ["wiki1"]
    assert index.search(query_text="zeppelin", mode="text") == []
    # the query is words, not a query language: operators and brackets are plain characters
    assert ids(index.search(query_text='indexes AND ( "col', mode="text")) == ["both", "text"]


def test_hybrid_ranks_a_chunk_strong_in_both_first(small: Any, query: np.ndarray) -> None:
    index, _ = small
    # the setting: by vector "both" is third (after the two near-duplicates), by text it is first
    assert ids(index.search(query, k=3))[2] == "both"
    assert ids(index.search(query_text="indexes", mode="text"))[0] == "both"
    hits = index.search(query, "indexes", mode="hybrid", k=4)
    assert hits[0].id == "both"
    top = hits[0]
    assert top.score == pytest.approx(1 / (60 + 3) + 1 / (60 + 1))
    assert top.similarity is not None and top.similarity > 0.6 and top.bm25 is not None and top.bm25 > 0
    # a near-duplicate found only by vector has no BM25 score; the chunk found only by text has its similarity
    near = next(h for h in hits if h.id == "vec-a")
    assert near.bm25 is None and near.score in (pytest.approx(1 / (60 + 1)), pytest.approx(1 / (60 + 2)))
    everything = index.search(query, "indexes", mode="hybrid", k=100)
    text_only = next(h for h in everything if h.id == "text")
    assert text_only.bm25 is not None and text_only.similarity == pytest.approx(0.0, abs=1e-5)
    assert [h.score for h in everything] == sorted((h.score for h in everything), reverse=True)


# --- filters and threshold ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(source=["wiki"]), {"vec-a", "both", "wiki1", "wiki2"}),
        (Filters(source=["manual", "o'reilly"]), {"vec-b", "text", "man1", "man2"}),
        (Filters(tags_any=["ops", "tea"]), {"text", "wiki2", "man1"}),
        (Filters(tags_any=["it's"]), {"vec-b"}),
        (Filters(created_from=datetime(2024, 1, 21)), {"both", "text", "wiki1", "wiki2", "man1", "man2"}),
        (Filters(created_to=datetime(2024, 1, 21, tzinfo=UTC)), {"vec-a", "vec-b"}),  # created_to excluded
        (
            Filters(
                created_from=datetime(2024, 1, 21, 5, tzinfo=timezone(timedelta(hours=5))),  # 00:00 UTC
                created_to=datetime(2024, 2, 20),  # wiki2's time, excluded
            ),
            {"both", "text", "wiki1"},
        ),
        (Filters(source=["wiki"], tags_any=["db", "tea"]), {"both", "wiki2"}),
        (Filters(source=["x') OR TRUE OR ('"]), set()),  # quoted as a value, never read as SQL
        (Filters(tags_any=["near'] OR TRUE --"]), set()),
    ],
)
def test_filters_select_exactly_the_matching_chunks(
    small: Any, query: np.ndarray, filters: Filters, expected: set[str]
) -> None:
    index, _ = small
    assert set(ids(index.search(query, k=100, filters=filters))) == expected
    as_dict = filters.model_dump(exclude_none=True)
    assert set(ids(index.search(query, k=100, filters=as_dict))) == expected
    # the text and hybrid searches filter too
    text = set(ids(index.search(query_text="indexes", mode="text", filters=filters)))
    assert text == expected & {"both", "text"}
    hybrid = set(ids(index.search(query, "indexes", mode="hybrid", k=100, filters=filters)))
    assert hybrid == expected


def test_filters_apply_before_top_k(small: Any, query: np.ndarray) -> None:
    index, _ = small
    # the two nearest chunks are excluded, so k=2 still returns two (pre-filtered, not filtered after)
    hits = index.search(query, k=2, filters=Filters(tags_any=["db", "ops", "tea", "garden"]))
    assert ids(hits)[0] == "both" and len(hits) == 2


def test_min_similarity_keeps_only_chunks_above_it(small: Any, query: np.ndarray) -> None:
    index, _ = small
    assert set(ids(index.search(query, k=10, min_similarity=0.95))) == {"vec-a", "vec-b"}
    assert ids(index.search(query, k=10, min_similarity=0.5)) == ["vec-a", "vec-b", "both"] or ids(
        index.search(query, k=10, min_similarity=0.5)
    ) == ["vec-b", "vec-a", "both"]
    assert index.search(query, k=10, min_similarity=0.9999) == []
    assert len(index.search(query, k=100, min_similarity=-1.0)) == index.rows
    # hybrid: a chunk found by text but below the threshold is left out, one above it stays
    hybrid = index.search(query, "indexes", mode="hybrid", k=10, min_similarity=0.5)
    assert set(ids(hybrid)) == {"vec-a", "vec-b", "both"}
    assert all(h.similarity is not None and h.similarity >= 0.5 for h in hybrid)


def test_hits_carry_text_offsets_and_fields(small: Any, query: np.ndarray) -> None:
    index, rows = small
    by_id = {r["id"]: r for r in rows}
    for hit in index.search(query, k=100) + index.search(query_text="indexes", mode="text"):
        row = by_id[hit.id]
        assert hit.text == DOCS[hit.doc_id][hit.start : hit.end] == row["text"]
        assert (hit.source, hit.doc_id, hit.start, hit.end, hit.tags) == (
            row["source"],
            row["doc_id"],
            row["start"],
            row["end"],
            row["tags"],
        )
        assert hit.created_at == row["created_at"] and hit.created_at is not None
        assert hit.created_at.tzinfo is not None
        assert hit.metadata == row["metadata"]
    vec_b = next(h for h in index.search(query, k=2) if h.id == "vec-b")
    assert (vec_b.start, vec_b.end, vec_b.text) == (28, 50, "Nothing else matches.")


# --- writing: record batches, optional columns, buffering ---------------------------------------------------------


def test_record_batches_and_optional_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kbindex, "WRITE_ROWS", 25)  # several appends
    rng = np.random.default_rng(3)
    writer = ChunkIndex.create(str(tmp_path), "kb_batches", 8)
    matrix = np.stack([unit(rng.normal(size=8)) for _ in range(100)])
    for lo in range(0, 100, 10):
        batch = pa.RecordBatch.from_pydict(
            {  # float64 lists and no tags, created_at or metadata: cast and filled with nulls
                "id": [f"c{i}" for i in range(lo, lo + 10)],
                "vector": matrix[lo : lo + 10].astype(np.float64).tolist(),
                "text": [f"chunk number {i}" for i in range(lo, lo + 10)],
                "source": ["s"] * 10,
                "doc_id": [f"d{i // 4}" for i in range(lo, lo + 10)],
                "start": [0] * 10,
                "end": [len(f"chunk number {i}") for i in range(lo, lo + 10)],
            }
        )
        writer.add(batch)
    assert writer.add(pa.RecordBatch.from_pylist([], schema=chunk_schema(8))) == 0
    index = writer.finish()
    assert index.rows == 100 and index.ann is False
    hits = index.search(matrix[42], k=1)
    assert hits[0].id == "c42" and hits[0].tags == [] and hits[0].created_at is None and hits[0].metadata == {}
    stored_ids, stored = index.vectors()
    assert stored_ids == [f"c{i}" for i in range(100)]
    np.testing.assert_allclose(stored, matrix, rtol=1e-6)


# --- the vector index above the size threshold -------------------------------------------------------------------


def clustered(rng: np.random.Generator, n: int, dim: int, centers: int = 20) -> np.ndarray:
    c = rng.normal(size=(centers, dim))
    x = c[rng.integers(0, centers, n)] + 0.4 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_clustered(uri: str, name: str, matrix: np.ndarray) -> kbindex.ChunkWriter:
    """A writer holding one chunk per row of `matrix` (ids c0, c1, ...; 50 sources), not yet finished."""
    n, dim = matrix.shape
    writer = ChunkIndex.create(uri, name, dim)
    for lo in range(0, n, 500):
        rows = range(lo, lo + 500)
        writer.add(
            pa.RecordBatch.from_pydict(
                {
                    "id": [f"c{i}" for i in rows],
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix[lo : lo + 500].reshape(-1)), dim),
                    "text": [f"chunk {i}" for i in rows],
                    "source": [f"s{i % 50}" for i in rows],
                    "doc_id": [f"d{i}" for i in rows],
                    "start": [0] * 500,
                    "end": [len(f"chunk {i}") for i in rows],
                }
            )
        )
    return writer


def test_ann_above_the_threshold_keeps_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n, dim = 2000, 64
    matrix = clustered(rng, n, dim)
    writer = write_clustered(str(tmp_path), "kb_ann", matrix)
    index = writer.finish(exact_max_rows=500)
    assert index.ann is True
    assert ChunkIndex.open(str(tmp_path), "kb_ann").ann is True  # found again on open
    queries = matrix[rng.integers(0, n, 40)] + 0.03 * rng.normal(size=(40, dim)).astype(np.float32)
    # the target is 0.95; these settings measure 1.000 here, and without re-ranking on the full vectors
    # (refine_factor 1, ef 10-20) 0.960, so the bar sits between
    assert recall_at_k(index, queries, k=10) >= 0.99
    # the resident graph holds the full vectors, so the similarities it returns are exact
    for hit in index.search(queries[0], k=10):
        i = int(hit.id[1:])
        expected = float(matrix[i] @ queries[0]) / float(np.linalg.norm(queries[0]))
        assert hit.similarity == pytest.approx(expected, abs=1e-5)
    # a 2% prefilter still finds the exact top 10 among the matching rows
    keep = np.array([i % 50 == 7 for i in range(n)])
    found = []
    for q in queries[:10]:
        truth = {f"c{i}" for i in np.flatnonzero(keep)[exact_top_k(matrix[keep], q, 10)]}
        hits = index.search(q, k=10, filters=Filters(source=["s7"]))
        assert all(h.source == "s7" for h in hits)
        found.append(len(truth & set(ids(hits))) / 10)
    assert np.mean(found) >= 0.95
    # k above ANN_EF / ANN_REFINE_FACTOR raises ef with it (LanceDB refuses ef below the candidates)
    assert len(index.search(queries[0], k=200)) == 200


def test_the_resident_graph_is_saved_reused_rebuilt_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(6)
    n, dim = 1000, 32
    matrix = clustered(rng, n, dim)
    uri = str(tmp_path)
    graph = tmp_path / "kb_res.hnsw"
    write_clustered(uri, "kb_res", matrix).finish(exact_max_rows=500)
    assert graph.exists()  # written when the version is finished, before it is readable
    saved = graph.stat().st_mtime_ns
    q = matrix[3] + 0.02 * rng.normal(size=dim).astype(np.float32)
    unit_matrix = kbindex.unit_rows(matrix)
    truth = [f"c{i}" for i in exact_top_k(unit_matrix, q, 10, unit=True)]
    assert truth == [f"c{i}" for i in exact_top_k(matrix, q, 10)]

    index = ChunkIndex.open(uri, "kb_res")
    assert ids(index.search(q, k=10)) == truth
    assert graph.stat().st_mtime_ns == saved  # memory-mapped as it was, not rebuilt
    # the unfiltered vector half of a hybrid search comes from the graph too, with exact similarities
    hybrid = index.search(q, "chunk 3", mode="hybrid", k=5)
    assert hybrid[0].id == "c3" and hybrid[0].bm25 is not None
    for hit in hybrid:
        expected = float(unit_matrix[int(hit.id[1:])] @ (q / np.linalg.norm(q)))
        assert hit.similarity == pytest.approx(expected, abs=1e-5)
    # above the threshold, min_similarity cuts the graph's hits as it cuts LanceDB's
    cut = index.search(q, k=10, min_similarity=0.9)
    assert cut and all(h.similarity is not None and h.similarity >= 0.9 for h in cut)

    graph.write_bytes(b"not a graph")  # damaged: a warning, and the graph is rebuilt from the table
    with caplog.at_level("WARNING", logger="podium.kb.resident"):
        assert ids(ChunkIndex.open(uri, "kb_res").search(q, k=10)) == truth
    assert "rebuilding" in caplog.text and graph.stat().st_size > 1000
    graph.unlink()  # missing: rebuilt and saved again
    assert ids(ChunkIndex.open(uri, "kb_res").search(q, k=10)) == truth
    assert graph.exists()

    ChunkIndex.drop(uri, "kb_res")
    assert not graph.exists()
    assert graph_path("s3://bucket/kb", "t") is None  # object storage: built in memory when needed
    assert graph_path(f"file://{uri}", "t") == tmp_path / "t.hnsw"


def test_exact_top_k_matches_a_full_sort() -> None:
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(300, 16)).astype(np.float32) * rng.uniform(0.5, 3, size=(300, 1)).astype(np.float32)
    q = rng.normal(size=16).astype(np.float32)
    sims = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    assert exact_top_k(matrix, q, 10).tolist() == np.argsort(-sims)[:10].tolist()  # cosine, not dot product
    assert exact_top_k(matrix, q, 1000).tolist() == np.argsort(-sims).tolist()
    assert exact_top_k(matrix, q, 300).tolist() == np.argsort(-sims).tolist()
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    assert exact_top_k(unit, q, 10, unit=True).tolist() == np.argsort(-sims)[:10].tolist()
    with pytest.raises(InvalidInput):
        exact_top_k(matrix, q[:8], 3)


# --- a version's life --------------------------------------------------------------------------------------------


def test_a_building_version_is_refused_and_a_finished_one_is_immutable(tmp_path: Path, query: np.ndarray) -> None:
    uri = str(tmp_path)
    rows = corpus(query)
    with pytest.raises(NotFound):
        ChunkIndex.open(uri, "kb_life")
    writer = ChunkIndex.create(uri, "kb_life", DIM)
    writer.add(rows[:4])
    with pytest.raises(Conflict, match="still building"):
        ChunkIndex.open(uri, "kb_life")
    with pytest.raises(Conflict, match="exists"):
        ChunkIndex.create(uri, "kb_life", DIM)
    index = writer.finish()
    with pytest.raises(Conflict):
        writer.add(rows[4:])
    with pytest.raises(Conflict):
        writer.finish()
    # a write behind the index's back (a new table version) is not seen: searches read the finished tag
    later = [r | {"metadata": json.dumps(r["metadata"])} for r in rows[4:]]
    lancedb.connect(uri).open_table("kb_life").add(pa.Table.from_pylist(later, schema=chunk_schema(DIM)))
    reopened = ChunkIndex.open(uri, "kb_life")
    assert reopened.rows == index.rows == 4
    assert set(ids(reopened.search(query, k=100))) == {"vec-a", "vec-b", "both", "text"}
    ChunkIndex.drop(uri, "kb_life")
    with pytest.raises(NotFound):
        ChunkIndex.open(uri, "kb_life")
    ChunkIndex.drop(uri, "kb_life")  # nothing to drop: no error


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_vector": [1.0] * (DIM - 1)}, "dimension 31"),
        ({"query_vector": [[1.0] * DIM]}, "flat list"),
        ({"query_vector": [0.0] * DIM}, "all zeros"),
        ({"query_vector": [float("nan")] * DIM}, "NaN"),
        ({"query_vector": ["a"] * DIM}, "numbers"),
        ({}, "need a query_vector"),
        ({"query_text": "x", "mode": "text"}, None),  # fine: the control
        ({"query_text": "   ", "mode": "text"}, "empty"),
        ({"query_text": "", "mode": "hybrid", "query_vector": [1.0] * DIM}, "empty"),
        ({"mode": "text"}, "need a query_text"),
        ({"query_text": "x" * 9000, "mode": "text"}, "at most"),
        ({"query_text": "x", "mode": "fuzzy"}, "mode must be one of"),
        ({"query_vector": [1.0] * DIM, "k": 0}, "k must be"),
        ({"query_vector": [1.0] * DIM, "k": 1001}, "k must be"),
        ({"query_vector": [1.0] * DIM, "k": True}, "k must be"),
        ({"query_vector": [1.0] * DIM, "query_text": "x"}, "query_text is for"),
        ({"query_vector": [1.0] * DIM, "query_text": "x", "mode": "text"}, "query_vector is for"),
        ({"query_text": "x", "mode": "text", "min_similarity": 0.5}, "needs a query vector"),
        ({"query_vector": [1.0] * DIM, "min_similarity": 1.5}, "from -1 to 1"),
        ({"query_vector": [1.0] * DIM, "filters": {"source": []}}, "filters field 'source'"),
        ({"query_vector": [1.0] * DIM, "filters": {"tags_any": ["a\x00"]}}, "filters field 'tags_any'"),
        ({"query_vector": [1.0] * DIM, "filters": {"tag_any": ["red"]}}, "filters field 'tag_any'"),  # misspelt
        (
            {"query_vector": [1.0] * DIM, "filters": {"created_from": "2024-02-01", "created_to": "2024-01-01"}},
            "created_from must be before created_to",
        ),
    ],
)
def test_bad_searches_are_invalid_input(small: Any, kwargs: dict[str, Any], message: str | None) -> None:
    index, _ = small
    if message is None:
        index.search(**kwargs)
        return
    with pytest.raises(InvalidInput, match=message):
        index.search(**kwargs)


def good_row(**changes: Any) -> dict[str, Any]:
    row = {"id": "a", "vector": [1.0, 0.0, 0.0, 0.0], "text": "t", "source": "s", "doc_id": "d", "start": 0, "end": 1}
    return row | changes


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([good_row(vector=[1.0, 0.0, 0.0])], "dimension 3; the index holds 4"),
        ([good_row(vector=[0.0] * 4)], "all zeros"),
        ([good_row(vector=[1.0, float("inf"), 0.0, 0.0])], "NaN or an infinite"),
        ([good_row(vector=None)], "nulls"),
        ([good_row(text=None)], "'text' holds nulls"),
        ([{k: v for k, v in good_row().items() if k != "doc_id"}], "chunk 0 lacks doc_id"),
        ([good_row(colour="red")], "unknown column"),
        ([good_row(start=5, end=2)], "0 <= start <= end"),
        ([good_row(start=-1)], "0 <= start <= end"),
        ([good_row(metadata="[1, 2]")], "JSON object"),
        ([good_row(metadata="{not json")], "JSON object"),
        ("not rows", "list of dicts"),
    ],
)
def test_bad_chunks_are_invalid_input(tmp_path: Path, rows: Any, message: str) -> None:
    writer = ChunkIndex.create(str(tmp_path), "kb_bad", 4)
    with pytest.raises(InvalidInput, match=message):
        writer.add(rows)
    assert writer.add([good_row()]) == 1  # the writer is still usable
    assert writer.finish().rows == 1


def test_bad_names_and_dimensions(tmp_path: Path) -> None:
    for name in ("", "../escape", "a b", "x" * 129, "-x"):
        with pytest.raises(InvalidInput, match="index name"):
            ChunkIndex.create(str(tmp_path), name, 4)
        with pytest.raises(InvalidInput, match="index name"):
            ChunkIndex.open(str(tmp_path), name)
    for dim in (0, -3, True, 1.5, 10_000):
        with pytest.raises(InvalidInput, match="dimension"):
            ChunkIndex.create(str(tmp_path), "kb", dim)  # type: ignore[arg-type]
