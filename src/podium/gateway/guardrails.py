"""Guardrail hooks: checks a route runs on each request before it goes upstream and on each response
before it reaches the client. `regex_deny` ships here; other kinds plug in through the
`podium.guardrails` entry-point group (a class taking its settings dict, with the two methods below).
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from typing import Any

from podium.core.errors import InvalidInput
from podium.gateway.spec import GuardrailSpec


class GuardrailViolation(Exception):
    """A guardrail refused a request or a response."""

    def __init__(self, guardrail: str, stage: str, message: str):
        super().__init__(message)
        self.guardrail = guardrail
        self.stage = stage
        self.message = message


class Guardrail:
    """Base of every hook: override `check_request` and/or `check_response`; raise `GuardrailViolation`."""

    kind = "guardrail"

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.on = str(settings.get("on", "both"))

    async def check_request(self, body: dict[str, Any], text: str) -> None:
        """Called with the request and its text (messages, prompt or input joined)."""

    async def check_response(self, text: str) -> None:
        """Called with the answer's text (for streams: the text so far, chunk by chunk)."""


class RegexDeny(Guardrail):
    """Refuse requests or answers matching any of `patterns` (Python regular expressions).

    Settings: `patterns` (list of strings, required), `ignore_case` (default true), `message` (optional).
    """

    kind = "regex_deny"

    def __init__(self, settings: dict[str, Any]):
        super().__init__(settings)
        patterns = settings.get("patterns")
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise ValueError("regex_deny needs 'patterns': a non-empty list of regular expressions")
        flags = re.IGNORECASE if settings.get("ignore_case", True) else 0
        compiled = []
        for p in patterns:
            try:
                compiled.append(re.compile(p, flags))
            except re.error as exc:
                raise ValueError(f"regex_deny pattern {p!r} is not a valid regular expression: {exc}") from None
        self.patterns = compiled
        self.message = str(settings.get("message") or "it matches a denied pattern")

    def _check(self, stage: str, text: str) -> None:
        for p in self.patterns:
            if p.search(text):
                raise GuardrailViolation(
                    self.kind, stage, f"the {stage} was blocked by guardrail regex_deny: {self.message}"
                )

    async def check_request(self, body: dict[str, Any], text: str) -> None:
        if self.on in ("request", "both"):
            self._check("request", text)

    async def check_response(self, text: str) -> None:
        if self.on in ("response", "both"):
            self._check("response", text)


BUILTIN: dict[str, type[Guardrail]] = {"regex_deny": RegexDeny}


def guardrail_class(kind: str) -> type[Guardrail]:
    """The class for a guardrail type: built in, or from the `podium.guardrails` entry points."""
    if kind in BUILTIN:
        return BUILTIN[kind]
    for ep in entry_points(group="podium.guardrails"):
        if ep.name == kind:
            cls: type[Guardrail] = ep.load()
            return cls
    known = sorted(BUILTIN) + sorted(ep.name for ep in entry_points(group="podium.guardrails"))
    raise ValueError(f"unknown guardrail type {kind!r}; known: {', '.join(known)}")


def build_guardrails(specs: list[GuardrailSpec]) -> list[Guardrail]:
    """Instantiate a route's guardrails; `InvalidInput` names the first bad one."""
    out = []
    for i, spec in enumerate(specs):
        try:
            out.append(guardrail_class(spec.type)(spec.model_dump()))
        except ValueError as exc:
            raise InvalidInput(f"route field 'guardrails.{i}': {exc}", details={"field": f"guardrails.{i}"}) from None
    return out


def request_text(body: dict[str, Any]) -> str:
    """The user-supplied text of a chat, completion or embeddings request, for checks."""
    parts: list[str] = []
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(v for v in value if isinstance(v, str))
    return "\n".join(parts)


def response_text(result: dict[str, Any]) -> str:
    """The generated text of a chat or completion response."""
    parts = []
    for c in result.get("choices") or []:
        message = c.get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        if text is None:
            text = c.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)
