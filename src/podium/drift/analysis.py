"""One field's drift, from the two samples of texts: the domain classifier on MiniLM embeddings, the descriptor
tests by PSI, the changed words and the explaining examples. CPU-bound: callers run it off the event loop.

Verdicts:
- embedding (domain classifier): drift when the cross-validated ROC AUC exceeds the threshold (0.55 by default,
  Evidently's) and, for small samples, also the 95th percentile of a random classifier's AUC on samples of the
  same sizes (as Evidently does under 1,000 rows), so chance alone rarely reads as drift;
- descriptors: PSI above the threshold (0.2) is drift, above half of it (0.1) moderate. Numbers are binned on
  the reference's quantiles, one bin per 25 texts of the smaller side, 2 to 10 bins (PSI of equal
  distributions grows with bins over texts, about (bins - 1) * (1/n_ref + 1/n_cur)); languages are categories,
  those under 2% of all texts pooled as `other`. The Hellinger distance of the same distributions is reported
  beside each PSI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from podium.drift import stats
from podium.drift.descriptors import Descriptors, describe
from podium.drift.report import Example, FieldReport, TestResult, Verdict, WordShift
from podium.drift.stats import Floats

TEXTS_PER_BIN = 25
MIN_CATEGORY_SHARE = 0.02
EXAMPLES = 5
EXAMPLE_CHARS = 400
WORDS = 10
STOPLIST_SHARE = 0.05  # a language of this share of all texts has its common words left out of the explanation
Progress = Callable[[str], None]
Embed = Callable[[list[str]], "np.typing.NDArray[np.float32]"]


def psi_verdict(score: float, threshold: float) -> Verdict:
    """drift above the threshold, moderate above half of it, else none."""
    return "drift" if score > threshold else "moderate" if score > threshold / 2 else "none"


def _numeric_test(name: str, ref: Floats, cur: Floats, threshold: float, unit: str) -> TestResult:
    bins = int(np.clip(min(len(ref), len(cur)) // TEXTS_PER_BIN, 2, 10))
    edges = stats.quantile_edges(ref, bins)
    a, b = stats.binned_shares(ref, edges), stats.binned_shares(cur, edges)
    score = stats.psi(a, b)
    labels = _bin_labels(edges)
    return TestResult(
        name=name,
        method="PSI on reference quantile bins",
        score=round(score, 4),
        threshold=threshold,
        verdict=psi_verdict(score, threshold),
        detail=f"mean {float(ref.mean()):.3g} → {float(cur.mean()):.3g} {unit}".rstrip(),
        hellinger=round(stats.hellinger(a, b), 4),
        bins=labels,
        reference_shares=[round(float(x), 4) for x in a],
        current_shares=[round(float(x), 4) for x in b],
        reference_mean=round(float(ref.mean()), 4),
        current_mean=round(float(cur.mean()), 4),
    )


def _bin_labels(edges: Floats) -> list[str]:
    if not len(edges):
        return ["all"]
    fmt = [f"{e:.3g}" for e in edges]
    return [f"< {fmt[0]}"] + [f"{fmt[i]} to {fmt[i + 1]}" for i in range(len(fmt) - 1)] + [f"≥ {fmt[-1]}"]


def _language_test(ref: list[str], cur: list[str], threshold: float) -> TestResult:
    pooled = ref + cur
    common = {c for c in set(pooled) if pooled.count(c) >= MIN_CATEGORY_SHARE * len(pooled)}
    names, a, b = stats.category_shares(
        [c if c in common else "other" for c in ref], [c if c in common else "other" for c in cur]
    )
    score = stats.psi(a, b)
    top_ref = names[int(np.argmax(a))] if len(names) else ""
    top_cur = names[int(np.argmax(b))] if len(names) else ""
    return TestResult(
        name="language",
        method="PSI on language shares",
        score=round(score, 4),
        threshold=threshold,
        verdict=psi_verdict(score, threshold),
        detail=f"most common {top_ref} ({float(a.max()):.0%}) → {top_cur} ({float(b.max()):.0%})",
        hellinger=round(stats.hellinger(a, b), 4),
        bins=names,
        reference_shares=[round(float(x), 4) for x in a],
        current_shares=[round(float(x), 4) for x in b],
    )


def _unavailable(name: str, why: str, threshold: float) -> TestResult:
    return TestResult(name=name, method="", score=None, threshold=threshold, verdict="unavailable", detail=why)


def descriptor_tests(ref: Descriptors, cur: Descriptors, threshold: float) -> list[TestResult]:
    """The PSI tests of every descriptor."""
    tests = [
        _numeric_test("length_chars", ref.chars, cur.chars, threshold, "characters"),
        _numeric_test("length_words", ref.words, cur.words, threshold, "words"),
    ]
    if ref.missing.get("language"):
        tests.append(_unavailable("language", ref.missing["language"], threshold))
    else:
        tests.append(_language_test(ref.language, cur.language, threshold))
    for name in ("toxicity", "sentiment"):
        a, b = getattr(ref, name), getattr(cur, name)
        if a is None or b is None:
            tests.append(_unavailable(name, ref.missing.get(name, ""), threshold))
        else:
            tests.append(_numeric_test(name, a, b, threshold, ""))
    return tests


def _examples(ids: Sequence[str | None], texts: Sequence[str], probs: Floats, *, current_like: bool) -> list[Example]:
    order = np.argsort(-probs if current_like else probs, kind="stable")[:EXAMPLES]
    return [
        Example(trace_id=ids[i], text=texts[i][:EXAMPLE_CHARS], probability=round(float(probs[i]), 4))
        for i in (int(j) for j in order)
    ]


def analyse(
    field: str,
    reference: list[tuple[str | None, str]],
    current: list[tuple[str | None, str]],
    *,
    auc_threshold: float,
    psi_threshold: float,
    seed: int,
    embed: Embed,
    progress: Progress,
    report: FieldReport,
) -> FieldReport:
    """Fill `report` (its counts set) with the tests and the explanation of one field."""
    ref_ids, ref_texts = [i for i, _ in reference], [t for _, t in reference]
    cur_ids, cur_texts = [i for i, _ in current], [t for _, t in current]
    progress(f"{field}: embedding {len(ref_texts) + len(cur_texts):,} texts")
    vectors = embed(ref_texts + cur_texts)
    progress(f"{field}: training the domain classifier")
    verdict = stats.domain_classifier(vectors[: len(ref_texts)], vectors[len(ref_texts) :], seed)
    bar = max(auc_threshold, verdict.random_auc_p95)
    embedding = TestResult(
        name="embedding",
        method="domain classifier ROC AUC (MiniLM embeddings, logistic regression, 5-fold)",
        score=round(verdict.auc, 4),
        threshold=round(bar, 4),
        verdict="drift" if verdict.auc > bar else "none",
        detail=(
            f"threshold {auc_threshold} (a random classifier's 95th percentile here: {verdict.random_auc_p95:.3f})"
        ),
    )
    progress(f"{field}: descriptors")
    ref_desc, cur_desc = describe(ref_texts), describe(cur_texts)
    tests = [embedding, *descriptor_tests(ref_desc, cur_desc, psi_threshold)]
    languages = ref_desc.language + cur_desc.language
    common = frozenset(c for c in set(languages) if languages.count(c) >= STOPLIST_SHARE * len(languages))
    words = stats.changed_words(ref_texts, cur_texts, WORDS, stats.stop_words(common | {"en"}))
    probs = verdict.probabilities
    report.tests = tests
    report.drift = any(t.verdict == "drift" for t in tests)
    report.words_up = [WordShift(**vars(w)) for w in words if w.z > 0]
    report.words_down = [WordShift(**vars(w)) for w in words if w.z < 0]
    report.current_like = _examples(cur_ids, cur_texts, probs[len(ref_texts) :], current_like=True)
    report.reference_like = _examples(ref_ids, ref_texts, probs[: len(ref_texts)], current_like=False)
    for w in report.words_up + report.words_down:
        w.reference_share, w.current_share, w.z = (
            round(w.reference_share, 4),
            round(w.current_share, 4),
            round(w.z, 3),
        )
    return report
