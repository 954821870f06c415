"""LLM judges: G-Eval scoring and pairwise preference.

G-Eval (Liu et al., 2023): the criteria are turned once into evaluation steps by the judge model, and those
steps are stored (the eval cache's memo) so every later row and run uses the same ones; each row is then
scored by form filling, "score from 1 to N". When the judge returns log-probabilities the score is the
probability-weighted mean over the score tokens at the first position that has any (a 3 at 60% and a 4 at
40% give 3.4), which is finer than the sampled digit; otherwise the first integer in range in the text.
An answer with no score is an error carrying the raw text, never a zero.

Pairwise preference asks the judge which of two answers is better in both orders (A/B then B/A), so a judge
that favours the first position cancels out: the score is 1 if the output wins both, 0 if it loses both, and
0.5 for a tie or a split verdict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from podium.evals.evaluators.base import ModelError, Models, Reply, Sample, Verdict, register

MAX_STEPS = 8


def _model(configured: str | None, models: Models, what: str) -> str:
    model = configured or models.judge_model
    if not model:
        raise ModelError(f"{what} needs a judge model: set 'model' on the evaluator or 'judge' in the suite")
    return model


def _context_block(sample: Sample) -> str:
    if not sample.context:
        return ""
    return "\n\nContext:\n" + "\n".join(f"- {c}" for c in sample.context)


def _reference_block(sample: Sample) -> str:
    if sample.reference is None:
        return ""
    return f"\n\nReference answer:\n{sample.reference}"


def parse_steps(text: str) -> list[str]:
    """Evaluation steps from the judge's list: one per non-empty line, numbering and bullets removed."""
    steps = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip()
        if line:
            steps.append(line)
    return steps[:MAX_STEPS]


def weighted_score(
    top_logprobs: tuple[dict[str, float], ...], low: int, high: int
) -> tuple[float, dict[int, float]] | None:
    """The probability-weighted mean score over score tokens at the first generated position that offers
    any, with the normalised distribution used; None when no position does."""
    for position in top_logprobs:
        mass: dict[int, float] = {}
        for token, logprob in position.items():
            t = token.strip()
            if t.isdigit() and low <= int(t) <= high and math.isfinite(logprob):
                mass[int(t)] = mass.get(int(t), 0.0) + math.exp(logprob)
        total = sum(mass.values())
        if total > 0:
            dist = {k: v / total for k, v in sorted(mass.items())}
            return sum(k * p for k, p in dist.items()), dist
    return None


def text_score(text: str, low: int, high: int) -> int | None:
    """The first integer within [low, high] in the judge's text."""
    for match in re.finditer(r"\d+", text):
        value = int(match.group())
        if low <= value <= high:
            return value
    return None


@dataclass
class GEval:
    """G-Eval: criteria -> stored evaluation steps -> a form-filled score, normalised to [0, 1]."""

    criteria: str
    name: str = "geval"
    model: str | None = None
    scale: int = 5
    steps: list[str] | None = None
    threshold: float | None = None  # normalised score at or above which the label is "pass"
    needs: frozenset[str] = field(default=frozenset({"input", "output"}))

    def __post_init__(self) -> None:
        if not isinstance(self.criteria, str) or not self.criteria.strip():
            raise ValueError("'criteria' must say what a good answer is")
        if not isinstance(self.scale, int) or not 2 <= self.scale <= 10:
            raise ValueError("'scale' must be an integer from 2 to 10")

    async def _steps(self, model: str, models: Models) -> list[str]:
        if self.steps:
            return list(self.steps)

        async def make() -> list[str]:
            reply = await models.chat(
                model,
                [
                    {
                        "role": "user",
                        "content": "You will grade answers against these criteria:\n"
                        f"{self.criteria}\n\nWrite 3 to 5 short evaluation steps a grader should follow, "
                        "one per line, numbered.",
                    }
                ],
                max_tokens=200,
            )
            steps = parse_steps(reply.text)
            if not steps:
                raise ModelError(f"the judge wrote no evaluation steps (it answered {reply.text[:200]!r})")
            return steps

        value = await models.remember(f"geval-steps\x00{model}\x00{self.criteria}", make)
        return list(value)

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        model = _model(self.model, models, "G-Eval")
        steps = await self._steps(model, models)
        listed = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        prompt = (
            f"Criteria:\n{self.criteria}\n\nEvaluation steps:\n{listed}\n\n"
            f"Input:\n{sample.input_text}{_reference_block(sample)}{_context_block(sample)}\n\n"
            f"Answer to grade:\n{sample.output or ''}\n\n"
            f"Following the steps, grade the answer from 1 to {self.scale}. Reply with the number only."
        )
        reply = await models.chat(
            model, [{"role": "user", "content": prompt}], max_tokens=5, logprobs=True, top_logprobs=10
        )
        return self.verdict(reply)

    def verdict(self, reply: Reply) -> Verdict:
        """The score a judge's reply gives (weighted when it carries log-probs)."""
        weighted = weighted_score(reply.top_logprobs, 1, self.scale)
        if weighted is not None:
            raw, dist = weighted
            how = "probability-weighted over " + ", ".join(f"{k}: {p:.2f}" for k, p in dist.items())
        else:
            parsed = text_score(reply.text, 1, self.scale)
            if parsed is None:
                return Verdict(
                    error=f"the judge's answer has no score from 1 to {self.scale}",
                    raw=reply.text,
                    cost_micros=reply.cost_micros,
                    calls=0 if reply.cached else 1,
                )
            raw, how = float(parsed), "parsed from the text"
        score = (raw - 1) / (self.scale - 1)
        label = None if self.threshold is None else ("pass" if score >= self.threshold else "fail")
        return Verdict(
            {self.name: score, f"{self.name}_raw": raw},
            label=label,
            explanation=f"{raw:.2f} of {self.scale} ({how})",
            cost_micros=reply.cost_micros,
            raw=reply.text,
            calls=0 if reply.cached else 1,
        )


_CHOICE = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)


def parse_choice(text: str) -> str | None:
    """'A', 'B' or 'tie' from a pairwise judge's answer (the first one named)."""
    match = _CHOICE.search(text)
    if match is None:
        return None
    word = match.group(1)
    return "tie" if word.lower() == "tie" else word.upper()


@dataclass
class Pairwise:
    """Pairwise preference of the output over another answer (the reference, or a row field named by
    `against`), judged in both orders to cancel position bias."""

    criteria: str = "Which answer is more helpful, correct and clear?"
    name: str = "pairwise"
    model: str | None = None
    against: str = "reference"
    needs: frozenset[str] = field(default=frozenset({"input", "output"}))

    def __post_init__(self) -> None:
        if self.against == "reference":
            self.needs = frozenset({"input", "output", "reference"})

    def _other(self, sample: Sample) -> str:
        other = sample.reference if self.against == "reference" else sample.inputs.get(self.against)
        if other is None:
            raise ModelError(f"pairwise: this row has no {self.against!r} to compare with")
        return str(other)

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        model = _model(self.model, models, "pairwise preference")
        other = self._other(sample)
        replies: list[Reply] = []
        choices: list[str | None] = []
        for first, second in ((sample.output or "", other), (other, sample.output or "")):
            prompt = (
                f"{self.criteria}\n\nQuestion:\n{sample.input_text}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\n"
                "Reply with exactly one of: A, B, tie."
            )
            reply = await models.chat(model, [{"role": "user", "content": prompt}], max_tokens=5)
            replies.append(reply)
            choices.append(parse_choice(reply.text))
        cost = sum(r.cost_micros for r in replies)
        calls = sum(0 if r.cached else 1 for r in replies)
        if None in choices:
            raw = " | ".join(r.text for r in replies)
            return Verdict(error="the judge did not answer A, B or tie", raw=raw, cost_micros=cost, calls=calls)
        # the output is A in the first order and B in the second
        wins = (choices[0] == "A") + (choices[1] == "B")
        losses = (choices[0] == "B") + (choices[1] == "A")
        score = 1.0 if wins == 2 else 0.0 if losses == 2 else 0.5
        label = "win" if score == 1.0 else "loss" if score == 0.0 else "tie"
        return Verdict(
            {self.name: score},
            label=label,
            explanation=f"output first: {choices[0]}; output second: {choices[1]}",
            cost_micros=cost,
            calls=calls,
        )


register("geval", GEval, "LLM-as-judge (G-Eval): criteria -> stored steps -> a 1..N score, log-prob weighted")
register("pairwise", Pairwise, "pairwise preference over the reference (or a field), judged in both orders")
