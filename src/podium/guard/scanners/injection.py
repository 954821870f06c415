"""`prompt_injection`: attempts to override the model's instructions or unlock a persona without its rules.

Two signals, the higher wins:
- heuristics: weighted patterns for the common moves (ignore/disregard the previous instructions, reveal the
  system prompt, "you are now DAN", developer mode, forged role markers such as `<|im_start|>system`);
- similarity: each sentence that holds an attack word is embedded (all-MiniLM-L6-v2) and compared with a
  corpus of known attacks written for this project (`guard/data/attacks.txt`); its best cosine similarity,
  rescaled from `similarity_floor` (score 0) to `similarity_full` (score 1), is the score.
Sentences without any attack word are never embedded (`prefilter`), so ordinary prompts cost a regex pass;
long prompts are scanned sentence by sentence, so an attack at the end of a long document is not truncated
away. bench/RESULTS.md has the accuracy on the shipped set and on held-out sets: expect far less on attacks
phrased unlike the corpus than on the shipped set.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from pydantic import Field

from podium.guard.base import INPUT, Finding, ScanContext, Scanner, ScannerSettings
from podium.guard.embedding import Embedder, Vectors, default_embedder
from podium.guard.registry import register

_PREV = r"(?:previous|prior|above|earlier|preceding|initial|original|old|existing|system|developer's|all|every|your)"
_RULES = (
    r"(?:instructions?|rules|prompts?|directives?|guidelines?|guidance|guardrails|constraints|programming|policies"
    r"|restrictions|training)"
)
_AI = r"(?:AI|A\.I\.|assistant|language model|LLM|chatbot|bot|agent|model)s?"
_I = re.IGNORECASE
HEURISTICS: tuple[tuple[float, re.Pattern[str], str], ...] = tuple(
    (w, re.compile(p, flags), name)
    for w, p, flags, name in (
        (
            0.95,
            rf"\b(?:ignore|disregard|forget|override|bypass|abandon|discard)\b[\w\s,']{{0,30}}?"
            rf"(?:\b{_PREV}\b[\w\s,']{{0,30}}?\b{_RULES}\b|\b{_RULES}\b[\w\s,']{{0,40}}?\b(?:above|earlier|before|"
            rf"previously|given|told)\b|\bwhat (?:the developers?|your (?:creators?|developers?)|you were told)\b)",
            _I,
            "ignore previous instructions",
        ),
        (
            0.9,
            r"\b(?:reveal|show|print|repeat|output|display|leak|tell me|give me|write out|dump|recite|spell out|echo"
            r"|copy|list|quote)\b[\w\s,';]{0,40}?\b(?:system|hidden|secret|initial|original|developer|confidential"
            r"|full)\s+(?:prompt|instructions?|message|rules|configuration|text)",
            _I,
            "reveal the system prompt",
        ),
        (
            0.85,
            r"\bwhat (?:instructions|rules|guidelines)\b[\w\s,']{0,20}\b(?:were you|you were|you've been)"
            r" (?:given|told)|\b(?:everything|all|the text|anything) (?:above|before) (?:this|my)\b"
            r"[\w\s,']{0,30}\b(?:word for word"
            r"|verbatim|exactly)|\bwhat your (?:creators|developers?) (?:wrote|told you|said)",
            _I,
            "reveal the system prompt",
        ),
        (
            0.9,
            r"\b(?:DAN|STAN|DUDE)\b|\b[Dd]o [Aa]nything [Nn]ow\b",
            0,
            "jailbreak persona",
        ),
        (
            0.9,
            r"\bjailbreak(?:ed)?\s+(?:mode|activated|enabled|prompt)|\byou(?:'re| are) (?:now )?jailbroken"
            r"|\b(?:you are|you're) (?:now )?in (?:developer|god|dev) mode|\b(?:developer|god) mode\b[^.]{0,80}"
            r"\b(?:ignor|polic|restrict|filter|rules|anything|unlock)|\bunfiltered\s+(?:ai|assistant|model|mode|response)"
            r"|\b(?:enter|activate|enable|switch to) (?:god|unfiltered|uncensored|unrestricted) mode",
            _I,
            "jailbreak persona",
        ),
        (
            0.85,
            r"\b(?:without|with no|free (?:of|from)|no longer (?:bound by|have|follow)|not bound by)\s+"
            r"(?:any\s+|your\s+)?(?:restrictions|rules|filters|limits|limitations|guidelines|censorship|ethical|moral|safety)",
            _I,
            "no restrictions",
        ),
        (
            0.85,
            r"<\|im_start\|>\s*system|<\|system\|>|\[/?INST\]|<<SYS>>|^\s*#{2,}\s*(?:system|new instructions)\b"
            r"|^\s*(?:system|assistant)\s*:\s*(?:you|ignore|new)",
            _I | re.MULTILINE,
            "forged role marker",
        ),
        (
            0.8,
            r"\b(?:new|updated|real|actual|true)\s+instructions?\s*:|\bfrom now on,?\s+(?:you (?:are|will|must)|ignore)"
            r"|\byou are no longer (?:an?|bound|restricted|required)\b"
            r"|\byour (?:new|real|actual|true) (?:role|task|goal|job|purpose|instructions)\b"
            r"|\b(?:rules|instructions|guidelines|policies) (?:are|is) (?:now )?(?:void|cancel+ed"
            r"|revoked|invalid|suspended|disabled|no longer valid)",
            _I,
            "instruction takeover",
        ),
        (
            0.8,
            rf"\b(?:note|message|instructions?|attention) (?:to|for) (?:any|all|the)?\s*{_AI}\b|\bif you are an? "
            rf"(?:large )?{_AI}\b|^\W*(?:dear |hey )?(?:AI|AI assistant|assistant|language model)\s*[,:]\s*"
            r"(?:ignore|disregard|forget|your|stop|do not|don't|send|insert)",
            _I | re.MULTILINE,
            "instructions addressed to the AI",
        ),
        (
            0.75,
            r"\b(?:pretend|imagine|act as if|roleplay as|role-play as|behave as if|you are)\b[\w\s,']{0,40}?"
            r"\b(?:no (?:rules|restrictions|filters|limits)|evil|unrestricted|uncensored|unethical|never refuses?)\b",
            _I,
            "unrestricted roleplay",
        ),
    )
)
# A sentence is embedded only if it holds one of these words: ordinary prompts skip the model entirely.
TRIGGERS = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass|instructions?|prompt|system|rules|pretend|roleplay|role-play"
    r"|jailbreak\w*|DAN|developer|mode|unfiltered|uncensored|restrictions?|filters?|guidelines|policy|policies"
    r"|persona|simulate|hypothetical\w*|confidential|reveal|secret|previous|prior|above|obey|comply|unrestricted"
    r"|censor\w*|ethic\w*|moral\w*|limits?|constraints?|you are now|from now on|evil|admin|sudo|hidden|verbatim"
    r"|word for word|configuration|guidance|creators?|makers?|AI|assistant|language model|refuse\w*|task|told"
    r"|moderation|master|behave)\b",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
MAX_SEGMENT = 400


def segments(text: str, prefilter: bool = True) -> list[tuple[int, int]]:
    """Sentence spans (cut at MAX_SEGMENT characters), only those holding an attack word when `prefilter`."""
    out = []
    for m in _SENTENCES.finditer(text):
        start, end = m.span()
        while end - start > MAX_SEGMENT:
            if not prefilter or TRIGGERS.search(text, start, start + MAX_SEGMENT):
                out.append((start, start + MAX_SEGMENT))
            start += MAX_SEGMENT
        if text[start:end].strip() and (not prefilter or TRIGGERS.search(text, start, end)):
            out.append((start, end))
    return out


@cache
def attack_corpus() -> tuple[str, ...]:
    """The known attacks shipped with Podium (one per line; blank lines and `# ` comments skipped: an attack may
    itself start with `###`)."""
    raw = resources.files("podium.guard.data").joinpath("attacks.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in raw.splitlines() if line.strip() and not line.startswith("# "))


class InjectionSettings(ScannerSettings):
    """Settings of `prompt_injection`."""

    threshold: float = Field(default=0.7, ge=0, le=1)  # findings at or above this score
    embeddings: bool = True  # off: heuristics only (no model)
    similarity_floor: float = Field(default=0.40, ge=0, lt=1)  # cosine mapped to score 0
    similarity_full: float = Field(default=0.64, gt=0, le=1)  # cosine mapped to score 1 (0.568 reaches 0.7)
    extra_attacks: list[str] = Field(default_factory=list, max_length=10_000)  # more known attacks
    prefilter: bool = True  # embed only sentences holding an attack word (off: every sentence, slower)
    cache_size: int = Field(default=4096, ge=0, le=1_000_000)  # sentences whose best similarity is remembered
    max_segments: int = Field(default=128, ge=1, le=10_000)  # sentences embedded per text at most (the first)


_corpus_vectors: dict[tuple[object, tuple[str, ...]], Vectors] = {}
_corpus_lock = threading.Lock()
# sentence -> its best cosine to the corpus, per (embedder, corpus): system prompts and templates repeat
_sentence_cache: dict[tuple[object, tuple[str, ...]], OrderedDict[str, float]] = {}


@register
class PromptInjection(Scanner):
    """Prompt injection and jailbreak attempts: heuristics, and similarity to known attacks."""

    name = "prompt_injection"
    description = "prompt injection and jailbreaks: heuristics + MiniLM similarity to a shipped attack corpus"
    stages = INPUT
    blocking = True
    Settings = InjectionSettings
    settings: InjectionSettings
    injects = ("embedder",)

    def __init__(self, settings: dict[str, Any] | None = None, embedder: Embedder | None = None):
        super().__init__(settings)
        s = self.settings
        if s.similarity_full <= s.similarity_floor:
            from podium.guard.base import ScannerError

            raise ScannerError(
                f"scanner 'prompt_injection' setting 'similarity_full' ({s.similarity_full}) must be above "
                f"'similarity_floor' ({s.similarity_floor})",
                "similarity_full",
            )
        self.embedder: Embedder | None = None
        if s.embeddings:
            self.embedder = embedder if embedder is not None else default_embedder()
        self.corpus = attack_corpus() + tuple(a.strip() for a in s.extra_attacks if a.strip())
        self._seen: OrderedDict[str, float] | None = None

    def _corpus_vectors(self, embedder: Embedder) -> Vectors:
        key = (getattr(embedder, "cache_key", id(embedder)), self.corpus)
        with _corpus_lock:
            found = _corpus_vectors.get(key)
            if found is None:
                found = _corpus_vectors[key] = embedder.embed(list(self.corpus))
            return found

    def warm(self) -> None:
        """Load the model and embed the corpus now rather than on the first request."""
        if self.embedder is not None:
            self._corpus_vectors(self.embedder)

    def _similarities(self, sentences: list[str]) -> list[float]:
        """Each sentence's best cosine similarity to the corpus; sentences seen before are not embedded again."""
        assert self.embedder is not None
        size = self.settings.cache_size
        corpus = self._corpus_vectors(self.embedder)
        if not size:  # no cache at all: every sentence is embedded
            return [float(v) for v in (self.embedder.embed(sentences) @ corpus.T).max(axis=1)]
        if self._seen is None:  # shared by the scanners of one embedder and corpus (the API builds one per call)
            key = (getattr(self.embedder, "cache_key", id(self.embedder)), self.corpus)
            with _corpus_lock:
                self._seen = _sentence_cache.setdefault(key, OrderedDict())
        seen = self._seen
        with _corpus_lock:
            known = {t: seen[t] for t in sentences if t in seen}
            for t in known:
                seen.move_to_end(t)
        missing = list(dict.fromkeys(t for t in sentences if t not in known))
        if missing:
            sims = self.embedder.embed(missing) @ corpus.T
            fresh = dict(zip(missing, (float(v) for v in sims.max(axis=1)), strict=True))
            known.update(fresh)
            with _corpus_lock:
                seen.update(fresh)
                while len(seen) > size:
                    seen.popitem(last=False)
        return [known[t] for t in sentences]

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        s = self.settings
        best: tuple[float, int, int, str] = (0.0, 0, 0, "")
        for weight, pattern, label in HEURISTICS:
            m = pattern.search(text)
            if m is not None and weight > best[0]:
                best = (weight, m.start(), m.end(), f"heuristic: {label}")
        if self.embedder is not None and best[0] < 0.95:
            spans = segments(text, s.prefilter)[: s.max_segments]
            if spans:
                cosines = self._similarities([text[a:b] for a, b in spans])
                i = int(np.argmax(cosines))
                cosine = float(cosines[i])
                score = (cosine - s.similarity_floor) / (s.similarity_full - s.similarity_floor)
                if score > best[0]:
                    a, b = spans[i]
                    best = (min(score, 1.0), a, b, f"similar to a known attack (cosine {cosine:.2f})")
        if best[0] >= s.threshold:
            return [self.finding("PROMPT_INJECTION", best[1], best[2], best[0], best[3])]
        return []
