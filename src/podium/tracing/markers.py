"""The artifact marker: what a trace or span row keeps instead of a payload moved to the artifact store
(`{"podium_artifact": "<sha256>", "bytes": n, "preview": "…"}`).

Only the tracing domain writes markers. Text that clients send is never stored so that it reads as one:
otherwise a span whose input is a forged marker naming any blob's digest (a model file, another project's
payload) would make `GET /api/traces/{id}/payload` read that blob back.
"""

from __future__ import annotations

ARTIFACT_KEY = "podium_artifact"
MARKER_PREFIX = '{"' + ARTIFACT_KEY + '":'


def reads_as_marker(text: str) -> bool:
    """Whether stored text would be taken for a marker."""
    return text.startswith(MARKER_PREFIX)


def as_plain(text: str) -> str:
    """Client JSON text as it may be stored inline: a leading space keeps a forged marker from reading as
    one (the JSON value is the same)."""
    return " " + text if text.startswith(MARKER_PREFIX) else text
