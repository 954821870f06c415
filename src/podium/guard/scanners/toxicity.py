"""`toxicity`: insults, profanity and abuse, by alt-profanity-check's trained linear model (offline, about a
millisecond per call). Each sentence is scored in one batch and the worst one counts, so one abusive sentence
in a long polite prompt is not diluted away."""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
from collections.abc import Callable
from typing import Any

from pydantic import Field

from podium.guard.base import BOTH, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register

_SENTENCES = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_model: Callable[[list[str]], Any] | None = None
_lock = threading.Lock()


def toxicity_model() -> Callable[[list[str]], Any]:
    """alt-profanity-check's `predict_prob` (imported once: unpickling its model takes a moment)."""
    global _model
    with _lock:
        if _model is None:
            if importlib.util.find_spec("profanity_check") is None:
                raise ScannerError(
                    "scanner 'toxicity' needs alt-profanity-check: pip install 'podium[guard]'", "toxicity"
                )
            _model = importlib.import_module("profanity_check").predict_prob
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
