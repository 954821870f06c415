"""The chains domain's `ChainServer` for the gateway: `"model": "chain:support-bot@prod"` on
`/v1/chat/completions` runs that version on the caller's key and answers as a chat completion.

Inputs come from the request: an `inputs` object (an extension field) when given; otherwise the chat's
`messages` fill a declared `messages` input, and the last user message fills a declared `question`,
`query`, `input` or `message` input, or the chain's only required input. A chain whose inputs cannot be
filled that way answers 400 naming them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from podium.chains import service
from podium.chains.spec import ChainSpec
from podium.core.errors import PodiumError
from podium.core.identity import Actor, Principal
from podium.core.platform import Platform
from podium.gateway.chaining import ChainAnswer
from podium.gateway.errors import GatewayError
from podium.gateway.service import Gateway

TEXT_INPUTS = ("question", "query", "input", "message")


def _last_user(messages: Any) -> str | None:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts: the text ones, joined
                return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return None


def inputs_from(chain: ChainSpec, body: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs for a chat request (see the module's docstring)."""
    given = body.get("inputs")
    if given is not None:
        if not isinstance(given, dict):
            raise GatewayError(400, "'inputs' must be an object of the chain's inputs", param="inputs")
        return given
    declared = chain.inputs
    inputs: dict[str, Any] = {}
    if "messages" in declared:
        inputs["messages"] = body.get("messages")
    text = _last_user(body.get("messages"))
    named = [name for name in TEXT_INPUTS if name in declared]
    required = [name for name, spec in declared.items() if "default" not in spec and name not in inputs]
    target = named[0] if named else (required[0] if len(required) == 1 else None)
    if target is not None and text is not None:
        inputs[target] = text
    missing = [name for name in required if name not in inputs]
    if missing:
        raise GatewayError(
            400,
            f"the chain needs the input(s) {', '.join(missing)}, which a chat request cannot fill: pass them as"
            " 'inputs' in the request (an object beside 'messages')",
            code="invalid_inputs",
            param="inputs",
        )
    return inputs


@dataclass
class ChainModels:
    """Runs chains for the gateway (plugged in by the chains domain's setup)."""

    platform: Platform
    gateway: Gateway

    async def check(self, principal: Principal, ref: str) -> None:
        try:
            await asyncio.to_thread(service.get_version, self.platform, Actor(principal), ref)
        except PodiumError as exc:
            raise GatewayError.from_podium(exc) from None

    async def complete(
        self, principal: Principal, ref: str, body: dict[str, Any], origin: str = "gateway"
    ) -> ChainAnswer:
        actor = Actor(principal)
        try:
            run = await service.run(
                self.platform,
                actor,
                ref,
                lambda chain: inputs_from(chain, body),  # once the version is read, in the same session
                source="eval" if origin == "eval" else "gateway",
                gateway=self.gateway,
            )
        except PodiumError as exc:
            error = GatewayError.from_podium(exc)
            if error.param is None:
                error.param = "model"
            raise error from None
        if run.status != "ok":
            raise GatewayError(422, run.error or "the chain failed", code="chain_failed", param="model")
        output = run.output
        content = output if isinstance(output, str) else orjson.dumps(output, default=str).decode()
        return ChainAnswer(
            content, run.ref, run.id, run.trace_id, run.prompt_tokens, run.completion_tokens, run.cost_micros
        )


__all__ = ["ChainModels", "inputs_from"]
