"""Podium: a self-hosted LLMOps platform.

The tracing SDK is available from the top level (`podium.trace`, `podium.span`, `podium.update_trace`,
`podium.instrument_openai`, `podium.configure`, `podium.flush`, `podium.propagate`); it is imported on
first use, so `import podium` stays cheap for the server and the CLI. Prompts: `podium.prompts.get(...)`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from podium.core.version import __version__

_LAZY = {
    "trace": "podium.tracing.sdk",
    "span": "podium.tracing.sdk",
    "update_trace": "podium.tracing.sdk",
    "current_span": "podium.tracing.sdk",
    "current_trace_id": "podium.tracing.sdk",
    "propagate": "podium.tracing.sdk",
    "TracedThreadPoolExecutor": "podium.tracing.sdk",
    "configure": "podium.tracing.sdk",
    "flush": "podium.tracing.sdk",
    "instrument_openai": "podium.tracing.sdk_openai",
}

__all__ = [
    "TracedThreadPoolExecutor",
    "__version__",
    "configure",
    "current_span",
    "current_trace_id",
    "flush",
    "instrument_openai",
    "prompts",
    "propagate",
    "span",
    "trace",
    "update_trace",
]

if TYPE_CHECKING:
    from podium.tracing.sdk import (
        TracedThreadPoolExecutor,
        configure,
        current_span,
        current_trace_id,
        flush,
        propagate,
        span,
        trace,
        update_trace,
    )
    from podium.tracing.sdk_openai import instrument_openai


def __getattr__(name: str) -> Any:
    if name == "prompts":  # the prompt registry's SDK: `podium.prompts.get(...)`
        return importlib.import_module("podium.prompts")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'podium' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"prompts"})
