"""The provider registry: one place that knows every kind of upstream and builds its adapter.

`openai` (any OpenAI-compatible HTTP server), `anthropic` (the Messages API) and `local` (a Podium model
worker on a unix socket) ship here; a package adds its own kind through the `podium.providers` entry-point
group, naming a `ProviderKind`. Routes' deployments and registered remote models both build their
adapters with `create(kind, Connection(...))`, so every kind gets every connection setting (base URL, key,
extra headers, timeouts) the same way, and an unknown kind is one clear error listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points

from podium.core.netguard import NetGuard
from podium.models.providers.base import Provider, Timeouts

GROUP = "podium.providers"


@dataclass(frozen=True)
class Connection:
    """How to reach one upstream model: what any adapter may need."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    unix_socket: str | None = None
    guard: NetGuard | None = None  # where connections may go (checked on resolved addresses)


@dataclass(frozen=True)
class ProviderKind:
    """A kind of upstream: its name, whether it needs a base URL, and the factory of its adapter."""

    name: str
    factory: Callable[[Connection], Provider]
    needs_base_url: bool = False
    description: str = ""


def _openai(c: Connection) -> Provider:
    from podium.models.providers.openai import OpenAIProvider

    if not c.base_url:
        raise ValueError("an openai provider needs a base_url (for example https://api.openai.com/v1)")
    return OpenAIProvider(
        c.base_url, model=c.model, api_key=c.api_key, headers=dict(c.headers), timeouts=c.timeouts, guard=c.guard
    )


def _anthropic(c: Connection) -> Provider:
    from podium.models.providers.anthropic import AnthropicProvider

    return AnthropicProvider(
        model=c.model,
        api_key=c.api_key,
        base_url=c.base_url,
        headers=dict(c.headers),
        timeouts=c.timeouts,
        guard=c.guard,
    )


def _local(c: Connection) -> Provider:
    from podium.models.providers.openai import OpenAIProvider

    if not c.unix_socket:
        raise ValueError("a local provider needs the model worker's unix socket")
    return OpenAIProvider(
        "http://podium-worker/v1",
        model=c.model,
        unix_socket=c.unix_socket,
        headers=dict(c.headers),
        timeouts=c.timeouts,
    )


BUILTIN: dict[str, ProviderKind] = {
    "openai": ProviderKind("openai", _openai, needs_base_url=True, description="any OpenAI-compatible server"),
    "anthropic": ProviderKind("anthropic", _anthropic, description="Anthropic's Messages API"),
    "local": ProviderKind("local", _local, description="a Podium model worker on this host"),
}


@cache
def _plugins() -> dict[str, ProviderKind]:
    found: dict[str, ProviderKind] = {}
    for ep in entry_points(group=GROUP):
        kind = ep.load()
        if not isinstance(kind, ProviderKind):
            raise ValueError(f"entry point {ep.name!r} of group {GROUP} is not a ProviderKind: {ep.value}")
        found[ep.name] = kind
    return found


def kinds() -> dict[str, ProviderKind]:
    """Every provider kind: the built-in ones, then those installed packages add."""
    return {**BUILTIN, **{k: v for k, v in _plugins().items() if k not in BUILTIN}}


def kind(name: str) -> ProviderKind:
    """A provider kind by name; `ValueError` listing the known ones otherwise."""
    found = kinds().get(name)
    if found is None:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(sorted(kinds()))}")
    return found


def create(name: str, connection: Connection) -> Provider:
    """The adapter of kind `name` for one upstream model."""
    return kind(name).factory(connection)
