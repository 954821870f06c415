"""The statistics behind drift reports, on plain arrays: the domain classifier's cross-validated ROC AUC (and the
examples it finds most typical of each side), the population stability index of numbers (binned on the
reference's quantiles) and of categories, the Hellinger distance, and the words whose share of texts changed most
(log-odds with an informative Dirichlet prior, Monroe et al. 2008)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
EPS = 1e-4  # the share given to an empty bin, so PSI stays finite (Evidently and most write-ups do the same)
FOLDS = 5
RANDOM_AUC_RUNS = 1_000
PRIOR_TEXTS = 10.0  # the weight of the pooled share in each side's word share
WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


@dataclass(frozen=True)
class Classified:
    """The domain classifier's verdict: the ROC AUC of out-of-fold probabilities that a text is current, the
    AUC a random classifier reaches at the 95th percentile for these sample sizes, and each text's probability
    (reference texts first, as given)."""

    auc: float
    random_auc_p95: float
    probabilities: Floats


def domain_classifier(reference: npt.NDArray[np.float32], current: npt.NDArray[np.float32], seed: int) -> Classified:
    """Train a logistic regression to tell current rows from reference rows, with stratified 5-fold
    cross-validation, and score its out-of-fold probabilities by ROC AUC (0.5: indistinguishable)."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]
    from sklearn.model_selection import StratifiedKFold, cross_val_predict  # type: ignore[import-untyped]

    x = np.vstack([reference, current]).astype(np.float64)
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(current))])
    folds = StratifiedKFold(n_splits=min(FOLDS, len(reference), len(current)), shuffle=True, random_state=seed)
    model = LogisticRegression(max_iter=1000, C=1.0)
    probs = np.asarray(cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1], dtype=np.float64)
    auc = float(roc_auc_score(y, probs))
    return Classified(auc=auc, random_auc_p95=random_auc_p95(len(reference), len(current), seed), probabilities=probs)


def random_auc_p95(n_reference: int, n_current: int, seed: int) -> float:
    """The 95th percentile of the ROC AUC of random scores on samples of these sizes (1,000 draws; by ranks, the
    Mann-Whitney form of the AUC)."""
    rng = np.random.default_rng(seed)
    n = n_reference + n_current
    ranks = np.argsort(np.argsort(rng.random((RANDOM_AUC_RUNS, n)), axis=1), axis=1) + 1
    current_ranks = ranks[:, n_reference:].sum(axis=1)
    aucs = (current_ranks - n_current * (n_current + 1) / 2) / (n_reference * n_current)
    return float(np.percentile(aucs, 95))


def quantile_edges(reference: Floats, bins: int = 10) -> Floats:
    """Inner bin edges at the reference's quantiles (repeated edges merged, so a value-heavy reference gives
    fewer bins)."""
    qs = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]) if len(reference) else np.array([])
    return np.unique(qs)


def binned_shares(values: Floats, edges: Floats) -> Floats:
    """The share of values in each bin the inner `edges` make (values on an edge go to the upper bin)."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1).astype(np.float64)
    shares: Floats = counts / max(1.0, counts.sum())
    return shares


def psi(expected: Floats, actual: Floats) -> float:
    """The population stability index of two share vectors: sum((a - e) * ln(a / e)), empty bins at `EPS`."""
    e = np.clip(expected, EPS, None)
    a = np.clip(actual, EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def hellinger(expected: Floats, actual: Floats) -> float:
    """The Hellinger distance of two share vectors, in [0, 1]."""
    return float(math.sqrt(max(0.0, 0.5 * float(np.sum((np.sqrt(expected) - np.sqrt(actual)) ** 2)))))


def category_shares(
    reference: Sequence[str], current: Sequence[str], top: int = 12
) -> tuple[list[str], Floats, Floats]:
    """The categories (the `top` most frequent over both sides, the rest as `other`) and each side's shares."""
    both = Counter(reference) + Counter(current)
    names = [name for name, _ in both.most_common(top)]
    if len(both) > top:
        names.append("other")
    keep = set(names)

    def shares(values: Sequence[str]) -> Floats:
        counts = Counter(v if v in keep else "other" for v in values)
        total = max(1, len(values))
        return np.array([counts.get(n, 0) / total for n in names], dtype=np.float64)

    return names, shares(reference), shares(current)


# languages whose common words the explanation leaves out when a side is written in them (justext's stoplists,
# which ship inside the package: the most frequent words of each language's Wikipedia)
STOPLISTS = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "sv": "Swedish", "da": "Danish", "no": "Norwegian_Bokmal", "fi": "Finnish", "pl": "Polish",
    "cs": "Czech", "ro": "Romanian", "hu": "Hungarian", "tr": "Turkish", "ru": "Russian", "uk": "Ukrainian",
    "el": "Greek", "ca": "Catalan", "id": "Indonesian",
}  # fmt: skip


@cache
def stop_words(languages: frozenset[str] = frozenset()) -> frozenset[str]:
    """scikit-learn's English stop words, and justext's stoplists of `languages` (ISO 639-1 codes) where it has
    them (both imported on first use: the modules are heavy)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # type: ignore[import-untyped]

    words = set(ENGLISH_STOP_WORDS)
    for code in sorted(languages):
        name = STOPLISTS.get(code)
        if name is None:
            continue
        try:
            import justext

            words |= {w.lower() for w in justext.get_stoplist(name)}
        except (ImportError, ValueError):  # justext missing, or without that list
            continue
    return frozenset(words)


def words_of(text: str, stop: frozenset[str] = frozenset()) -> set[str]:
    """The distinct words of a text (letters only, two or more, lower case), those in `stop` left out."""
    return {w for w in (m.group().lower() for m in WORD.finditer(text)) if w not in stop}


@dataclass(frozen=True)
class WordChange:
    """A word whose share of texts changed: its share on each side and the z-score of the log-odds ratio
    (positive: more frequent in the current window)."""

    word: str
    reference_share: float
    current_share: float
    z: float


def changed_words(
    reference: Sequence[str], current: Sequence[str], top: int = 10, stop: frozenset[str] | None = None
) -> list[WordChange]:
    """The words whose share of texts changed most, `top` each way: the z-score of the log-odds ratio of a text
    holding the word, each side smoothed by a Beta prior centred on the pooled share (worth `PRIOR_TEXTS` texts),
    so that rare words do not dominate (the informative-prior log-odds of Monroe et al., per text). Ties go to the
    longer word. `stop`: the words left out (default: English stop words)."""
    stop = stop_words() if stop is None else stop
    ref_docs = Counter(w for t in reference for w in words_of(t, stop))
    cur_docs = Counter(w for t in current for w in words_of(t, stop))
    n_ref, n_cur = len(reference), len(current)
    if not n_ref or not n_cur:
        return []
    changes = []
    for word, count in (ref_docs + cur_docs).items():
        if count < 3:
            continue
        share = count / (n_ref + n_cur)
        a, b = PRIOR_TEXTS * share, PRIOR_TEXTS * (1 - share)
        y_cur, y_ref = cur_docs.get(word, 0), ref_docs.get(word, 0)
        lo_cur = math.log((y_cur + a) / (n_cur - y_cur + b))
        lo_ref = math.log((y_ref + a) / (n_ref - y_ref + b))
        var = 1 / (y_cur + a) + 1 / (n_cur - y_cur + b) + 1 / (y_ref + a) + 1 / (n_ref - y_ref + b)
        changes.append(WordChange(word, y_ref / n_ref, y_cur / n_cur, (lo_cur - lo_ref) / math.sqrt(var)))
    up = sorted((c for c in changes if c.z > 0), key=lambda c: (-round(c.z, 9), -len(c.word), c.word))[:top]
    down = sorted((c for c in changes if c.z < 0), key=lambda c: (round(c.z, 9), -len(c.word), c.word))[:top]
    return up + down
