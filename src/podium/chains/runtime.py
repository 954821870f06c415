"""The chain engine's `Runtime` on a running server: model calls and retrieval through the in-process gateway
on the caller's key, tools from the process's registry, guardrails of the gateway's kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from podium.chains.engine import ChatResult, StepError, ToolInfo
from podium.chains.tools import ToolFailed, ToolRegistry
from podium.core.errors import NotFound
from podium.core.identity import Principal
from podium.gateway.dispatch import TraceParent
from podium.gateway.errors import GatewayError
from podium.gateway.guardrails import GuardrailViolation, guardrail_class
from podium.gateway.retrieval import parse_spec
from podium.gateway.service import Gateway, Incoming

ORIGIN = "chain"  # the source of the trace parts a run's model calls leave


class ApprovalGate(Protocol):
    """Where a run asks a person to approve a tool call, and waits for the answer."""

    async def request(self, step: str, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]: ...


def _error(body: Any, status: int) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f"{body['error'].get('message') or 'the call failed'} (HTTP {status})"
    return f"the call failed (HTTP {status})"


@dataclass
class GatewayRuntime:
    """Steps' outside work for one run, as `principal`."""

    gateway: Gateway
    principal: Principal
    tools: ToolRegistry
    approvals: ApprovalGate | None = None

    async def chat(self, body: dict[str, Any], parent: TraceParent) -> ChatResult:
        raw = orjson.dumps(body)
        answer = await self.gateway.handle(
            self.principal, Incoming("chat", body, len(raw)), origin=ORIGIN, parent=parent
        )
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise StepError(f"the model call failed: {_error(answer.body, answer.status)}")
        choices = answer.body.get("choices") or []
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise StepError("the model's answer has no message")
        calls = message.get("tool_calls") or []
        call = answer.call
        return ChatResult(
            content=message.get("content") or "",
            tool_calls=[c for c in calls if isinstance(c, dict)],
            prompt_tokens=call.prompt_tokens if call else 0,
            completion_tokens=call.completion_tokens if call else 0,
            cost_micros=call.cost_micros if call else 0,
            message={k: v for k, v in message.items() if k in ("role", "content", "tool_calls")},
        )

    async def retrieve(
        self, kb: str, query: str, k: int, mode: str, filters: dict[str, Any] | None, parent: TraceParent
    ) -> tuple[str, list[dict[str, Any]]]:
        retriever = self.gateway.retriever
        if retriever is None:
            raise StepError("knowledge bases are not served here (the kb domain is not installed)")
        try:
            spec = parse_spec({"kb": kb, "k": k, "mode": mode, **({"filter": filters} if filters else {})})
            found = await retriever.retrieve(self.principal, spec, query)
        except GatewayError as exc:
            raise StepError(exc.message) from None
        return found.ref, found.hits

    def tool(self, name: str) -> ToolInfo:
        try:
            t = self.tools.get(name)
        except NotFound as exc:
            raise StepError(exc.message) from None
        return ToolInfo(t.name, t.definition(), t.requires_approval)

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        try:
            t = self.tools.get(name)
            return await t(arguments, timeout)
        except NotFound as exc:
            raise StepError(exc.message) from None
        except ToolFailed as exc:
            raise StepError(str(exc)) from None

    async def guard(self, kind: str, settings: dict[str, Any], text: str) -> str:
        try:
            await guardrail_class(kind)(settings).check_request({}, text)
        except GuardrailViolation as exc:
            raise StepError(exc.message) from None
        except ValueError as exc:
            raise StepError(str(exc)) from None
        return text

    async def approve(self, step: str, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        if self.approvals is None:
            raise StepError(f"tool {tool!r} needs a person's approval, which this run cannot wait for")
        return await self.approvals.request(step, tool, arguments)


__all__ = ["ORIGIN", "GatewayRuntime"]
