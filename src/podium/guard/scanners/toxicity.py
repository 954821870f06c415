"""`toxicity`: insults, profanity and abuse, by alt-profanity-check's trained linear model (offline). Each
sentence is scored in one batch and the worst one counts, so one abusive sentence in a long polite prompt is
not diluted away.

The package's `predict_prob` goes through scikit-learn's `CalibratedClassifierCV.predict_proba` (five
LinearSVC folds, each with a sigmoid calibrator), whose per-call checks cost about 3 ms however short the
text (profiled in bench/guard.py); the same arithmetic done here on the fitted coefficients gives the same
probabilities (tests compare them) in a tenth of the time. Any other model shape falls back to `predict_prob`.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from podium.guard.base import BOTH, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register

_SENTENCES = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_model: Callable[[list[str]], Any] | None = None
_lock = threading.Lock()


def fast_predictor(module: Any) -> Callable[[list[str]], Any] | None:
    """`predict_prob` computed directly: mean over the calibrated folds of expit(-(a * (x.w + c) + b)); None
    when the fitted model is not that shape."""
    model, vectorizer = getattr(module, "model", None), getattr(module, "vectorizer", None)
    folds = getattr(model, "calibrated_classifiers_", None)
    if vectorizer is None or not folds or getattr(model, "method", None) != "sigmoid":
        return None
    try:
        weights = np.stack([np.asarray(f.estimator.coef_, dtype=np.float64)[0] for f in folds], axis=1)
        bias = np.array([float(np.ravel(f.estimator.intercept_)[0]) for f in folds])
        a = np.array([float(f.calibrators[0].a_) for f in folds])
        b = np.array([float(f.calibrators[0].b_) for f in folds])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if list(getattr(model, "classes_", [])) != [0, 1]:
        return None

    def predict(texts: list[str]) -> Any:
        decision = np.asarray(vectorizer.transform(texts) @ weights) + bias
        return (1.0 / (1.0 + np.exp(a * decision + b))).mean(axis=1)

    return predict


def toxicity_model() -> Callable[[list[str]], Any]:
    """The probability function of alt-profanity-check's model (loaded once: unpickling takes a moment)."""
    global _model
    with _lock:
        if _model is None:
            if importlib.util.find_spec("profanity_check") is None:
                raise ScannerError(
                    "scanner 'toxicity' needs alt-profanity-check: pip install 'podium[guard]'", "toxicity"
                )
            module = importlib.import_module("profanity_check.profanity_check")
            _model = fast_predictor(module) or module.predict_prob
        return _model


class ToxicitySettings(ScannerSettings):
    """Settings of `toxicity`."""

    threshold: float = Field(default=0.5, gt=0, le=1)


@register
class Toxicity(Scanner):
    """Toxic, insulting or profane text (the worst sentence's probability)."""

    name = "toxicity"
    description = "insults, profanity and abuse (alt-profanity-check's linear model, per sentence)"
    stages = BOTH
    Settings = ToxicitySettings
    settings: ToxicitySettings

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        self.predict = toxicity_model()

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        spans = [m.span() for m in _SENTENCES.finditer(text) if m.group().strip()]
        if not spans:
            return []
        texts = [text[a:b] for a, b in spans]
        if len(spans) > 1:
            spans.append((0, len(text)))
            texts.append(text)
        probs = self.predict(texts)
        i = max(range(len(texts)), key=lambda k: float(probs[k]))
        p = float(probs[i])
        if p >= self.settings.threshold:
            return [self.finding("TOXICITY", spans[i][0], spans[i][1], p, f"probability {p:.2f}")]
        return []
