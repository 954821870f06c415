"""Chains served as models: a chat request with `"model": "chain:support-bot@prod"` runs that chain version
and answers in OpenAI's shape, so any OpenAI client calls a chain.

The gateway does not import the chains domain, which builds on it: that domain plugs a `ChainServer` in at
setup, as the prompts domain plugs in its resolver. The run is its own trace (the chain's); the answer
carries its id in `x-podium-trace-id`, the run in `x-podium-chain-run` and the version in
`x-podium-chain-version`, and its usage is that of the run's model calls together.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from podium.core.identity import Principal
from podium.core.ids import new_id

PREFIX = "chain:"


@dataclass(frozen=True)
class ChainAnswer:
    """How a chain run served as a model ended."""

    content: str
    ref: str  # name@version
    run_id: str
    trace_id: str
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int = 0

    def headers(self) -> dict[str, str]:
        return {
            "x-podium-trace-id": self.trace_id,
            "x-podium-chain-run": self.run_id,
            "x-podium-chain-version": self.ref,
        }


class ChainServer(Protocol):
    """Runs a chain for a chat request on behalf of a key (a `GatewayError` says why not: 404 unknown chain,
    400 inputs it cannot take, 422 a step that failed). `origin` is the caller's kind (`gateway` for `/v1`,
    `eval` for an evaluation's target), recorded on the run."""

    async def complete(
        self, principal: Principal, ref: str, body: dict[str, Any], origin: str = "gateway"
    ) -> ChainAnswer: ...

    async def check(self, principal: Principal, ref: str) -> None:
        """Whether `ref` names a chain version the key may run (a `GatewayError` if not)."""
        ...


def is_chain(body: dict[str, Any]) -> bool:
    """Whether a request names a chain as its model."""
    model = body.get("model")
    return isinstance(model, str) and model.startswith(PREFIX)


def completion(body: dict[str, Any], answer: ChainAnswer) -> dict[str, Any]:
    """The answer as a `chat.completion` object."""
    return {
        "id": "chatcmpl-" + new_id("chn").split("_", 1)[1].lower(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        },
    }


async def chunks(body: dict[str, Any], answer: ChainAnswer) -> AsyncIterator[dict[str, Any] | None]:
    """The answer as `chat.completion.chunk` objects: the role, the whole text (a chain's answer is known only
    once its last step ends), the finish reason, then the usage if the client asked (`stream_options`)."""
    whole = completion(body, answer)
    base = {"id": whole["id"], "object": "chat.completion.chunk", "created": whole["created"], "model": whole["model"]}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {"content": answer.content}, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        yield {**base, "choices": [], "usage": whole["usage"]}


__all__ = ["PREFIX", "ChainAnswer", "ChainServer", "chunks", "completion", "is_chain"]
