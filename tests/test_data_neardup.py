"""The `near_dedup` step on a known corpus: planted near-duplicates and exact copies among unrelated texts.

The corpus is generated from a seeded vocabulary, so which rows are copies of which is known: recall and
precision are measured on the planted pairs, and the kept row of each cluster must be the first one.
"""

from __future__ import annotations

import itertools
import random
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import podium.data.steps.neardup as neardup
from podium.core.errors import InvalidInput
from podium.data.steps.base import STEPS, StepContext

WORDS = 150
SOURCES_ORIGINAL, SOURCES_NEAR, SOURCES_EXACT = "original", "near", "exact"


def make_corpus(seed: int = 7, docs: int = 300) -> tuple[list[str], list[int], list[str]]:
    """`docs` texts of about 150 words; 50 are 5-10% edits of an earlier original, 30 exact copies of one.

    Returns the texts, the source row of each (-1 for originals) and each row's kind."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = sorted({"".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(3000)})
    weights = [1.0 / (rank + 3) for rank in range(len(vocab))]
    kinds = [SOURCES_ORIGINAL] * 20 + rng.sample(
        [SOURCES_ORIGINAL] * (docs - 100) + [SOURCES_NEAR] * 50 + [SOURCES_EXACT] * 30, docs - 20
    )
    tokens: list[list[str]] = []
    texts: list[str] = []
    sources: list[int] = []
    originals: list[int] = []
    for i, kind in enumerate(kinds):
        if kind == SOURCES_ORIGINAL:
            words = rng.choices(vocab, weights=weights, k=WORDS)
            words[0] = words[0].capitalize()
            for at in range(12, WORDS, rng.randint(9, 16)):
                words[at] += "."
            tokens.append(words)
            texts.append(" ".join(words) + ".")
            sources.append(-1)
            originals.append(i)
            continue
        source = rng.choice(originals)
        words = list(tokens[source])
        if kind == SOURCES_NEAR:
            # 5-10% of the words edited, in one span: replaced, deleted, or new words inserted.
            span = rng.randint(round(0.05 * WORDS), round(0.10 * WORDS))
            at = rng.randrange(0, WORDS - span)
            edit = rng.choice(["replace", "delete", "insert"])
            fresh = rng.choices(vocab, k=span)
            if edit == "replace":
                words[at : at + span] = fresh
            elif edit == "delete":
                del words[at : at + span]
            else:
                words[at:at] = fresh
        tokens.append(words)
        texts.append(" ".join(words) + ".")
        sources.append(source)
    return texts, sources, kinds


def make_step(**cfg: Any) -> neardup.NearDedup:
    cls = STEPS["near_dedup"]
    step = cls(cls.Config(**cfg), StepContext(), prefix="steps[0]")
    assert isinstance(step, neardup.NearDedup)
    return step


def run(table: pa.Table, batch_size: int, **cfg: Any) -> tuple[list[int], dict[str, Any], pa.Schema]:
    """Drive the step as a pipeline does; the ids of the rows kept, the report and the output schema."""
    step = make_step(**cfg)
    schema = step.output_schema(table.schema)
    outputs = [step.apply(table.slice(at, batch_size), at) for at in range(0, table.num_rows, batch_size)]
    tail = step.finish()
    if tail is not None:
        outputs.append(tail)
    out = pa.concat_tables(outputs)
    assert out.schema == table.schema
    return out.column("id").to_pylist(), step.report(), schema


def shingles(text: str, size: int = 5) -> set[str]:
    """The reference: normalized words joined in windows, as a Python set."""
    words = re.sub(r"[^a-z0-9\s]", "", text.lower()).split()
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def corpus() -> tuple[pa.Table, list[int], list[str]]:
    texts, sources, kinds = make_corpus()
    table = pa.table({"id": list(range(len(texts))), "text": texts, "n": [len(t) for t in texts]})
    return table, sources, kinds


def test_planted_pairs_found_and_first_row_kept(corpus: tuple[pa.Table, list[int], list[str]]) -> None:
    table, sources, kinds = corpus
    kept, report, _ = run(table, 1000)
    removed = set(range(table.num_rows)) - set(kept)
    planted = {i for i, s in enumerate(sources) if s >= 0}
    found = removed & planted
    recall = len(found) / len(planted)
    precision = len(found) / len(removed)
    assert recall >= 0.9, (recall, sorted(planted - removed))
    assert precision >= 0.95, sorted(removed - planted)
    # Exact copies always go, unrelated texts never do.
    assert {i for i, k in enumerate(kinds) if k == SOURCES_EXACT} <= removed
    assert not removed & {i for i, k in enumerate(kinds) if k == SOURCES_ORIGINAL}
    # Each removed row is listed under the row it copies, which came first and was kept.
    kept_of = {r: c["kept"] for c in report["clusters"] for r in c["removed"]}
    assert set(kept_of) == removed
    for row, first in kept_of.items():
        assert first == sources[row] < row
        assert first in kept


def test_report_lists_clusters(corpus: tuple[pa.Table, list[int], list[str]]) -> None:
    table, _, kinds = corpus
    texts = table.column("text").to_pylist()
    kept, report, _ = run(table, 1000)
    assert report["rows_in"] == table.num_rows
    assert report["rows_out"] == len(kept)
    assert report["duplicates"] == table.num_rows - len(kept)
    assert report["params"]["bands"] == 16 and report["params"]["rows"] == 8
    clusters = report["clusters"]
    assert report["clusters_count"] == len(clusters) == report["clusters_listed"]
    assert [c["kept"] for c in clusters] == sorted(c["kept"] for c in clusters)
    assert sum(len(c["removed"]) for c in clusters) == report["duplicates"]
    for cluster in clusters:
        assert cluster["removed"] == sorted(cluster["removed"])
        assert cluster["removed_count"] == len(cluster["removed"]) == len(cluster["similarity"])
        for row, similarity in zip(cluster["removed"], cluster["similarity"], strict=True):
            assert 0.7 <= similarity <= 1.0
            if kinds[row] == SOURCES_EXACT:
                assert similarity == 1.0
            # The estimate (128 permutations) is close to the true Jaccard of the 5-word shingles.
            assert abs(similarity - jaccard(texts[row], texts[cluster["kept"]])) < 0.15


def test_batch_size_does_not_change_the_result(corpus: tuple[pa.Table, list[int], list[str]]) -> None:
    table, _, _ = corpus
    kept_small, report_small, _ = run(table, 7)
    kept_large, report_large, _ = run(table, 1000)
    assert kept_small == kept_large
    assert report_small["clusters"] == report_large["clusters"]
    assert report_small["duplicates"] == report_large["duplicates"]


def test_slices_and_groups_inside_a_batch_do_not_change_the_result(
    corpus: tuple[pa.Table, list[int], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    table, _, _ = corpus
    kept, report, _ = run(table, 300)
    monkeypatch.setattr(neardup, "_SLICE_BYTES", 5000)  # a few rows per slice
    monkeypatch.setattr(neardup, "_GROUP_ROWS", 37)  # decided 37 rows at a time
    slices = neardup._slices(table.column("text"))
    assert len(slices) > 50 and slices[0][0] == 0 and slices[-1][1] == table.num_rows
    assert all(a < b == c for (a, b), (c, _) in itertools.pairwise(slices))
    kept_sliced, report_sliced, _ = run(table, 300)
    assert kept_sliced == kept
    assert report_sliced["clusters"] == report["clusters"]


def test_rows_within_one_batch_and_across_batches_agree() -> None:
    base = " ".join(f"word{i}" for i in range(60))
    texts = [base, "something else entirely here now", base + " extra", base, base.replace("word30", "other")]
    table = pa.table({"id": list(range(5)), "text": texts})
    for size in (1, 2, 5):
        kept, report, _ = run(table, size)
        assert kept == [0, 1]
        assert report["clusters"][0]["kept"] == 0
        assert report["clusters"][0]["removed"] == [2, 3, 4]


def test_short_empty_and_null_texts() -> None:
    texts = ["Hello there", "hello THERE!", "hello world", "", None, "", "a b c d e f g", "A b c d e, f g."]
    table = pa.table({"id": list(range(len(texts))), "text": pa.array(texts, pa.string())})
    kept, report, _ = run(table, 3)
    # Shorter than a shingle: the whole (normalized) text is one shingle; empty texts are never duplicates.
    assert kept == [0, 2, 3, 4, 5, 6]
    assert {c["kept"]: c["removed"] for c in report["clusters"]} == {0: [1], 6: [7]}


def test_normalization_can_be_turned_off() -> None:
    words = [f"w{i}" for i in range(40)]
    plain = " ".join(words)
    noisy = "  ".join(w.upper() + ("," if i % 5 == 0 else "") for i, w in enumerate(words))
    table = pa.table({"id": [0, 1], "text": [plain, noisy]})
    assert run(table, 10)[0] == [0]
    assert run(table, 10, normalize=False)[0] == [0, 1]
    spaced = pa.table({"id": [0, 1], "text": [plain, "\t" + plain.replace(" ", " \n ") + "  "]})
    assert run(spaced, 10, normalize=False)[0] == [0]


def test_unicode_text_and_large_strings() -> None:
    words = ["Ça", "va", "très", "bien", "merci", "«beaucoup»", "ÉTÉ", "naïve", "café", "garçon", "straße", "日本語"]
    a = " ".join(words * 3)
    b = "\u00a0".join(w.lower().strip("«»") for w in words * 3)  # other case, no quotes, no-break spaces
    c = " ".join(reversed(words * 3))
    for kind in (pa.string(), pa.large_string()):
        table = pa.table({"id": [0, 1, 2, 3], "text": pa.array([a, "plain ascii text only", b, c], kind)})
        kept, report, _ = run(table, 2)
        assert kept == [0, 1, 3]
        assert report["clusters"] == [{"kept": 0, "removed": [2], "similarity": [1.0], "removed_count": 1}]


def test_words_and_shingles_match_a_python_reference(corpus: tuple[pa.Table, list[int], list[str]]) -> None:
    table, _, _ = corpus
    long_words = "internationalization internationalisation abcdefgh12345678 12345678abcdefgh " + " ".join(
        "a" * k for k in range(1, 40)
    )
    texts = [*table.column("text").to_pylist()[:50], "", "one", "  two words ", "a b c d e", "x,y z", long_words]
    text, starts = neardup.normalized_bytes(pa.array(texts), True)
    words, counts = neardup.word_hashes(text, starts)
    expected = [re.sub(r"[^a-z0-9\s]", "", t.lower()).split() for t in texts]
    assert counts.tolist() == [len(w) for w in expected]
    assert len(words) == sum(len(w) for w in expected)
    # Equal words hash equally, different words differently.
    flat_words = [w for ws in expected for w in ws]
    by_hash: dict[int, set[str]] = {}
    for h, w in zip(words.tolist(), flat_words, strict=True):
        by_hash.setdefault(h, set()).add(w)
    assert all(len(v) == 1 for v in by_hash.values())
    assert len(by_hash) == len(set(flat_words))
    flat, offsets = neardup.shingle_hashes(words, counts, 5)
    for row, t in enumerate(texts):
        mine = flat[int(offsets[row]) : int(offsets[row + 1])]
        assert len(set(mine.tolist())) == len(shingles(t)), t


def test_signatures_agree_with_rensa_objects() -> None:
    from rensa import RMinHash

    flat = np.array([5, 17, 99, 5, 1234567890123], dtype=np.uint64)
    offsets = np.array([0, 3, 3, 5], dtype=np.uint64)
    sigs = neardup.signatures(flat, offsets, 64, 1)
    assert sigs.shape == (3, 64) and sigs.dtype == np.uint32
    assert (sigs[1] == 0xFFFFFFFF).all()
    again = RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, 64, 1).to_rows()
    assert sigs.tolist() == again


def test_verify_off_and_other_parameters(corpus: tuple[pa.Table, list[int], list[str]]) -> None:
    table, sources, _ = corpus
    kept, report, _ = run(table, 64, verify=False, num_perm=64, bands=16, seed=3, shingle=3)
    assert report["params"] | {"bands": 16, "rows": 4, "num_perm": 64, "verify": False} == report["params"]
    removed = set(range(table.num_rows)) - set(kept)
    assert {i for i, s in enumerate(sources) if s >= 0} <= removed


def test_clusters_reported_are_capped(corpus: tuple[pa.Table, list[int], list[str]]) -> None:
    table, _, _ = corpus
    _, full, _ = run(table, 100)
    _, capped, _ = run(table, 100, max_clusters_reported=3)
    assert capped["clusters_count"] == full["clusters_count"] > 3
    assert capped["duplicates"] == full["duplicates"]
    assert len(capped["clusters"]) == capped["clusters_listed"] == 3
    _, none, _ = run(table, 100, max_clusters_reported=0)
    assert none["clusters"] == [] and none["clusters_count"] == full["clusters_count"]


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"bands": 10, "rows": 10}, "steps[0].bands"),
        ({"bands": 3}, "steps[0].bands"),
        ({"rows": 5}, "steps[0].rows"),
        ({"threshold": 0.0}, "steps[0].threshold"),
        ({"threshold": 1.0}, "steps[0].threshold"),
        ({"threshold": 1.5}, "steps[0].threshold"),
    ],
)
def test_bad_settings_name_the_field(cfg: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_step(**cfg)
    assert caught.value.details["field"] == field
    assert field in caught.value.message


def test_one_of_bands_or_rows_gives_the_other() -> None:
    assert make_step(bands=32).rows == 4
    assert make_step(rows=16).bands == 8
    assert make_step(bands=8, rows=16).bands == 8


def test_column_must_exist_and_hold_text() -> None:
    step = make_step(field="body")
    with pytest.raises(InvalidInput) as caught:
        step.output_schema(pa.schema([("text", pa.string())]))
    assert caught.value.details["field"] == "steps[0].field"
    with pytest.raises(InvalidInput):
        make_step().output_schema(pa.schema([("text", pa.int64())]))


def test_bands_chosen_from_threshold() -> None:
    assert neardup.optimal_bands(0.7, 128) == (16, 8)
    for threshold in (0.3, 0.5, 0.8, 0.95):
        for num_perm in (64, 100, 128, 256):
            bands, rows = neardup.optimal_bands(threshold, num_perm)
            assert bands * rows == num_perm
    assert neardup.optimal_bands(0.9, 128)[1] > neardup.optimal_bands(0.5, 128)[1]
