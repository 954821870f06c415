"""Retrieval evaluation of knowledge-base versions against labelled queries.

A dataset version holds one query per row and the chunks (or documents) relevant to it: `relevant_field` is a
list of chunk ids (`doc#3`, as hits carry them) or document ids (`doc`: any of its chunks is relevant), or one
such string. Each version searched answers every query with its `k` best hits, scored by

- `hit_rate`: whether any relevant item is among the hits;
- `mrr`: 1 / the rank of the first relevant hit (0 when none is);
- `ndcg`: binary-gain nDCG@k, where a hit gains once per relevant item it matches first (a document's second
  chunk gains nothing), over the ideal of min(relevant items, k) gains at the top;
- `recall`: the share of relevant items matched by a hit.

Each metric comes with its 95% bootstrap interval over the queries; two versions are compared query by query
(the mean difference of each metric, B - A, with its interval and a permutation p value), so a rebuild with
another chunker or embedding model is judged on the same questions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
from pydantic import BaseModel

from podium.core.errors import InvalidInput, validated
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import service as data
from podium.evals.stats import Interval, PairedTest, bootstrap_ci, paired_test
from podium.kb import service
from podium.kb.index import MAX_QUERY_CHARS, Filters, Hit

METRICS = ("hit_rate", "mrr", "ndcg", "recall")
MAX_QUERIES = 10_000  # rows of a query dataset evaluated (a larger one is refused, not cut)
MAX_RELEVANT = 1_000  # relevant ids per query
MAX_VERSIONS = 2
ROWS_SHOWN = 200  # per-query rows returned by default (the metrics use every query)


class QueryResult(BaseModel):
    """One query against one version: the relevant ids, the chunk ids retrieved (best first), the rank of the
    first relevant hit (from 1; null if none) and the query's own scores."""

    query: str
    relevant: list[str]
    retrieved: list[str]
    first_rank: int | None
    scores: dict[str, float]


class VersionEval(BaseModel):
    """The scores of one version: each metric's mean with its interval, and the first query rows."""

    version: int
    version_id: str
    embedding_model: str
    chunks: int
    metrics: dict[str, float]
    intervals: dict[str, Interval]
    rows: list[QueryResult]


class RetrievalEval(BaseModel):
    """A retrieval evaluation of one or two versions on the same queries; `comparison` (second minus first)
    when two were evaluated."""

    kb: str
    dataset: str
    k: int
    mode: str
    queries: int
    versions: list[VersionEval]
    comparison: dict[str, PairedTest] | None = None


def _ids(value: Any, row: int, field: str) -> list[str]:
    if isinstance(value, str) and value.startswith("["):  # a column of mixed values is stored as JSON text
        with contextlib.suppress(orjson.JSONDecodeError):
            value = orjson.loads(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        if len(value) > MAX_RELEVANT:
            raise InvalidInput(f"row {row}: {field} lists over {MAX_RELEVANT} ids", details={"field": "relevant_field"})
        return [str(v) for v in value]
    raise InvalidInput(
        f"row {row}: {field} must be a chunk or document id, or a non-empty list of them, not {value!r}"[:300],
        details={"field": "relevant_field", "row": row},
    )


def read_queries(
    platform: Platform, actor: Actor, dataset_ref: str, query_field: str, relevant_field: str
) -> tuple[str, list[str], list[list[str]]]:
    """The dataset version's reference, its queries and each query's relevant ids, checked whole."""
    source = data.get_version(platform, actor, dataset_ref)
    columns = {c.name: c.type for c in source.columns}
    for field, what in ((query_field, "query_field"), (relevant_field, "relevant_field")):
        if field not in columns:
            raise InvalidInput(
                f"{what} {field!r} is not a column of {source.ref}; its columns: {', '.join(columns) or 'none'}",
                details={"field": what, "columns": list(columns)},
            )
    if source.row_count > MAX_QUERIES:
        raise InvalidInput(
            f"{source.ref} has {source.row_count:,} rows; a retrieval evaluation takes at most {MAX_QUERIES:,} queries",
            details={"field": "dataset"},
        )
    if source.row_count == 0:
        raise InvalidInput(f"{source.ref} has no rows to evaluate", details={"field": "dataset"})
    with data.open_rows(platform, actor, f"{source.dataset}@{source.id}") as (_, pf):
        table: pa.Table = pf.read(columns=[query_field, relevant_field])
    queries, relevant = [], []
    for i, (q, r) in enumerate(zip(table[query_field].to_pylist(), table[relevant_field].to_pylist(), strict=True)):
        if not isinstance(q, str) or not q.strip() or len(q) > MAX_QUERY_CHARS or "\x00" in q:
            raise InvalidInput(
                f"row {i}: {query_field} must be 1 to {MAX_QUERY_CHARS} characters of text",
                details={"field": "query_field", "row": i},
            )
        queries.append(q)
        relevant.append(_ids(r, i, relevant_field))
    return source.ref, queries, relevant


def score(relevant: Sequence[str], hits: Sequence[Hit], k: int) -> tuple[int | None, dict[str, float]]:
    """The rank of the first relevant hit and the query's metrics (see the module's docstring)."""
    wanted = set(relevant)
    matched: set[str] = set()
    first: int | None = None
    dcg = 0.0
    for rank, hit in enumerate(hits[:k], start=1):
        gains = {x for x in (hit.id, hit.doc_id) if x in wanted} - matched
        if gains:
            if first is None:
                first = rank
            matched |= gains
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return first, {
        "hit_rate": 1.0 if first is not None else 0.0,
        "mrr": 1.0 / first if first is not None else 0.0,
        "ndcg": dcg / ideal if ideal else 0.0,
        "recall": len(matched) / len(wanted) if wanted else 0.0,
    }


def evaluate(
    platform: Platform,
    actor: Actor,
    name: str,
    dataset_ref: str,
    *,
    query_field: str = "query",
    relevant_field: str = "relevant",
    versions: Sequence[str | int] | None = None,
    k: int = 10,
    mode: str = "hybrid",
    filters: Filters | Mapping[str, Any] | None = None,
    rows: int = ROWS_SHOWN,
) -> RetrievalEval:
    """Search one or two versions of knowledge base `name` (default: its newest ready version) with every query
    of the dataset version and score the hits against the relevant ids; see the module's docstring."""
    actor.require("viewer", "evaluate knowledge bases")
    searched = service.check_mode(mode, k)
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= MAX_QUERIES:
        raise InvalidInput(f"rows must be an integer from 0 to {MAX_QUERIES}", details={"field": "rows"})
    chosen = list(versions) if versions else [None]
    if len(chosen) > MAX_VERSIONS:
        raise InvalidInput(f"evaluate one or {MAX_VERSIONS} versions at a time", details={"field": "versions"})
    checked = None
    if filters is not None:
        checked = filters if isinstance(filters, Filters) else validated(Filters, filters, "filters", prefix="filters.")
    targets = [service.search_target(platform, actor, name if v is None else f"{name}@{v}") for v in chosen]
    ref, queries, relevant = read_queries(platform, actor, dataset_ref, query_field, relevant_field)
    results: list[VersionEval] = []
    per_query: list[dict[str, list[float]]] = []
    for target in targets:
        vectors: list[list[float]] | list[None] = [None] * len(queries)
        if mode != "text":
            vectors = service.embed_queries(platform, actor, target.model, queries)
        index = service.open_index(platform, target.table)
        scores: dict[str, list[float]] = {m: [] for m in METRICS}
        shown: list[QueryResult] = []
        for q, rel, vector in zip(queries, relevant, vectors, strict=True):
            hits = index.search(
                query_vector=vector, query_text=q if mode != "vector" else None, mode=searched, k=k, filters=checked
            )
            first, mine = score(rel, hits, k)
            for m in METRICS:
                scores[m].append(mine[m])
            if len(shown) < rows:
                shown.append(
                    QueryResult(query=q, relevant=rel, retrieved=[h.id for h in hits], first_rank=first, scores=mine)
                )
        intervals = {m: bootstrap_ci(scores[m]) for m in METRICS}
        results.append(
            VersionEval(
                version=target.version,
                version_id=target.version_id,
                embedding_model=target.model,
                chunks=index.rows,
                metrics={m: sum(scores[m]) / len(scores[m]) for m in METRICS},
                intervals=intervals,
                rows=shown,
            )
        )
        per_query.append(scores)
    comparison = None
    if len(per_query) == 2:
        comparison = {m: paired_test(per_query[0][m], per_query[1][m], draws=2000) for m in METRICS}
    return RetrievalEval(
        kb=targets[0].kb,
        dataset=ref,
        k=k,
        mode=mode,
        queries=len(queries),
        versions=results,
        comparison=comparison,
    )
