"""Evaluators that read a model's numbers rather than its words: perplexity under a local model (from the
prompt log-probabilities a completion with `echo` returns), and embedding cosine similarity to the reference
(the built-in MiniLM by default)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from podium.evals.evaluators.base import ModelError, Models, Sample, Verdict, register
from podium.evals.evaluators.rag import _cosine

DEFAULT_EMBEDDER = "minilm-l6-v2"


@dataclass
class Perplexity:
    """exp(-mean log p) of the output's tokens under `model` (lower is more fluent / more expected)."""

    model: str
    name: str = "perplexity"
    of: str = "output"  # output, or input
    needs: frozenset[str] = field(default=frozenset({"output"}))

    def __post_init__(self) -> None:
        if self.of not in ("output", "input"):
            raise ValueError("'of' is 'output' or 'input'")

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        text = (sample.output or "") if self.of == "output" else sample.input_text
        if not text.strip():
            return Verdict(error=f"the {self.of} is empty")
        reply = await models.complete(self.model, text, echo=True, logprobs=0, max_tokens=0)
        values = [v for v in reply.prompt_logprobs if v is not None]
        if not values:
            raise ModelError(f"{self.model} returned no prompt log-probabilities (it must support echo with logprobs)")
        mean = sum(values) / len(values)
        return Verdict(
            {self.name: math.exp(-mean)},
            explanation=f"{len(values)} tokens, mean log-prob {mean:.3f}",
            calls=0 if reply.cached else 1,
            cost_micros=reply.cost_micros,
        )


@dataclass
class EmbeddingSimilarity:
    """Cosine similarity of the output's and the reference's embeddings."""

    name: str = "embedding_similarity"
    model: str | None = None
    needs: frozenset[str] = field(default=frozenset({"output", "reference"}))

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        model = self.model or models.embedding_model or DEFAULT_EMBEDDER
        references = sample.reference if isinstance(sample.reference, list) else [sample.reference]
        texts = [sample.output or "", *(str(r) for r in references)]
        vectors = await models.embed(model, texts)
        best = max(_cosine(vectors[0], v) for v in vectors[1:])
        return Verdict({self.name: best}, explanation=f"cosine under {model}")


register("perplexity", Perplexity, "perplexity of the output under a local model (echoed prompt log-probs)")
register("embedding_similarity", EmbeddingSimilarity, "cosine similarity of output and reference embeddings")
