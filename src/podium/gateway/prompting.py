"""Prompt references in chat requests (`"prompt": {"name", "label" | "version", "variables"}`), as the
gateway sees them: who renders them (a `PromptResolver`, which the prompts domain provides), what a call
used (`PromptUse`, recorded on its trace), and the session a request belongs to.

The gateway does not import the prompts domain: prompts builds on the gateway (its playground runs through
it), so the dependency points one way and the prompts domain plugs its resolver in at setup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from podium.core.identity import Principal

SESSION_HEADER = b"x-podium-session-id"  # ASGI header names are lowercase bytes
MAX_SESSION = 200  # the traces table's session_id width


@dataclass(frozen=True)
class PromptUse:
    """The prompt version a call used, and the experiment arm that chose it (if any); goes on its trace."""

    name: str
    version: int
    version_id: str
    label: str | None = None
    experiment_id: str | None = None
    arm: int | None = None

    @property
    def ref(self) -> str:
        """`name@N`, the response header's value."""
        return f"{self.name}@{self.version}"

    def meta(self) -> dict[str, Any]:
        """What the trace's metadata records."""
        out: dict[str, Any] = {"prompt": self.ref}
        if self.label is not None:
            out["prompt_label"] = self.label
        if self.experiment_id is not None:
            out["experiment"] = self.experiment_id
            out["arm"] = self.arm
        return out


def session_id(raw_headers: Iterable[tuple[bytes, bytes]], body: dict[str, Any]) -> str | None:
    """The session a request belongs to: the `x-podium-session-id` header, else `metadata.session_id`.
    Reads the raw ASGI headers (a scan of bytes, well under a microsecond) as every request pays it."""
    for name, raw in raw_headers:
        if name == SESSION_HEADER:
            text = raw.decode("latin-1").strip()
            return text[:MAX_SESSION] if text else None
    meta = body.get("metadata")
    value = meta.get("session_id") if isinstance(meta, dict) else None
    return value[:MAX_SESSION] if isinstance(value, str) and value else None


class PromptResolver(Protocol):
    """Renders a chat request's prompt reference into the request to send upstream."""

    async def apply(
        self, body: dict[str, Any], session: str | None, principal: Principal | None = None
    ) -> tuple[dict[str, Any], PromptUse]:
        """The request with the reference rendered in, and which version (and experiment arm) it used; a
        `GatewayError` (400/404) says what was wrong with the reference."""
