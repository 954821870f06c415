"""`secrets`: API keys, tokens and passwords, in prompts or (more often) leaked in answers.

The default engine is the validated patterns shared with the dataset `pii` step (known key shapes: OpenAI,
Stripe, AWS, GitHub, Slack, Google; random-looking values after `key=`, `token:`, `Bearer`), plus phrases such
as "the API key is ..." and free-standing high-entropy tokens (mixed case and digits, 32+ characters). The
`detect_secrets` engine runs Yelp's detect-secrets plugins line by line instead (optional; `bench/guard.py`
compares both on the shipped set).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from typing import Any, Literal

from pydantic import Field

from podium.data.steps import pii as detectors
from podium.guard.base import BOTH, Action, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register

Span = tuple[int, int]

# "the API key is ...", "token: `...`": bounded repetitions only; the value must look random
_PHRASE = re.compile(
    r"(?i)(?<![a-z0-9])(?:api[ _-]?key|access[ _-]?key|secret[ _-]?key|key|token|secret|password|passwd)"
    r"(?:[ \t]{1,3}(?:is|was)[ \t]{0,3}:?|[ \t]{0,3}[:=])[ \t]{0,3}[\"'`]?([A-Za-z0-9._~+/=-]{16,512})"
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9_+/=-])[A-Za-z0-9_+/=-]{32,512}(?![A-Za-z0-9_+/=-])")


def _random_token(token: str) -> bool:
    """Mixed case and digits with high entropy: a generated credential, not a word, a hex hash or a UUID."""
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and sum(c.isdigit() for c in token) >= 2
        and detectors.entropy(token) >= 4.2
    )


def find_secrets(text: str) -> list[Span]:
    """Spans of secrets by the pattern engine."""
    spans = detectors.find_secret(text)
    for m in _PHRASE.finditer(text):
        token = m.group(1)
        if any(c.isalpha() for c in token) and any(c.isdigit() for c in token) and detectors.entropy(token) >= 3.0:
            spans.append(m.span(1))
    if len(text) >= 32:
        spans.extend(m.span() for m in _TOKEN.finditer(text) if _random_token(m.group()))
    return spans


def _detect_secrets_finder() -> Any:
    if importlib.util.find_spec("detect_secrets") is None:
        raise ScannerError(
            "engine 'detect_secrets' needs Yelp's detect-secrets: pip install 'podium[guard]' (or detect-secrets), "
            "or use engine 'patterns'",
            "engine",
        )
    scan = importlib.import_module("detect_secrets.core.scan")
    settings = importlib.import_module("detect_secrets.settings")

    def find(text: str) -> list[Span]:
        spans: list[Span] = []
        offset = 0
        with settings.default_settings():
            for line in text.splitlines(keepends=True):
                for secret in scan.scan_line(line.rstrip("\r\n")):
                    value = secret.secret_value or ""
                    at = line.find(value) if value else -1
                    if at >= 0:
                        spans.append((offset + at, offset + at + len(value)))
                offset += len(line)
        return spans

    return find


class SecretsSettings(ScannerSettings):
    """Settings of `secrets`."""

    engine: Literal["patterns", "detect_secrets"] = "patterns"
    action: Action = "redact"
    min_length: int = Field(default=8, ge=1, le=512)  # shorter matches are ignored


@register
class Secrets(Scanner):
    """API keys, tokens and passwords (known shapes, key=value, phrases, high-entropy tokens)."""

    name = "secrets"
    description = "API keys, tokens and passwords (known key shapes, key=value, high-entropy tokens)"
    stages = BOTH
    Settings = SecretsSettings
    settings: SecretsSettings

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        self.find = find_secrets if self.settings.engine == "patterns" else _detect_secrets_finder()

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        spans = sorted(set(self.find(text)))
        kept = detectors.resolve([(s, e, "SECRET") for s, e in spans if e - s >= self.settings.min_length])
        return [self.finding("SECRET", s, e, 1.0, self.settings.engine) for s, e, _ in kept]
