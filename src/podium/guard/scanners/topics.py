"""`topics`: ban or allow lists of topics by embedding similarity (all-MiniLM-L6-v2). Each topic is a short
description ("medical advice", "competitor products"); a sentence whose cosine similarity to a banned topic
reaches `threshold` is a finding, and with an `allow` list, a text none of whose sentences reaches `threshold`
for any allowed topic is one (off-topic)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from podium.guard.base import BOTH, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.embedding import Embedder, default_embedder
from podium.guard.registry import register

_SENTENCES = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
MAX_SENTENCES = 64


def sentence_spans(text: str, limit: int = MAX_SENTENCES) -> list[tuple[int, int]]:
    """Spans of the first `limit` non-blank sentences (the whole text if it has no sentence marks)."""
    spans = [m.span() for m in _SENTENCES.finditer(text) if m.group().strip()]
    return spans[:limit] or ([(0, len(text))] if text.strip() else [])


class TopicsSettings(ScannerSettings):
    """Settings of `topics`: at least one of `ban` and `allow`."""

    ban: list[str] = Field(default_factory=list, max_length=500)
    allow: list[str] = Field(default_factory=list, max_length=500)
    threshold: float = Field(default=0.4, gt=0, le=1)

    @model_validator(mode="after")
    def _topics(self) -> TopicsSettings:
        """At least one list, and no empty topic (checked with the settings, before any embedding)."""
        if not self.ban and not self.allow:
            raise ValueError("scanner 'topics' needs 'ban' or 'allow': a list of topic descriptions")
        for field in ("ban", "allow"):
            for i, item in enumerate(getattr(self, field)):
                if not item.strip():
                    raise ValueError(f"'{field}.{i}': a topic must not be empty")
        return self


@register
class Topics(Scanner):
    """Banned topics present, or none of the allowed topics."""

    name = "topics"
    description = "ban/allow lists of topics by MiniLM embedding similarity"
    stages = BOTH
    blocking = True
    Settings = TopicsSettings
    settings: TopicsSettings
    injects = ("embedder",)

    def __init__(self, settings: dict[str, Any] | None = None, embedder: Embedder | None = None):
        super().__init__(settings)
        s = self.settings
        if not s.ban and not s.allow:
            raise ScannerError("scanner 'topics' needs 'ban' or 'allow': a list of topic descriptions", "ban")
        for field, items in (("ban", s.ban), ("allow", s.allow)):
            for i, item in enumerate(items):
                if not item.strip():
                    raise ScannerError(f"scanner 'topics' setting '{field}.{i}': a topic must not be empty", field)
        self.embedder = embedder if embedder is not None else default_embedder()
        self._ban = self.embedder.embed(list(s.ban)) if s.ban else None
        self._allow = self.embedder.embed(list(s.allow)) if s.allow else None

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        spans = sentence_spans(text)
        if not spans:
            return []
        vectors = self.embedder.embed([text[a:b] for a, b in spans])
        out = []
        threshold = self.settings.threshold
        if self._ban is not None:
            sims = vectors @ self._ban.T
            for i, (a, b) in enumerate(spans):
                j = int(np.argmax(sims[i]))
                if sims[i, j] >= threshold:
                    out.append(self.finding("BANNED_TOPIC", a, b, float(sims[i, j]), self.settings.ban[j]))
        if self._allow is not None:
            best = float((vectors @ self._allow.T).max())
            if best < threshold:
                out.append(self.finding("OFF_TOPIC", 0, len(text), 1.0 - best, f"best allowed-topic cosine {best:.2f}"))
        return out
