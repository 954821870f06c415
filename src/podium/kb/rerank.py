"""Re-ranking of retrieved chunks by a model through the gateway (LlamaIndex's LLM re-ranker and a
bi-encoder re-scorer are the anchors users know).

- A **chat** model judges each candidate: one call per chunk, at most `CONCURRENCY` at once, asking whether
  the passage helps answer the query, answered `yes` or `no` in one token. With log-probabilities the score is
  the probability of `yes` among the first token's alternatives; without, 1 for a `yes` and 0 otherwise.
- An **embedding** model re-scores each candidate by the cosine of the query's and the chunk's embeddings (a
  larger or domain-tuned embedder than the index's), in one call.

The `k` best by that score are kept (ties keep the retrieval's order); each hit carries it as `rerank`.
A candidate the judge fails on keeps score 0 rather than failing the search; if every judgement fails, the
search fails with the judge's error.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson

from podium.core.errors import PodiumError, ServiceUnavailable
from podium.core.identity import Principal
from podium.gateway.errors import GatewayError
from podium.gateway.retrieval import MAX_CANDIDATES as MAX_CANDIDATES
from podium.gateway.service import Gateway, Incoming
from podium.kb.index import Hit

ORIGIN = "kb"
CONCURRENCY = 8
MAX_PASSAGE = 4000  # characters of a chunk shown to a judge
JUDGE_SYSTEM = (
    "You judge search results. Given a query and a passage, answer with one word: yes if the passage helps "
    "answer the query, no if it does not."
)


def _judge_body(model: str, query: str, text: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Query: {query}\n\nPassage: {text[:MAX_PASSAGE]}\n\nAnswer yes or no."},
        ],
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 5,
    }


def judged(answer: Any) -> float:
    """P(yes) from a judge's answer: the first token's alternatives when log-probs came, else its text."""
    choice = answer.get("choices", [{}])[0] if isinstance(answer, dict) else {}
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice, dict) else None
    if isinstance(content, list) and content and isinstance(content[0], dict):
        tops = content[0].get("top_logprobs") or [content[0]]
        yes = no = 0.0
        for top in tops:
            token = str(top.get("token", "")).strip().lower()
            p = math.exp(float(top.get("logprob", -math.inf)))
            if token.startswith("yes"):
                yes += p
            elif token.startswith("no"):
                no += p
        if yes + no > 0:
            return yes / (yes + no)
    message = choice.get("message") if isinstance(choice, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    return 1.0 if isinstance(text, str) and text.strip().lower().startswith("yes") else 0.0


async def _call(gateway: Gateway, principal: Principal, kind: str, body: dict[str, Any]) -> Any:
    raw = orjson.dumps(body)
    answer = await gateway.handle(
        principal, Incoming(kind=kind, body=body, body_bytes=len(raw), raw=raw), origin=ORIGIN
    )
    if answer.status >= 400 or not isinstance(answer.body, dict):
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        message = error.get("message") if isinstance(error, dict) else "the call failed"
        raise ServiceUnavailable(f"re-ranking model {body['model']!r} failed: {message}")
    return answer.body


async def _judge_all(gateway: Gateway, principal: Principal, model: str, query: str, hits: list[Hit]) -> list[float]:
    slots = asyncio.Semaphore(CONCURRENCY)
    failures: list[PodiumError] = []

    async def one(hit: Hit) -> float:
        async with slots:
            try:
                return judged(await _call(gateway, principal, "chat", _judge_body(model, query, hit.text)))
            except PodiumError as exc:
                failures.append(exc)
                return 0.0

    scores = list(await asyncio.gather(*(one(h) for h in hits)))
    if hits and len(failures) == len(hits):
        raise failures[0]
    return scores


async def _cosines(gateway: Gateway, principal: Principal, model: str, query: str, hits: list[Hit]) -> list[float]:
    body = {"model": model, "input": [query, *(h.text[:MAX_PASSAGE] for h in hits)]}
    answer = await _call(gateway, principal, "embedding", body)
    data = sorted(answer.get("data", []), key=lambda d: d.get("index", 0))
    vectors = [d.get("embedding") for d in data]
    if len(vectors) != len(hits) + 1 or not all(isinstance(v, list) and v for v in vectors):
        raise ServiceUnavailable(f"re-ranking model {model!r} did not return one embedding per text")
    q = vectors[0]
    qn = math.sqrt(sum(x * x for x in q)) or 1.0
    out = []
    for v in vectors[1:]:
        vn = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append(sum(a * b for a, b in zip(q, v, strict=False)) / (qn * vn))
    return out


async def rerank(gateway: Gateway, principal: Principal, model: str, query: str, hits: list[Hit], k: int) -> list[Hit]:
    """The `k` best of `hits` by `model`'s relevance scores (a chat model judges, an embedding model re-scores
    by cosine); `GatewayError` if the model cannot be used for re-ranking."""
    try:
        await gateway.check_model(principal, "chat", model)
        kind = "chat"
    except GatewayError:
        try:
            await gateway.check_model(principal, "embedding", model)
        except GatewayError as exc:
            raise GatewayError(
                400,
                f"re-ranking model {model!r} cannot be used: {exc.message}",
                code="invalid_retrieval",
                param="retrieval.rerank.model",
            ) from None
        kind = "embedding"
    scorer = _judge_all if kind == "chat" else _cosines
    scores = await scorer(gateway, principal, model, query, hits)
    order = sorted(range(len(hits)), key=lambda i: -scores[i])  # stable: ties keep the retrieval's order
    return [hits[i].model_copy(update={"rerank": scores[i]}) for i in order[:k]]
