"""Podium: a self-hosted LLMOps platform.

The SDK, all imported on first use so that `import podium` stays cheap for the server, the CLI and scripts:

- every domain by its name: `podium.models.get("name@alias").chat(...)`, `podium.prompts.get(...)`,
  `podium.prompts.run(...)` (each subpackage with a `domain.py`, and the domains other distributions
  declare in the `podium.domains` entry points);
- the tracing SDK: `podium.trace`, `podium.span`, `podium.update_trace`, `podium.instrument_openai`,
  `podium.flush`, `podium.propagate`;
- `podium.configure(url=..., api_key=...)`: the one client configuration every part above uses (plus the
  tracing exporter's own options); see `podium.core.sdkconfig` for the resolution order.
"""

from __future__ import annotations

import importlib
import os
from functools import cache
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
    "models",
    "prompts",
    "propagate",
    "span",
    "trace",
    "update_trace",
]

if TYPE_CHECKING:
    from podium import models, prompts
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


_HERE = os.path.dirname(__file__)


def _own_domains() -> set[str]:
    """This package's domains: each is a subpackage `podium.<name>` with a `domain.py` declaring it."""
    return {e.name for e in os.scandir(_HERE) if e.is_dir() and os.path.isfile(os.path.join(e.path, "domain.py"))}


@cache
def _plugin_domains() -> dict[str, str]:
    """Domain name → package, for domains other distributions declare in the `podium.domains` entry points
    (read only for a name that is not one of ours: importing `importlib.metadata` alone costs more than
    `import podium`)."""
    from importlib.metadata import entry_points

    found: dict[str, str] = {}
    for ep in entry_points(group="podium.domains"):
        module = ep.value.partition(":")[0].strip()
        package, _, leaf = module.rpartition(".")
        found[ep.name] = package if leaf == "domain" and package else module
    return found


def _domain_package(name: str) -> str | None:
    """The package to import for `podium.<name>`, if `name` is a domain."""
    if not name.isidentifier() or name.startswith("_"):
        return None
    if os.path.isfile(os.path.join(_HERE, name, "domain.py")):
        return f"{__name__}.{name}"
    return _plugin_domains().get(name)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    package = _domain_package(name)
    if package is not None:  # `podium.models`, `podium.prompts`, …: the domain's package and its SDK
        value = importlib.import_module(package)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'podium' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _own_domains() | set(_plugin_domains()))
