"""Train the `prompt_injection` scanner's linear classifiers and write `injection_model.json` beside this file.

    python -m podium.guard.data.train_injection [--c 3.0]

Training texts: the shipped set (`injection.jsonl`), the first held-out set (used before, so no longer held out),
the training set written for the classifier (`injection_train.jsonl`), the attack corpus (`attacks.txt`, as
positives) and the even rows of the PII and toxicity sets (as negatives: ordinary text, contact details, rude
messages). The second and third held-out sets and the ordinary prompts (`injection_ordinary.jsonl`) are never
read here. Two logistic regressions (scikit-learn,
balanced classes): `full` over the n-gram features and the MiniLM vector, `ngrams` over the n-grams alone. Each
text is embedded twice, by the float model (the one the gateway serves) and by the int8 one the scanner uses
in process, so the classifier holds for both. Deterministic: the same file on every run on one machine.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
TRAINING_SETS = ("injection", "injection_holdout", "injection_train")
# the PII and toxicity sets hold no injection: their even rows train as negatives, the odd rows measure the
# false-positive rate on ordinary text in bench/guard.py
BENIGN_HALVES = ("pii", "toxicity")


def training_rows() -> list[dict[str, Any]]:
    """The labelled training texts, attack corpus included (each text once)."""
    from podium.guard.scanners.injection import attack_corpus

    rows: list[dict[str, Any]] = []
    for name in TRAINING_SETS:
        raw = resources.files("podium.guard.data").joinpath(f"{name}.jsonl").read_text(encoding="utf-8")
        rows.extend(json.loads(line) for line in raw.splitlines() if line.strip())
    for name in BENIGN_HALVES:  # ordinary text for the injection task: every other row, as a negative
        raw = resources.files("podium.guard.data").joinpath(f"{name}.jsonl").read_text(encoding="utf-8")
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        rows.extend({"id": r["id"], "text": r["text"], "label": 0} for r in lines[::2])
    seen = {r["text"] for r in rows}
    rows.extend({"text": a, "label": 1} for a in attack_corpus() if a not in seen)
    return rows


def _matrix(texts: list[str]) -> tuple[Any, list[str], list[str]]:
    from scipy import sparse  # type: ignore[import-untyped]

    from podium.guard.scanners.injection import features

    feats = [features(t).scaled() for t in texts]
    chars = sorted({k for c, _ in feats for k in c})
    words = sorted({k for _, w in feats for k in w})
    index = {("c", k): i for i, k in enumerate(chars)} | {("w", k): len(chars) + i for i, k in enumerate(words)}
    rows, cols, vals = [], [], []
    for r, (c, w) in enumerate(feats):
        for key in [("c", k) for k in c] + [("w", k) for k in w]:
            rows.append(r)
            cols.append(index[key])
            vals.append((c if key[0] == "c" else w)[key[1]])
    m = sparse.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(chars) + len(words)))
    return m, chars, words


def _weights(coef: Any, names: list[str], offset: int) -> dict[str, float]:
    return {k: round(float(coef[offset + i]), 5) for i, k in enumerate(names) if abs(coef[offset + i]) >= 5e-5}


def train(c: float = 3.0) -> dict[str, Any]:
    """Fit both classifiers; the model file's content."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    from podium.guard.embedding import default_embedder, fast_embedder

    rows = training_rows()
    texts = [r["text"] for r in rows]
    y = np.array([int(r["label"]) for r in rows])
    grams, chars, words = _matrix(texts)
    n = len(chars) + len(words)

    ngrams = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(grams, y)
    vectors = np.vstack([default_embedder().embed(texts), fast_embedder().embed(texts)])
    both = sparse.vstack(
        [
            sparse.hstack([grams, sparse.csr_matrix(vectors[: len(texts)])]),
            sparse.hstack([grams, sparse.csr_matrix(vectors[len(texts) :])]),
        ]
    ).tocsr()
    full = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(both, np.concatenate([y, y]))
    emb = full.coef_[0][n:]
    return {
        "about": (
            f"logistic regressions (C={c}, balanced) over {len(texts)} texts ({int(y.sum())} attacks) of "
            f"{', '.join(TRAINING_SETS)}, attacks.txt and the even rows of {' and '.join(BENIGN_HALVES)}; "
            "written by podium.guard.data.train_injection"
        ),
        "full": {
            "bias": round(float(full.intercept_[0]), 5),
            "chars": _weights(full.coef_[0], chars, 0),
            "words": _weights(full.coef_[0], words, len(chars)),
            "emb": [round(float(v), 6) for v in emb],
        },
        "ngrams": {
            "bias": round(float(ngrams.intercept_[0]), 5),
            "chars": _weights(ngrams.coef_[0], chars, 0),
            "words": _weights(ngrams.coef_[0], words, len(chars)),
        },
    }


def cross_validate(c: float = 3.0, folds: int = 5) -> dict[str, float]:
    """F1 of the `full` classifier alone (whole texts, probability >= 0.7, no heuristics) over `folds` stratified
    folds of the training texts, each fold scored by a model fitted on the others: an in-distribution estimate
    (the shipped set is templated, so near-duplicates straddle folds)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    from podium.guard.embedding import fast_embedder

    rows = training_rows()
    texts = [r["text"] for r in rows]
    y = np.array([int(r["label"]) for r in rows])
    grams, _, _ = _matrix(texts)
    x = sparse.hstack([grams, sparse.csr_matrix(fast_embedder().embed(texts))]).tocsr()
    predicted = np.zeros(len(y), dtype=bool)
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, y):
        fitted = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(x[train_idx], y[train_idx])
        predicted[test_idx] = fitted.predict_proba(x[test_idx])[:, 1] >= 0.7
    shipped = np.array([str(r.get("id", "")).startswith("injection-") for r in rows])
    out = {}
    for name, mask in (("all training texts", np.ones(len(y), dtype=bool)), ("shipped set", shipped)):
        tp = int((predicted & (y == 1) & mask).sum())
        fp = int((predicted & (y == 0) & mask).sum())
        fn = int((~predicted & (y == 1) & mask).sum())
        out[name] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c", type=float, default=3.0, help="inverse regularisation strength of both regressions")
    ap.add_argument("--cv", action="store_true", help="print a 5-fold cross-validated F1 instead of writing")
    args = ap.parse_args()
    if args.cv:
        print(cross_validate(args.c))
        return
    model = train(args.c)
    (HERE / "injection_model.json").write_text(json.dumps(model, separators=(",", ":")) + "\n", encoding="utf-8")
    print(model["about"])


if __name__ == "__main__":
    main()
