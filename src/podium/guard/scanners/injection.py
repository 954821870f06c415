"""`prompt_injection`: attempts to override the model's instructions, pull out its setup text, or unlock a
persona without its rules, in the prompt or in a document the prompt carries.

Three signals, the highest wins:
- heuristics: weighted patterns for the common moves (ignore/disregard the previous instructions, reveal the
  system prompt, "you are now DAN", developer mode, forged role markers such as `<|im_start|>system`);
- a linear classifier (logistic regression, `guard/data/injection_model.json`, trained by
  `python -m podium.guard.data.train_injection` on the shipped labelled set, the first held-out set, the attack
  corpus and a training set written for it) over character and word n-grams and the sentence's all-MiniLM-L6-v2
  embedding; its probability is the score. Without embeddings (`embeddings: false`) an n-gram-only model of the
  same training runs instead;
- optionally (`similarity: true`) the old signal: the best cosine of an embedded sentence to the shipped attack
  corpus (`guard/data/attacks.txt` plus `extra_attacks`), rescaled from `similarity_floor` to `similarity_full`.
The text is scanned sentence by sentence (so an attack at the end of a long document is not truncated away), and
short texts whole too; encoded payloads are decoded first (base64 runs, s p a c e d letters, l33tspeak) and
scanned as well. Embedding is the cost: a sentence is embedded only when the n-gram model gives it at least
`prefilter_floor` (a gate chosen on the training and second held-out sets, where it lost no attack), the
`max_segments` likeliest first, so most sentences of an ordinary prompt cost a dictionary pass.
bench/RESULTS.md has precision and recall on the shipped set and on held-out sets.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from itertools import chain, pairwise, repeat
from operator import mul
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from podium.guard.base import INPUT, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.embedding import Embedder, Vectors, fast_embedder
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
            r"|copy|list|quote)\b[\w\s,';]{0,40}?(?:\b(?:system|hidden|secret|initial|original|developer|confidential)"
            r"\s+(?:prompt|instructions?|message|rules|configuration|text)|\bfull\s+(?:prompt|instructions|configuration"
            r"|system))",
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
_SENTENCES = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
MAX_SEGMENT = 400
MODEL_FILE = "injection_model.json"


def segments(text: str) -> list[tuple[int, int]]:
    """Sentence spans, each cut at MAX_SEGMENT characters."""
    out = []
    for m in _SENTENCES.finditer(text):
        start, end = m.span()
        while end - start > MAX_SEGMENT:
            out.append((start, start + MAX_SEGMENT))
            start += MAX_SEGMENT
        if text[start:end].strip():
            out.append((start, end))
    return out


# --- encodings: payloads an attacker hides from patterns ---------------------------------------------------

_BASE64 = re.compile(r"(?<![\w+/])[A-Za-z0-9+/]{16,}={0,2}(?![\w+/=])")
_SPACED = re.compile(r"(?<!\S)(?:\w {1,3}){4,}\w(?!\S)")
_LEET_WORD = re.compile(r"(?<![\w@$])[\w@$]*[a-zA-Z][013457@$]+[a-zA-Z][\w@$]*|(?<![\w@$])[013457][a-zA-Z]{2,}\w*")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})


def decoded(text: str) -> list[tuple[int, int, str]]:
    """Hidden readings of parts of `text`, as (start, end, decoded text): base64 runs that decode to printable
    text, letters written apart ("i g n o r e   a l l"), and words with digits for letters ("1gn0re y0ur": two
    such words at least, read as the whole text)."""
    out: list[tuple[int, int, str]] = []
    for m in _BASE64.finditer(text):
        raw = m.group()
        try:
            plain = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if plain.isprintable() and sum(c.isalpha() or c == " " for c in plain) >= 0.8 * len(plain):
            out.append((m.start(), m.end(), plain))
    for m in _SPACED.finditer(text):
        words = re.split(r" {2,}", m.group())
        out.append((m.start(), m.end(), " ".join(w.replace(" ", "") for w in words)))
    if len(_LEET_WORD.findall(text)) >= 2:  # one is often a name or a unit ("b4", "5th")
        out.append((0, len(text), _LEET_WORD.sub(lambda w: w.group().translate(_LEET), text)))
    return out


# --- the linear classifier -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+")
NGRAMS = (2, 5)  # character n-grams of each word padded with spaces


@dataclass(frozen=True)
class Features:
    """The classifier's sparse features of a text: character 2-5-grams of its lower-cased words (each padded
    with a space) and its words and word pairs, as counts; each group is scaled to unit length by its norm."""

    chars: Counter[str]
    chars_norm: float
    words: Counter[str]
    words_norm: float

    def scaled(self) -> tuple[dict[str, float], dict[str, float]]:
        """Both groups as unit-length vectors (what the regressions were fitted on)."""
        return (
            {k: v / self.chars_norm for k, v in self.chars.items()},
            {k: v / self.words_norm for k, v in self.words.items()},
        )


@lru_cache(maxsize=65_536)
def _word_ngrams(word: str) -> tuple[str, ...]:
    padded = f" {word} "
    size = len(padded)
    lo, hi = NGRAMS
    return tuple(padded[i : i + n] for n in range(lo, min(hi, size) + 1) for i in range(size - n + 1))


def features(text: str) -> Features:
    """`text`'s features (the n-grams of each distinct word are computed once per process)."""
    words = _TOKEN.findall(text.lower())
    chars: Counter[str] = Counter(chain.from_iterable(map(_word_ngrams, words)))
    terms: Counter[str] = Counter(words)
    terms.update(map(" ".join, pairwise(words)))
    return Features(chars, _norm(chars), terms, _norm(terms))


def _norm(counts: Counter[str]) -> float:
    return math.sqrt(sum(v * v for v in counts.values())) or 1.0


def _dot(counts: Counter[str], weights: dict[str, float]) -> float:
    total: float = sum(map(mul, counts.values(), map(weights.get, counts.keys(), repeat(0.0))))
    return total


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


@dataclass(frozen=True)
class LinearModel:
    """A logistic regression over `features` and, when `emb` is set, the text's unit MiniLM vector."""

    bias: float
    chars: dict[str, float]
    words: dict[str, float]
    emb: npt.NDArray[np.float32] | None = None

    def partial(self, f: Features) -> float:
        """The bias plus the n-gram part of the logit."""
        return self.bias + _dot(f.chars, self.chars) / f.chars_norm + _dot(f.words, self.words) / f.words_norm

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LinearModel:
        emb = raw.get("emb")
        return cls(
            bias=float(raw["bias"]),
            chars={k: float(v) for k, v in raw["chars"].items()},
            words={k: float(v) for k, v in raw["words"].items()},
            emb=None if emb is None else np.asarray(emb, dtype=np.float32),
        )


@cache
def classifiers() -> dict[str, LinearModel]:
    """The shipped classifiers: `full` (n-grams and embedding) and `ngrams` (n-grams only)."""
    raw = json.loads(resources.files("podium.guard.data").joinpath(MODEL_FILE).read_text(encoding="utf-8"))
    return {name: LinearModel.from_dict(raw[name]) for name in ("full", "ngrams")}


@cache
def attack_corpus() -> tuple[str, ...]:
    """The known attacks shipped with Podium (one per line; blank lines and `# ` comments skipped: an attack may
    itself start with `###`)."""
    raw = resources.files("podium.guard.data").joinpath("attacks.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in raw.splitlines() if line.strip() and not line.startswith("# "))


class InjectionSettings(ScannerSettings):
    """Settings of `prompt_injection`."""

    threshold: float = Field(default=0.7, ge=0, le=1)  # findings at or above this score
    embeddings: bool = True  # off: heuristics and the n-gram classifier only (no model, no torch)
    classifier: bool = True  # off: heuristics (and similarity, when on) only
    similarity: bool = False  # also score the best cosine of an embedded sentence to the attack corpus
    similarity_floor: float = Field(default=0.40, ge=0, lt=1)  # cosine mapped to score 0
    similarity_full: float = Field(default=0.64, gt=0, le=1)  # cosine mapped to score 1 (0.568 reaches 0.7)
    extra_attacks: list[str] = Field(default_factory=list, max_length=10_000)  # more known attacks (similarity)
    prefilter: bool = True  # embed only sentences the n-gram model gives at least `prefilter_floor`
    prefilter_floor: float = Field(default=0.4, ge=0, le=1)
    cache_size: int = Field(default=4096, ge=0, le=1_000_000)  # sentences whose scores are remembered
    max_segments: int = Field(default=16, ge=1, le=10_000)  # sentences embedded per text at most (the likeliest)


_corpus_vectors: dict[tuple[object, tuple[str, ...]], Vectors] = {}
_corpus_lock = threading.Lock()
# sentence -> (classifier probability, best cosine to the corpus), per (embedder, corpus): prompts repeat
_sentence_cache: dict[tuple[object, tuple[str, ...]], OrderedDict[str, tuple[float, float]]] = {}


@register
class PromptInjection(Scanner):
    """Prompt injection and jailbreak attempts: heuristics, a linear classifier over n-grams and MiniLM
    embeddings, and (optionally) similarity to known attacks."""

    name = "prompt_injection"
    description = "prompt injection and jailbreaks: heuristics + a linear classifier over n-grams and MiniLM vectors"
    stages = INPUT
    blocking = True
    Settings = InjectionSettings
    settings: InjectionSettings
    injects = ("embedder",)

    def __init__(self, settings: dict[str, Any] | None = None, embedder: Embedder | None = None):
        super().__init__(settings)
        s = self.settings
        if s.similarity_full <= s.similarity_floor:
            raise ScannerError(
                f"scanner 'prompt_injection' setting 'similarity_full' ({s.similarity_full}) must be above "
                f"'similarity_floor' ({s.similarity_floor})",
                "similarity_full",
            )
        if s.extra_attacks and not (s.similarity and s.embeddings):
            raise ScannerError(
                "scanner 'prompt_injection' setting 'extra_attacks' is used by the similarity signal only: "
                "set 'similarity: true' (and keep 'embeddings' on)",
                "extra_attacks",
            )
        self.embedder: Embedder | None = None
        if s.embeddings and (s.classifier or s.similarity):
            self.embedder = embedder if embedder is not None else fast_embedder()
        self.model: LinearModel | None = None  # scores the sentences it embeds
        self.gate: LinearModel | None = None  # scores every sentence (n-grams only)
        if s.classifier:
            self.gate = classifiers()["ngrams"]
            self.model = classifiers()["full"] if self.embedder is not None else None
        self.corpus = attack_corpus() + tuple(a.strip() for a in s.extra_attacks if a.strip())
        self._seen: OrderedDict[str, tuple[float, float]] | None = None

    def _key(self) -> tuple[object, tuple[str, ...]]:
        assert self.embedder is not None
        corpus = self.corpus if self.settings.similarity else ()
        return (getattr(self.embedder, "cache_key", id(self.embedder)), corpus)

    def _corpus_vectors(self) -> Vectors | None:
        if not self.settings.similarity or self.embedder is None:
            return None
        key = self._key()
        with _corpus_lock:
            found = _corpus_vectors.get(key)
            if found is None:
                found = _corpus_vectors[key] = self.embedder.embed(list(self.corpus))
            return found

    def warm(self) -> None:
        """Load the model (and embed the corpus) now rather than on the first request."""
        if self.embedder is not None:
            self._corpus_vectors()
            self.embedder.embed(["warm up"])

    def embeds(self, sentence: str) -> bool:
        """Whether scanning `sentence` alone would run the embedding model (before the sentence cache)."""
        s = self.settings
        if self.embedder is None:
            return False
        if self.gate is None or not s.prefilter or s.similarity:
            return True
        return _sigmoid(self.gate.partial(features(sentence))) >= s.prefilter_floor

    def _embedded_scores(self, texts: list[str], feats: list[Features | None]) -> list[tuple[float, float]]:
        """(classifier probability, best cosine to the corpus) of each text, embedding those not seen before."""
        assert self.embedder is not None
        corpus = self._corpus_vectors()
        if self._seen is None:
            with _corpus_lock:
                self._seen = _sentence_cache.setdefault(self._key(), OrderedDict())
        seen, size = self._seen, self.settings.cache_size
        with _corpus_lock:
            known = {t: seen[t] for t in texts if size and t in seen}
            for t in known:
                seen.move_to_end(t)
        missing = [i for i, t in enumerate(texts) if t not in known]
        if missing:
            vectors = self.embedder.embed([texts[i] for i in missing])
            cosines = (vectors @ corpus.T).max(axis=1) if corpus is not None and len(corpus) else None
            model = self.model
            for row, i in enumerate(missing):
                prob = 0.0
                if model is not None and model.emb is not None:
                    prob = _sigmoid(model.partial(feats[i] or features(texts[i])) + float(vectors[row] @ model.emb))
                known[texts[i]] = (prob, float(cosines[row]) if cosines is not None else 0.0)
            if size:
                with _corpus_lock:
                    seen.update((texts[i], known[texts[i]]) for i in missing)
                    while len(seen) > size:
                        seen.popitem(last=False)
        return [known[t] for t in texts]

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        s = self.settings
        best: tuple[float, int, int, str] = (0.0, 0, 0, "")
        hidden = decoded(text)
        for weight, pattern, label in HEURISTICS:
            if weight <= best[0]:
                continue
            m = pattern.search(text)
            if m is not None:
                best = (weight, m.start(), m.end(), f"heuristic: {label}")
                continue
            for a, b, plain in hidden:
                if pattern.search(plain):
                    best = (weight, a, b, f"heuristic on decoded text: {label}")
                    break
        if best[0] >= max(0.95, s.threshold) or (self.gate is None and self.embedder is None):
            return self._verdict(best)
        units = [(a, b, text[a:b]) for a, b in segments(text)]
        if len(units) > 1 and len(text) <= MAX_SEGMENT:
            units.append((0, len(text), text))
        units += hidden
        # each unit's classifier score: the n-gram model's, replaced by the full model's where it is embedded
        feats = [features(u[2]) for u in units] if self.gate is not None else []
        scores = [_sigmoid(self.gate.partial(f)) for f in feats] if self.gate is not None else [0.0] * len(units)
        labels = ["classifier (n-grams)"] * len(units)
        cosines: dict[int, float] = {}
        need = list(range(len(units)))
        if self.gate is not None:
            if s.prefilter and not s.similarity:
                need = [i for i in need if scores[i] >= s.prefilter_floor]
            need.sort(key=lambda i: -scores[i])
        if self.embedder is not None and need:
            need = need[: s.max_segments]
            scored = self._embedded_scores([units[i][2] for i in need], [feats[i] if feats else None for i in need])
            for i, (prob, cosine) in zip(need, scored, strict=True):
                if self.model is not None:
                    scores[i], labels[i] = prob, "classifier"
                cosines[i] = cosine
        if self.gate is not None and units:
            i = max(range(len(units)), key=lambda j: scores[j])
            if scores[i] > best[0]:
                best = (scores[i], units[i][0], units[i][1], labels[i])
        if s.similarity and cosines:
            i = max(cosines, key=lambda j: cosines[j])
            sim = (cosines[i] - s.similarity_floor) / (s.similarity_full - s.similarity_floor)
            if sim > best[0]:
                best = (min(sim, 1.0), units[i][0], units[i][1], f"similar to a known attack (cosine {cosines[i]:.2f})")
        return self._verdict(best)

    def _verdict(self, best: tuple[float, int, int, str]) -> list[Finding]:
        if best[0] >= self.settings.threshold:
            return [self.finding("PROMPT_INJECTION", best[1], best[2], best[0], best[3])]
        return []
