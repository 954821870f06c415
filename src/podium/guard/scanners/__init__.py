"""The built-in scanners; importing this package registers them."""

from podium.guard.scanners import (
    injection,
    invisible,
    json_output,
    judge,
    language,
    pii,
    relevance,
    secrets,
    topics,
    toxicity,
    urls,
)

__all__ = [
    "injection",
    "invisible",
    "json_output",
    "judge",
    "language",
    "pii",
    "relevance",
    "secrets",
    "topics",
    "toxicity",
    "urls",
]
