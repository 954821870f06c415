"""Guardrail policies as the gateway sees them: a `GuardHook` opens a `CallGuard` for a call a policy applies to,
which checks the request before it goes upstream and the answer before the client sees it, and says what it
decided, for the call's trace.

The gateway does not import the guard domain: guard builds on the gateway (its `llm_judge` scanner calls models
through it), so the guard domain implements these protocols and plugs its hook in at setup (`Gateway.guard`),
as prompts plug in their resolver. A refusal is a `GuardrailViolation` (a 400 `guardrail_violation` on `/v1`,
an error event ending a stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from podium.core.identity import Principal
from podium.core.ids import new_id

GUARD_ORIGIN = "guard"  # calls a scanner makes itself (embeddings, a judge): no policy applies to them


@dataclass
class StageRun:
    """What one stage (`input` or `output`) of a policy decided: each scanner's decision (scanner, action,
    findings with type, score and span but never the value, latency, error), whether it blocked, and when."""

    stage: str
    started_at: datetime
    ended_at: datetime
    latency_ms: float = 0.0
    blocked: bool = False
    decisions: list[dict[str, Any]] = field(default_factory=list)


class StreamGuard(Protocol):
    """Checks a streamed answer piece by piece: `feed` takes the upstream's new text and returns the text to send
    now (it may hold some back: a placeholder cut in two, a word still arriving); `close` returns the rest."""

    async def feed(self, text: str) -> str:
        """The text to send for this piece; `GuardrailViolation` ends the stream."""

    async def close(self) -> str:
        """The text held back, checked; `GuardrailViolation` ends the stream."""


class CallGuard(Protocol):
    """One call's policy: made by `GuardHook.open`, kept on the call until it is recorded."""

    policy: str

    async def check_input(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """The request to send upstream (the same object, or a redacted copy); `GuardrailViolation` refuses it."""

    async def check_output(self, result: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed answer for the client (actions applied, placeholders restored); the upstream's answer
        is left as it was (it is what the trace and the cache keep). `GuardrailViolation` refuses it."""

    def stream(self) -> StreamGuard:
        """A checker for the streamed answer."""

    def stages(self) -> list[StageRun]:
        """What each stage decided so far."""

    def meta(self) -> dict[str, Any]:
        """The summary the call's trace metadata keeps under `guard` (policy, stages, decisions)."""

    def tags(self) -> list[str]:
        """Tags for the call's trace (`guard` when a scanner found something or failed: what findings lists)."""


class GuardHook(Protocol):
    """Finds the policy a call falls under, from memory (no database round trip on the hot path)."""

    def open(self, principal: Principal, route: str, kind: str, origin: str = "gateway") -> CallGuard | None:
        """The call's guard, or None when no policy applies to the caller's key, the route or the project, or
        the one that does leaves out calls of this `origin` (the trace's source: gateway, chain, batch, ...)."""


def guard_spans(guard: CallGuard, trace_id: str, parent_id: str | None) -> list[dict[str, Any]]:
    """One `guardrail` span per stage a policy ran, for the call's trace (the writer's span shape)."""
    spans = []
    for run in guard.stages():
        findings = sum(len(d.get("findings") or ()) for d in run.decisions)
        errors = [d["error"] for d in run.decisions if d.get("error")]
        spans.append(
            {
                "id": new_id("spn"),
                "trace_id": trace_id,
                "parent_id": parent_id,
                "kind": "guardrail",
                "name": f"guard {guard.policy} {run.stage}",
                "status": "error" if run.blocked else "ok",
                "start_time": run.started_at,
                "end_time": run.ended_at,
                "ttft_ms": None,
                "model": None,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_micros": 0,
                "error": "blocked" if run.blocked else ("; ".join(errors)[:500] if errors else None),
                "prompt_version_id": None,
                "model_version_id": None,
                "dataset_version_id": None,
                "attributes": {
                    "policy": guard.policy,
                    "stage": run.stage,
                    "blocked": run.blocked,
                    "findings": findings,
                    "latency_ms": round(run.latency_ms, 3),
                    "decisions": run.decisions,
                },
                "input": None,
                "output": None,
            }
        )
    return spans
