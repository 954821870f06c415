"""The provider interface and its typed errors.

Requests and responses are OpenAI-shaped dicts (chat completions, completions, embeddings), so the
gateway can pass an OpenAI-compatible upstream's bytes through untouched and only adapters for other
wire formats (Anthropic) translate. Streaming methods yield OpenAI chunk dicts; the last one carries
`usage`. Cancelling the awaiting task cancels the upstream call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

# Kinds of upstream failure the gateway acts on (retry, fall back, cool down, or give up).
TIMEOUT = "timeout"
CONNECTION = "connection"
RATE_LIMIT = "rate_limit"
SERVER = "server_error"
CONTEXT_WINDOW = "context_window"
BAD_REQUEST = "bad_request"
AUTH = "auth"
NOT_FOUND = "not_found"
UNSUPPORTED = "unsupported"
RETRYABLE = frozenset({TIMEOUT, CONNECTION, RATE_LIMIT, SERVER})


class UpstreamError(Exception):
    """A provider call failed; `kind` says how, `status` is the upstream HTTP status (or what to answer)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int = 502,
        retry_after: float | None = None,
        body: Any = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.param = param

    @property
    def retryable(self) -> bool:
        """True for failures worth retrying or falling back on."""
        return self.kind in RETRYABLE

    def __repr__(self) -> str:
        return f"UpstreamError({self.kind!r}, {self.message!r}, status={self.status})"


@dataclass(frozen=True)
class Timeouts:
    """Per-call limits in seconds: connecting, waiting for the first byte/token, and the whole call."""

    connect: float = 10.0
    first_token: float = 60.0
    total: float = 600.0


class Provider(ABC):
    """One upstream model behind the OpenAI-shaped interface."""

    name: str = "provider"
    supports_embeddings: bool = True

    @abstractmethod
    async def chat(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        """A chat completion (non-streaming)."""

    @abstractmethod
    def chat_stream(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> AsyncIterator[dict[str, Any]]:
        """A streamed chat completion: OpenAI chunk dicts, the last one with `usage`."""

    @abstractmethod
    async def complete(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        """A text completion (non-streaming)."""

    @abstractmethod
    def complete_stream(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> AsyncIterator[dict[str, Any]]:
        """A streamed text completion."""

    @abstractmethod
    async def embed(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        """Embeddings for `input` (a string or a list of strings)."""

    @abstractmethod
    async def count_tokens(self, body: dict[str, Any]) -> int:
        """Prompt tokens of a chat (`messages`) or completion (`prompt`) request."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""


def estimate_tokens(body: dict[str, Any]) -> int:
    """A rough count (4 characters a token) for providers that cannot count."""
    text = ""
    if "messages" in body:
        for m in body["messages"] or []:
            content = m.get("content")
            if isinstance(content, str):
                text += content
            elif isinstance(content, list):
                text += "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            text += "    "
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        text += prompt
    elif isinstance(prompt, list):
        text += "".join(str(p) for p in prompt)
    return max(1, len(text) // 4)
