"""Metrics of retrieval-augmented answers, judged by a model (the definitions Ragas made common):

- faithfulness: the share of the answer's claims that the context supports (claims listed by the judge,
  then each checked against the context);
- answer relevance: how close the questions the answer would answer are to the real question (the judge
  writes them, an embedding model compares them: mean cosine);
- context precision: whether the useful passages come first (average precision of the judge's per-passage
  "useful for the reference answer" verdicts);
- context recall: the share of the reference answer's sentences the context supports.

Per-item verdicts are asked for as numbered `N: yes|no` lines; an answer that does not give one per item is
an error with its raw text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from podium.evals.evaluators.base import ModelError, Models, Reply, Sample, Verdict, register
from podium.evals.evaluators.judge import _model, parse_steps

_LINE = re.compile(r"^\s*(\d+)\s*[:.)-]\s*(yes|no)\b", re.IGNORECASE | re.MULTILINE)
MAX_ITEMS = 20


def yes_no(text: str, n: int) -> list[bool] | None:
    """The judge's `N: yes|no` verdicts for items 1..n, or None unless every item got one."""
    found: dict[int, bool] = {}
    for match in _LINE.finditer(text):
        i = int(match.group(1))
        if 1 <= i <= n and i not in found:
            found[i] = match.group(2).lower() == "yes"
    if len(found) != n:
        return None
    return [found[i] for i in range(1, n + 1)]


def sentences(text: str) -> list[str]:
    """A text's sentences (split after . ! ? and at line breaks)."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [p.strip() for p in parts if p.strip()][:MAX_ITEMS]


def _context(sample: Sample) -> str:
    return "\n".join(f"[{i}] {c}" for i, c in enumerate(sample.context, 1))


def _cost(replies: list[Reply]) -> tuple[int, int]:
    return sum(r.cost_micros for r in replies), sum(0 if r.cached else 1 for r in replies)


async def _verdicts(models: Models, model: str, task: str, items: list[str]) -> tuple[list[bool] | None, Reply]:
    listed = "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))
    prompt = f"{task}\n\nItems:\n{listed}\n\nFor each item answer on its own line as `N: yes` or `N: no`."
    reply = await models.chat(model, [{"role": "user", "content": prompt}], max_tokens=12 * len(items) + 20)
    return yes_no(reply.text, len(items)), reply


@dataclass
class Faithfulness:
    """Share of the answer's claims supported by the context (1 = fully grounded)."""

    name: str = "faithfulness"
    model: str | None = None
    needs: frozenset[str] = field(default=frozenset({"output", "context"}))

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        model = _model(self.model, models, "faithfulness")
        listing = await models.chat(
            model,
            [
                {
                    "role": "user",
                    "content": "List every factual claim made in this answer, one short sentence per line, "
                    f"numbered.\n\nAnswer:\n{sample.output or ''}",
                }
            ],
            max_tokens=300,
        )
        claims = parse_steps(listing.text)[:MAX_ITEMS] or sentences(sample.output or "")
        if not claims:
            return Verdict({self.name: 1.0}, explanation="the answer makes no claims", calls=0 if listing.cached else 1)
        supported, check = await _verdicts(
            models, model, f"Context:\n{_context(sample)}\n\nIs each claim supported by the context?", claims
        )
        cost, calls = _cost([listing, check])
        if supported is None:
            return Verdict(
                error="the judge did not give a yes/no per claim", raw=check.text, cost_micros=cost, calls=calls
            )
        unsupported = [c for c, ok in zip(claims, supported, strict=True) if not ok]
        return Verdict(
            {self.name: sum(supported) / len(claims)},
            explanation=f"{sum(supported)} of {len(claims)} claims supported"
            + (f"; unsupported: {'; '.join(unsupported)[:500]}" if unsupported else ""),
            cost_micros=cost,
            calls=calls,
        )


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@dataclass
class AnswerRelevance:
    """Mean cosine between the question and questions generated from the answer."""

    name: str = "answer_relevance"
    model: str | None = None
    embedding_model: str | None = None
    questions: int = 3
    needs: frozenset[str] = field(default=frozenset({"input", "output"}))

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        model = _model(self.model, models, "answer relevance")
        embedder = self.embedding_model or models.embedding_model
        if not embedder:
            raise ModelError("answer relevance needs an embedding model: set 'embedding_model' or 'embedder'")
        reply = await models.chat(
            model,
            [
                {
                    "role": "user",
                    "content": f"Write {self.questions} different questions that this answer answers, one per "
                    f"line, numbered.\n\nAnswer:\n{sample.output or ''}",
                }
            ],
            max_tokens=60 * self.questions,
        )
        asked = parse_steps(reply.text)[: self.questions]
        if not asked:
            return Verdict(error="the judge wrote no questions", raw=reply.text, calls=0 if reply.cached else 1)
        vectors = await models.embed(embedder, [sample.input_text, *asked])
        score = sum(_cosine(vectors[0], v) for v in vectors[1:]) / len(asked)
        return Verdict(
            {self.name: max(0.0, score)},
            explanation="questions from the answer: " + " | ".join(asked)[:500],
            cost_micros=reply.cost_micros,
            calls=0 if reply.cached else 1,
        )


@dataclass
class ContextPrecision:
    """Average precision of the passages judged useful for reaching the reference answer (useful first = 1)."""

    name: str = "context_precision"
    model: str | None = None
    needs: frozenset[str] = field(default=frozenset({"input", "context", "reference"}))

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        model = _model(self.model, models, "context precision")
        passages = list(sample.context)[:MAX_ITEMS]
        useful, reply = await _verdicts(
            models,
            model,
            f"Question:\n{sample.input_text}\n\nReference answer:\n{sample.reference}\n\n"
            "Is each passage useful for arriving at the reference answer?",
            passages,
        )
        cost, calls = _cost([reply])
        if useful is None:
            return Verdict(
                error="the judge did not give a yes/no per passage", raw=reply.text, cost_micros=cost, calls=calls
            )
        hits, total = 0, 0.0
        for k, ok in enumerate(useful, 1):
            if ok:
                hits += 1
                total += hits / k
        score = total / hits if hits else 0.0
        return Verdict(
            {self.name: score},
            explanation=f"useful passages: {[i for i, ok in enumerate(useful, 1) if ok]}",
            cost_micros=cost,
            calls=calls,
        )


@dataclass
class ContextRecall:
    """Share of the reference answer's sentences that the context supports."""

    name: str = "context_recall"
    model: str | None = None
    needs: frozenset[str] = field(default=frozenset({"context", "reference"}))

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        model = _model(self.model, models, "context recall")
        parts = sentences(str(sample.reference or ""))
        if not parts:
            return Verdict(error="the reference answer is empty")
        supported, reply = await _verdicts(
            models, model, f"Context:\n{_context(sample)}\n\nCan each statement be attributed to the context?", parts
        )
        cost, calls = _cost([reply])
        if supported is None:
            return Verdict(
                error="the judge did not give a yes/no per statement", raw=reply.text, cost_micros=cost, calls=calls
            )
        return Verdict(
            {self.name: sum(supported) / len(parts)},
            explanation=f"{sum(supported)} of {len(parts)} reference statements found in the context",
            cost_micros=cost,
            calls=calls,
        )


register("faithfulness", Faithfulness, "share of the answer's claims the context supports (judge)")
register("answer_relevance", AnswerRelevance, "cosine of the question to questions generated from the answer")
register("context_precision", ContextPrecision, "average precision of passages useful for the reference (judge)")
register("context_recall", ContextRecall, "share of the reference's sentences the context supports (judge)")
