"""`llm_judge`: a policy written in words, judged by any model the gateway serves.

The scanner asks the model whether the text violates the policy and expects an answer starting with
`VIOLATION` or `OK` (a reason may follow). It reaches models only through the `ModelCaller` it is given, so
the gateway can hand it the in-process gateway, and tests and scripts any OpenAI-compatible server
(`OpenAICaller`). An answer that is neither is an error (`JudgeError`), never a silent pass: the policy's
`on_error` decides what happens then.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import httpx
from pydantic import Field

from podium.guard.base import BOTH, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register

_VERDICT = re.compile(r"^\W*(VIOLATION|UNSAFE|YES|OK|SAFE|NO)\b", re.IGNORECASE)
_VIOLATES = {"VIOLATION", "UNSAFE", "YES"}


class JudgeError(RuntimeError):
    """The judge model failed or answered something that is not a verdict."""


class ModelCaller(Protocol):
    """Chat calls to a model by name; returns the answer's text; raises on failure."""

    async def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> str:
        """The text of the model's answer."""
        ...


class OpenAICaller:
    """A `ModelCaller` over any OpenAI-compatible `/v1/chat/completions` (a Podium server, a local engine)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout

    async def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> str:
        body = {"model": model, "messages": messages, **params}
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            try:
                r = await client.post(f"{self.base_url}/chat/completions", json=body, headers=self.headers)
            except httpx.HTTPError as exc:
                raise JudgeError(f"the judge model could not be reached: {exc}") from None
        if r.status_code != 200:
            raise JudgeError(f"the judge model answered HTTP {r.status_code}: {r.text[:300]}")
        try:
            return str(r.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"the judge model's answer is not a chat completion: {r.text[:300]}") from None


class JudgeSettings(ScannerSettings):
    """Settings of `llm_judge`."""

    model: str = Field(min_length=1, max_length=200)
    policy: str = Field(min_length=3, max_length=4000)
    max_tokens: int = Field(default=40, ge=1, le=1000)
    max_chars: int = Field(default=4000, ge=100, le=100_000)  # of the text shown to the judge


def judge_prompt(policy: str, text: str, context: ScanContext) -> list[dict[str, Any]]:
    """The messages sent to the judge."""
    shown = f"Prompt:\n{context.prompt}\n\nAnswer to check:\n{text}" if context.prompt else f"Text to check:\n{text}"
    return [
        {
            "role": "system",
            "content": "You are a strict content-policy checker. Reply with VIOLATION or OK as the first word, "
            "then a short reason.",
        },
        {"role": "user", "content": f"Policy:\n{policy}\n\n{shown}\n\nDoes the text violate the policy?"},
    ]


def parse_verdict(answer: str) -> bool:
    """True for a violation, False for OK; `JudgeError` for anything else."""
    m = _VERDICT.match(answer.strip())
    if m is None:
        raise JudgeError(f"the judge's answer is not a verdict (VIOLATION or OK): {answer[:200]!r}")
    return m.group(1).upper() in _VIOLATES


@register
class LlmJudge(Scanner):
    """A written policy judged by a model through the injected caller."""

    name = "llm_judge"
    description = "a policy in words, judged by any gateway model (VIOLATION or OK)"
    stages = BOTH
    whole = True
    Settings = JudgeSettings
    settings: JudgeSettings
    injects = ("caller",)

    def __init__(self, settings: dict[str, Any] | None = None, caller: ModelCaller | None = None):
        super().__init__(settings)
        self.caller = caller

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        raise ScannerError("scanner 'llm_judge' calls a model: await scan() instead of check()")

    async def scan(self, text: str, context: ScanContext | None = None) -> list[Finding]:
        if self.caller is None:
            raise ScannerError(
                "scanner 'llm_judge' needs a model caller: it runs where the gateway is (the server), or give it "
                "an OpenAICaller",
                "model",
            )
        context = context or ScanContext()
        shown = text[: self.settings.max_chars]
        answer = await self.caller.chat(
            self.settings.model,
            judge_prompt(self.settings.policy, shown, context),
            max_tokens=self.settings.max_tokens,
            temperature=0,
        )
        if parse_verdict(answer):
            reason = " ".join(answer.split())[:200]
            return [self.finding("POLICY_VIOLATION", 0, len(text), 1.0, reason)]
        return []
