"""Near-duplicate removal (MinHash LSH), side by side in one run: datasketch, rensa, and Podium's `near_dedup`.

    .venv/bin/python bench/dedup.py --docs 100000      # or --quick for 10,000

It generates N documents of about 1 KB (seeded; words drawn from a Zipf law over 20,000 synthetic words,
with sentence case and punctuation), of which about 10% are near-duplicates of an earlier document: 5-10%
of its words edited in one or two spans (replaced, deleted or inserted). The planted pairs are the ground
truth. Every contender runs in a fresh subprocess over the same Parquet file (row groups of 10,000 rows),
read in batches of 10,000 rows, with 5-word shingles of the same normalized words (lowercase, punctuation
removed), 128 permutations, threshold 0.7. Peak RSS is the subprocess's own VmHWM, read at its end ("over
idle": minus its RSS at start, before its imports):

  datasketch   MinHash + MinHashLSH from Python, per document: shingle, build the MinHash, query, insert
               it when the query finds nothing.
  rensa        RMinHash + RMinHashLSH (16 bands) from Python, the same loop (the named competitor).
  podium step  the `near_dedup` step over the Parquet file: read batches, run the step, write the kept
               rows to a new Parquet file (timed end to end).
  podium prepare  the datasets service: import the Parquet file as a dataset version, then time only
               `prepare(version, {"steps": [{"near_dedup": {}}]})`, which writes the next version (its
               peak RSS covers the import too).

docs/s is input documents over wall seconds. Recall is the share of planted near-duplicates removed;
precision the share of removed documents that are planted near-duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import string
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

SHINGLE = 5
NUM_PERM = 128
THRESHOLD = 0.7
RENSA_BANDS = 16
SEED = 1
READ_BATCH = 10_000
PUNCT = str.maketrans("", "", string.punctuation)

CONTENDERS = ("datasketch", "rensa", "podium step", "podium prepare")


# --- the corpus ------------------------------------------------------------------------------------------


def make_vocabulary(rng: np.random.Generator, size: int = 20_000) -> list[str]:
    letters = np.array(list(string.ascii_lowercase))
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < size:
        length = int(np.clip(rng.poisson(5.0), 1, 14))
        word = "".join(rng.choice(letters, length))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def make_corpus(n: int, seed: int = 0, dup_share: float = 0.10, target_bytes: int = 1000):
    """N texts of about `target_bytes`; `source[i]` is the earlier document row i edits, or -1."""
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(rng)
    ranks = np.arange(1, len(vocab) + 1)
    cdf = np.cumsum(1.0 / (ranks + 2.7))
    cdf /= cdf[-1]
    forms = np.empty((4, len(vocab)), dtype=object)  # plain, Capitalized, "end.", "comma,"
    forms[0] = vocab
    forms[1] = [w.capitalize() for w in vocab]
    forms[2] = [w + "." for w in vocab]
    forms[3] = [w + "," for w in vocab]
    lengths = np.array([len(w) + 1 for w in vocab])

    def draw(k: int) -> np.ndarray:
        return np.searchsorted(cdf, rng.random(k))

    texts: list[str] = [""] * n
    source = np.full(n, -1, dtype=np.int64)
    tokens_of: dict[int, list[str]] = {}
    originals: list[int] = []
    is_dup = rng.random(n) < dup_share
    is_dup[0] = False
    for i in range(n):
        if is_dup[i]:
            src = originals[int(rng.integers(len(originals)))]
            tokens = list(tokens_of[src])
            total = max(1, round(rng.uniform(0.05, 0.10) * len(tokens)))
            spans = [total] if total < 4 or rng.random() < 0.5 else [total // 2, total - total // 2]
            for span in spans:
                at = int(rng.integers(0, max(1, len(tokens) - span)))
                fresh = forms[0][draw(span)].tolist()
                edit = rng.random()
                if edit < 0.6:
                    tokens[at : at + span] = fresh
                elif edit < 0.8:
                    del tokens[at : at + span]
                else:
                    tokens[at:at] = fresh
            texts[i] = " ".join(tokens)
            source[i] = src
        else:
            ids = draw(300)
            k = int(np.searchsorted(np.cumsum(lengths[ids]), target_bytes)) + 1
            ids = ids[:k]
            r = rng.random(k)
            form = np.where(r < 0.08, 2, np.where(r < 0.13, 3, 0))
            form[0] = 1
            after = np.flatnonzero(form[:-1] == 2) + 1
            form[after] = np.where(form[after] == 0, 1, form[after])
            form[-1] = 2
            tokens = forms[form, ids].tolist()
            tokens_of[i] = tokens
            originals.append(i)
            texts[i] = " ".join(tokens)
    return texts, source


def words_of(text: str) -> list[str]:
    return text.lower().translate(PUNCT).split()


def shingle_list(text: str) -> list[str]:
    words = words_of(text)
    if len(words) < SHINGLE:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)]


def true_jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_list(a)), set(shingle_list(b))
    return len(sa & sb) / max(1, len(sa | sb))


# --- the contenders (each runs in its own process) ------------------------------------------------------


def texts_in_batches(path: Path):
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH, columns=["id", "text"]):
        yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


def run_datasketch(data: Path, work: Path) -> dict:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    removed: list[int] = []
    start = time.perf_counter()
    for ids, texts in texts_in_batches(data):
        for key, text in zip(ids, texts, strict=True):
            m = MinHash(num_perm=NUM_PERM, seed=SEED)
            m.update_batch([s.encode() for s in shingle_list(text or "")])
            if lsh.query(m):
                removed.append(key)
            else:
                lsh.insert(key, m)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "removed": removed, "note": f"bands x rows {lsh.b} x {lsh.r}"}


def run_rensa(data: Path, work: Path) -> dict:
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(THRESHOLD, NUM_PERM, RENSA_BANDS)
    removed: list[int] = []
    start = time.perf_counter()
    for ids, texts in texts_in_batches(data):
        for key, text in zip(ids, texts, strict=True):
            m = RMinHash(NUM_PERM, SEED)
            m.update(shingle_list(text or ""))
            if lsh.query(m):
                removed.append(key)
            else:
                lsh.insert(key, m)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "removed": removed, "note": f"bands x rows {RENSA_BANDS} x {NUM_PERM // RENSA_BANDS}"}


def run_podium_step(data: Path, work: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from podium.data.steps.base import STEPS, StepContext
    from podium.data.steps.neardup import NearDedup

    cls = STEPS.get("near_dedup", NearDedup)
    cfg = {"shingle": SHINGLE, "num_perm": NUM_PERM, "threshold": THRESHOLD, "seed": SEED}
    out_path = work / "podium-step-out.parquet"
    # Warm-up on 100 rows, like the imports every contender does before its clock starts: the first use
    # of a pyarrow compute kernel in a process maps its code in (about 0.25 s for `filter` alone here).
    start = time.perf_counter()
    first = pq.ParquetFile(data).read_row_group(0).slice(0, 100)
    warm = cls(cls.Config(**cfg), StepContext())
    warm.output_schema(first.schema)
    warm.apply(first, 0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    step = cls(cls.Config(**cfg), StepContext(), prefix="steps[0]")
    source = pq.ParquetFile(data)
    schema = step.output_schema(source.schema_arrow)
    offset = 0
    with pq.ParquetWriter(out_path, schema) as writer:
        for batch in source.iter_batches(batch_size=READ_BATCH):
            table = pa.Table.from_batches([batch])
            writer.write_table(step.apply(table, offset))
            offset += table.num_rows
        tail = step.finish()
        if tail is not None:
            writer.write_table(tail)
    seconds = time.perf_counter() - start
    kept = set(pq.read_table(out_path, columns=["id"]).column("id").to_pylist())
    report = step.report()
    return {
        "seconds": seconds,
        "removed": sorted(set(range(offset)) - kept),
        "note": f"bands x rows {report['params']['bands']} x {report['params']['rows']}; "
        f"{report['clusters_count']:,} clusters; index {report['index_bytes'] / 1e6:.0f} MB; "
        f"warm-up {warmup:.2f} s not counted",
    }


def run_podium_prepare(data: Path, work: Path) -> dict:
    try:
        from podium.data import service
    except ImportError as exc:
        return {"unavailable": f"podium.data.service does not import ({exc})"}
    prepare = getattr(service, "prepare", None)
    if prepare is None:
        try:
            from podium.data import preparation

            prepare = getattr(preparation, "prepare", None)
        except ImportError:
            prepare = None
    if not hasattr(service, "import_file") or prepare is None:
        return {"unavailable": "podium.data.service lacks import_file or prepare"}
    from podium.core.config import load_settings
    from podium.core.identity import Actor
    from podium.core.platform import Platform
    from podium.server.serve import prepare as prepare_database

    home = work / "podium-home"
    settings = load_settings(home=str(home), database_url=f"sqlite:///{home / 'podium.db'}")
    prepare_database(settings, register_builtins=False)  # migrations and bootstrap, as the tests do
    platform_ = Platform.from_settings(settings)
    actor = Actor.system()
    imported = service.import_file(platform_, actor, "bench-dedup", data, "parquet")
    cfg = {"shingle": SHINGLE, "num_perm": NUM_PERM, "threshold": THRESHOLD, "seed": SEED}
    ref = f"{imported.version.dataset}@{imported.version.version}"
    start = time.perf_counter()
    info = prepare(platform_, actor, ref, {"steps": [{"near_dedup": cfg}]})
    seconds = time.perf_counter() - start
    kept: set[int] = set()
    with service.open_rows(platform_, actor, f"{info.dataset}@{info.version}") as (_, pf):
        for batch in pf.iter_batches(columns=["id"]):
            kept.update(batch.column(0).to_pylist())
    rows = imported.version.row_count
    return {
        "seconds": seconds,
        "removed": sorted(set(range(rows)) - kept),
        "note": f"{imported.version.ref} -> {info.ref}",
    }


RUNNERS = {
    "datasketch": run_datasketch,
    "rensa": run_rensa,
    "podium step": run_podium_step,
    "podium prepare": run_podium_prepare,
}


def memory(field: str) -> int:
    """A figure of this process from /proc/self/status, in bytes: VmRSS now, VmHWM its peak. (ru_maxrss
    will not do: Linux carries a child's peak over from before its exec, so a child forked from a big
    parent reports at least the parent's size.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(name: str, data: Path, work: Path, out: Path) -> None:
    idle = memory("VmRSS")
    try:
        result = RUNNERS[name](data, work)
    except Exception as exc:  # a contender that fails is reported, not fatal to the run
        if name != "podium prepare":
            raise
        result = {"unavailable": f"{type(exc).__name__}: {exc}"}
    result["idle_rss"] = idle
    result["peak_rss"] = memory("VmHWM")
    out.write_text(json.dumps(result))


def run_contender(name: str, data: Path, work: Path) -> dict:
    out = work / f"result-{name.replace(' ', '-')}.json"
    command = [sys.executable, __file__, "--worker", name, "--data", str(data), "--work", str(work), "--out", str(out)]
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        return {"unavailable": f"worker exited with {code}"}
    return json.loads(out.read_text())


# --- the run -------------------------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} cores"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("datasketch", "rensa", "numpy", "pyarrow"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} missing")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 documents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", choices=CONTENDERS, help="run only these contenders")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.work, args.out)
        return

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 10_000 if args.quick else args.docs
    print(f"bench/dedup.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"Machine: {machine()}, {platform.machine()}; {versions()}")
    work = Path(tempfile.mkdtemp(prefix="podium-bench-dedup-"))
    try:
        start = time.perf_counter()
        texts, source = make_corpus(n, args.seed)
        data = work / "corpus.parquet"
        pq.write_table(pa.table({"id": np.arange(n, dtype=np.int64), "text": texts}), data, row_group_size=READ_BATCH)
        planted = {int(i) for i in np.flatnonzero(source >= 0)}
        similarity = np.array([true_jaccard(texts[i], texts[source[i]]) for i in sorted(planted)])
        size = sum(len(t) for t in texts) / n
        words = sum(len(t.split()) for t in texts[:2000]) / min(n, 2000)
        print(
            f"Corpus: {n:,} documents, {size:,.0f} bytes and {words:.0f} words on average, {len(planted):,} "
            f"planted near-duplicates (made in {time.perf_counter() - start:.1f} s)"
        )
        print(
            f"True Jaccard of the planted pairs ({SHINGLE}-word shingles): min {similarity.min():.2f}, "
            f"p10 {np.percentile(similarity, 10):.2f}, median {np.median(similarity):.2f}; "
            f"{(similarity >= THRESHOLD).mean():.1%} at or above the threshold {THRESHOLD}"
        )
        del texts
        results: dict[str, dict] = {}
        for name in args.only or CONTENDERS:
            print(f"... {name}", flush=True)
            results[name] = run_contender(name, data, work)
        print()
        print_table(results, planted, n)
    finally:
        if args.keep:
            print(f"working folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[str, dict], planted: set[int], n: int) -> None:
    rate = {k: n / r["seconds"] for k, r in results.items() if "seconds" in r}
    header = "| contender | docs/s | × rensa | × datasketch | recall | precision | removed | peak RSS (over idle) | s | notes |"
    print(header)
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if "seconds" not in r:
            print(f"| {name} | not available | | | | | | | | {r.get('unavailable', '')} |")
            continue
        removed = set(r["removed"])
        hit = len(removed & planted)
        recall = hit / max(1, len(planted))
        precision = hit / max(1, len(removed))
        vs_rensa = f"{rate[name] / rate['rensa']:.2f}" if "rensa" in rate else "-"
        vs_ds = f"{rate[name] / rate['datasketch']:.2f}" if "datasketch" in rate else "-"
        rss = f"{r['peak_rss'] / 2**20:,.0f} MB (+{(r['peak_rss'] - r['idle_rss']) / 2**20:,.0f})"
        print(
            f"| {name} | {rate[name]:,.0f} | {vs_rensa} | {vs_ds} | {recall:.3f} | {precision:.3f} | "
            f"{len(removed):,} | {rss} | {r['seconds']:.2f} | {r.get('note', '')} |"
        )


if __name__ == "__main__":
    main()
