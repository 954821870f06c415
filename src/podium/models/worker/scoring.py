"""Prompt scoring: the log-probability of each prompt token given the ones before it (OpenAI's legacy
`echo` with `logprobs` on text completions, used for perplexity and for ranking continuations).

It runs as an engine `Job`, on the engine thread, through the backend that generates: the fast path's
own prefill (int8 or fp32, so a prompt's scores are the numbers generation itself sees) in a cache slot
the engine keeps free for jobs, or for the transformers fallback the model with a cache of its own. The
prompt goes through in chunks, one per engine iteration, so sequences being generated keep moving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from podium.models.worker.engine import JobSteps
from podium.models.worker.fastllama import FastLlama

LOGIT_ELEMENTS = 1 << 25  # a chunk's logits hold at most this many floats (128 MB), whatever the vocabulary


@dataclass
class PromptScores:
    """Per prompt token: its log-probability and the `top` likeliest tokens at its position, as
    (token id, log-probability), likeliest first. The first token has neither (nothing predicts it)."""

    logprobs: list[float | None] = field(default_factory=list)
    top: list[list[tuple[int, float]] | None] = field(default_factory=list)


Forward = Callable[[list[int], int], torch.Tensor]  # (tokens, first position) -> logits [tokens, vocab]


def _fast_forward(fast: FastLlama, slot: int) -> Forward:
    def forward(tokens: list[int], start: int) -> torch.Tensor:
        return fast.prefill(tokens, slot, start, all_logits=True)

    return forward


def _hf_forward(model: Any) -> Forward:
    from transformers import DynamicCache

    cache = DynamicCache()

    def forward(tokens: list[int], start: int) -> torch.Tensor:
        ids = torch.tensor([tokens])
        positions = torch.arange(start, start + len(tokens)).unsqueeze(0)
        out = model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True)
        logits: torch.Tensor = out.logits[0]
        return logits

    return forward


def score_prompt(backend: Any, model: Any, ids: list[int], top: int, *, slot: int, chunk: int) -> JobSteps:
    """The steps of scoring `ids` (an engine job's `make`, with `backend`, `model` and `ids` bound);
    returns `PromptScores` with `top` alternatives per position (0: none)."""
    scores = PromptScores()
    if not ids:
        return scores
    scores.logprobs.append(None)
    scores.top.append(None)
    forward = _fast_forward(backend, slot) if isinstance(backend, FastLlama) else _hf_forward(model)
    vocab = int(getattr(model.config, "vocab_size", 0) or 1)
    rows = max(16, min(chunk, LOGIT_ELEMENTS // vocab))
    inputs = ids[:-1]  # the last token's logits would score the token after the prompt
    for start in range(0, len(inputs), rows):
        part = inputs[start : start + rows]
        targets = torch.tensor(ids[start + 1 : start + 1 + len(part)]).unsqueeze(1)
        with torch.inference_mode():
            logprobs = torch.log_softmax(forward(part, start).float(), dim=-1)
            scores.logprobs.extend(float(v) for v in logprobs.gather(1, targets).squeeze(1).tolist())
            if top > 0:
                values, order = logprobs.topk(min(top, logprobs.shape[-1]), dim=-1)
                for ids_row, values_row in zip(order.tolist(), values.tolist(), strict=True):
                    scores.top.append([(int(i), float(v)) for i, v in zip(ids_row, values_row, strict=True)])
            else:
                scores.top.extend([] for _ in part)
        yield len(part)
    return scores
