"""The provider registry builds every kind of upstream from one connection description."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from podium.models.providers import registry
from podium.models.providers.base import Provider
from podium.models.providers.registry import Connection

from .fakes import FakeServer, serving, start_fake_anthropic, start_fake_openai


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeServer]:
    yield from serving(start_fake_openai)


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeServer]:
    yield from serving(start_fake_anthropic)


def chat(provider: Provider) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await provider.chat({"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        finally:
            await provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_every_kind_gets_the_same_connection_settings(
    kind: str, fake_openai: FakeServer, fake_anthropic: FakeServer
) -> None:
    server = fake_openai if kind == "openai" else fake_anthropic
    base = server.url + ("/v1" if kind == "openai" else "")
    key = "ant-key" if kind == "anthropic" else "secret-1"  # the fake Anthropic server checks its key
    conn = Connection(model="upstream-model", base_url=base, api_key=key, headers={"X-Team": "search"})
    answer = chat(registry.create(kind, conn))
    assert answer["choices"][0]["message"]["content"]
    sent = {k.lower(): v for k, v in server.headers[-1].items()}
    assert sent["x-team"] == "search"  # an extra header reaches every kind of upstream (it was dropped for anthropic)
    assert key in (sent.get("authorization", "") + sent.get("x-api-key", ""))


def test_unknown_kinds_and_missing_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown provider 'azure'; known: anthropic, local, openai"):
        registry.create("azure", Connection(model="m"))
    with pytest.raises(ValueError, match="needs a base_url"):
        registry.create("openai", Connection(model="m"))
    with pytest.raises(ValueError, match="unix socket"):
        registry.create("local", Connection(model="m"))
    assert registry.kind("openai").needs_base_url and not registry.kind("anthropic").needs_base_url
