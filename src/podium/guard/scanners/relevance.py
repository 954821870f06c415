"""`relevance`: an answer that has drifted away from its prompt, by the cosine similarity of their
all-MiniLM-L6-v2 embeddings (the prompt is the scan context). Below `threshold` is a finding."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from podium.guard.base import OUTPUT, Action, Finding, ScanContext, Scanner, ScannerSettings
from podium.guard.embedding import Embedder, default_embedder
from podium.guard.registry import register

MAX_CHARS = 2000  # the model reads 256 tokens: the start of each text carries its subject


class RelevanceSettings(ScannerSettings):
    """Settings of `relevance`."""

    threshold: float = Field(default=0.3, gt=-1, le=1)
    action: Action = "warn"


@register
class Relevance(Scanner):
    """An answer unrelated to its prompt."""

    name = "relevance"
    description = "output relevance to the prompt (MiniLM cosine similarity under a threshold)"
    stages = OUTPUT
    whole = True
    blocking = True
    Settings = RelevanceSettings
    settings: RelevanceSettings
    injects = ("embedder",)

    def __init__(self, settings: dict[str, Any] | None = None, embedder: Embedder | None = None):
        super().__init__(settings)
        self.embedder = embedder if embedder is not None else default_embedder()

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        if not context.prompt or not context.prompt.strip() or not text.strip():
            return []
        a, b = self.embedder.embed([context.prompt[:MAX_CHARS], text[:MAX_CHARS]])
        cosine = float(a @ b)
        if cosine < self.settings.threshold:
            return [self.finding("IRRELEVANT", 0, len(text), 1.0 - max(cosine, 0.0), f"cosine {cosine:.2f}")]
        return []
