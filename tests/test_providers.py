"""Provider adapters through their public interface, against loopback servers speaking each wire format."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from podium.models.providers.anthropic import AnthropicProvider
from podium.models.providers.base import Timeouts, UpstreamError
from podium.models.providers.openai import OpenAIProvider

from .conftest import free_port
from .fakes import FakeServer, serving, start_fake_anthropic, start_fake_openai


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeServer]:
    yield from serving(start_fake_openai)


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeServer]:
    yield from serving(start_fake_anthropic)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def _collect(stream: Any) -> list[dict[str, Any]]:
    return [c async for c in stream]


# --- OpenAI-compatible ------------------------------------------------------------------------------


def test_openai_chat_passes_fields_through(fake_openai: FakeServer) -> None:
    async def go() -> dict[str, Any]:
        p = OpenAIProvider(fake_openai.url + "/v1", model="upstream-llama", api_key="sk-up")
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        try:
            return await p.chat(
                {
                    "model": "public-name",
                    "messages": user("weather?"),
                    "tools": tools,
                    "tool_choice": "auto",
                    "response_format": {"type": "json_object"},
                    "seed": 3,
                    "n": 1,
                }
            )
        finally:
            await p.aclose()

    result = run(go())
    sent = fake_openai.requests[-1]
    assert sent["model"] == "upstream-llama"
    assert sent["response_format"] == {"type": "json_object"} and sent["seed"] == 3 and sent["tool_choice"] == "auto"
    assert fake_openai.headers[-1]["Authorization"] == "Bearer sk-up"
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_openai_stream_ends_with_usage(fake_openai: FakeServer) -> None:
    async def go() -> list[dict[str, Any]]:
        p = OpenAIProvider(fake_openai.url + "/v1", model="m")
        try:
            return await _collect(p.chat_stream({"model": "m", "messages": user("hello there world")}))
        finally:
            await p.aclose()

    chunks = run(go())
    assert fake_openai.requests[-1]["stream_options"] == {"include_usage": True}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: hello there world"
    assert chunks[-1]["usage"]["total_tokens"] == 18


@pytest.mark.parametrize(
    ("cue", "kind", "status", "retry_after"),
    [
        ("fail:500", "server_error", 500, None),
        ("fail:429", "rate_limit", 429, 2.0),
        ("too-long", "context_window", 400, None),
    ],
)
def test_openai_errors_are_typed(
    fake_openai: FakeServer, cue: str, kind: str, status: int, retry_after: float | None
) -> None:
    async def go() -> None:
        p = OpenAIProvider(fake_openai.url + "/v1", model="m")
        try:
            await p.chat({"model": "m", "messages": user(cue)})
        finally:
            await p.aclose()

    with pytest.raises(UpstreamError) as err:
        run(go())
    assert (err.value.kind, err.value.status, err.value.retry_after) == (kind, status, retry_after)
    assert err.value.retryable == (kind in ("server_error", "rate_limit"))


def test_openai_timeout_and_connection_errors(fake_openai: FakeServer) -> None:
    async def slow() -> None:
        p = OpenAIProvider(fake_openai.url + "/v1", model="m", timeouts=Timeouts(connect=1, first_token=0.3, total=5))
        try:
            await p.chat({"model": "m", "messages": user("slow:2")})
        finally:
            await p.aclose()

    with pytest.raises(UpstreamError) as err:
        run(slow())
    assert err.value.kind == "timeout" and err.value.status == 504

    async def refused() -> None:
        p = OpenAIProvider(f"http://127.0.0.1:{free_port()}/v1", model="m")
        try:
            await p.chat({"model": "m", "messages": user("x")})
        finally:
            await p.aclose()

    with pytest.raises(UpstreamError) as err:
        run(refused())
    assert err.value.kind == "connection" and err.value.retryable


def test_openai_stream_dropped_midway_is_an_error(fake_openai: FakeServer) -> None:
    got: list[dict[str, Any]] = []

    async def go() -> None:
        p = OpenAIProvider(fake_openai.url + "/v1", model="m")
        try:
            async for c in p.chat_stream({"model": "m", "messages": user("drop-mid-stream")}):
                got.append(c)
        finally:
            await p.aclose()

    with pytest.raises(UpstreamError) as err:
        run(go())
    assert err.value.kind == "connection"
    assert got, "the chunks before the drop were delivered"


def test_openai_embeddings_completions_and_token_estimate(fake_openai: FakeServer) -> None:
    async def go() -> tuple[Any, Any, int]:
        p = OpenAIProvider(fake_openai.url + "/v1", model="m")
        try:
            e = await p.embed({"model": "m", "input": ["ab", "abcd"]})
            c = await p.complete({"model": "m", "prompt": "say"})
            n = await p.count_tokens({"messages": user("x" * 40)})
            return e, c, n
        finally:
            await p.aclose()

    e, c, n = run(go())
    assert [d["embedding"][0] for d in e["data"]] == [2.0, 4.0]
    assert c["choices"][0]["text"] == " completed"
    assert n == 11  # no /tokenize upstream: estimated at four characters a token


def test_cancelling_a_call_cancels_the_upstream_request(fake_openai: FakeServer) -> None:
    async def go() -> None:
        p = OpenAIProvider(fake_openai.url + "/v1", model="m")
        task = asyncio.create_task(p.chat({"model": "m", "messages": user("slow:5")}))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await p.aclose()

    started = asyncio.get_event_loop_policy().new_event_loop()
    started.run_until_complete(asyncio.wait_for(go(), 3))
    started.close()


# --- Anthropic ------------------------------------------------------------------------------------


def _anthropic(server: FakeServer, key: str = "ant-key") -> AnthropicProvider:
    return AnthropicProvider(model="claude-haiku", api_key=key, base_url=server.url)


def test_anthropic_chat_maps_system_tools_and_usage(fake_anthropic: FakeServer) -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object"}}}
    ]

    async def go() -> dict[str, Any]:
        p = _anthropic(fake_anthropic)
        try:
            return await p.chat(
                {
                    "model": "support-model",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "what is the weather in Paris"},
                    ],
                    "tools": tools,
                    "tool_choice": "required",
                    "stop": "END",
                    "temperature": 0.2,
                    "user": "u-1",
                }
            )
        finally:
            await p.aclose()

    result = run(go())
    sent = fake_anthropic.requests[-1]
    assert sent["system"] == "Be brief."
    assert sent["model"] == "claude-haiku" and sent["max_tokens"] == 1024
    assert sent["stop_sequences"] == ["END"] and sent["temperature"] == 0.2
    assert sent["tools"] == [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}]
    assert sent["tool_choice"] == {"type": "any"} and sent["metadata"] == {"user_id": "u-1"}
    assert fake_anthropic.headers[-1]["anthropic-version"] == "2023-06-01"
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert result["usage"] == {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
    assert result["model"] == "support-model"


def test_anthropic_tool_results_round_trip(fake_anthropic: FakeServer) -> None:
    async def go() -> None:
        p = _anthropic(fake_anthropic)
        try:
            await p.chat(
                {
                    "model": "m",
                    "messages": [
                        {"role": "user", "content": "weather?"},
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "toolu_1",
                                    "type": "function",
                                    "function": {"name": "w", "arguments": '{"a": 1}'},
                                }
                            ],
                        },
                        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                    ],
                }
            )
        finally:
            await p.aclose()

    run(go())
    sent = fake_anthropic.requests[-1]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"a": 1}}],
    }
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
    }


def test_anthropic_stream_becomes_openai_chunks(fake_anthropic: FakeServer) -> None:
    async def go(text: str, tools: Any = None) -> list[dict[str, Any]]:
        p = _anthropic(fake_anthropic)
        try:
            body: dict[str, Any] = {"model": "m", "messages": user(text)}
            if tools:
                body["tools"] = tools
            return await _collect(p.chat_stream(body))
        finally:
            await p.aclose()

    chunks = run(go("hello world"))
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip() == "anthropic says: hello world"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["stop"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    chunks = run(go("weather please", tools))
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(tc["function"].get("arguments", "") for tc in calls) == '{"city": "Paris"}'


def test_anthropic_errors_and_limits(fake_anthropic: FakeServer) -> None:
    async def call(p: AnthropicProvider, body: dict[str, Any]) -> Any:
        try:
            return await p.chat(body)
        finally:
            await p.aclose()

    with pytest.raises(UpstreamError) as err:
        run(call(_anthropic(fake_anthropic), {"model": "m", "messages": user("fail:529")}))
    assert err.value.kind == "server_error" and err.value.status == 529
    with pytest.raises(UpstreamError) as err:
        run(call(_anthropic(fake_anthropic), {"model": "m", "messages": user("too-long")}))
    assert err.value.kind == "context_window"
    with pytest.raises(UpstreamError) as err:
        run(call(_anthropic(fake_anthropic, key="wrong"), {"model": "m", "messages": user("x")}))
    assert err.value.kind == "auth" and err.value.status == 401
    with pytest.raises(UpstreamError) as err:
        run(call(_anthropic(fake_anthropic), {"model": "m", "messages": user("x"), "n": 2}))
    assert err.value.kind == "unsupported" and err.value.param == "n"

    async def embed() -> None:
        await _anthropic(fake_anthropic).embed({"model": "m", "input": "x"})

    with pytest.raises(UpstreamError, match="no embeddings API"):
        run(embed())


def test_anthropic_counts_tokens_and_completes(fake_anthropic: FakeServer) -> None:
    async def go() -> tuple[int, dict[str, Any]]:
        p = _anthropic(fake_anthropic)
        try:
            n = await p.count_tokens({"messages": [{"role": "system", "content": "s"}, *user("one two three")]})
            c = await p.complete({"model": "m", "prompt": "finish this"})
            return n, c
        finally:
            await p.aclose()

    n, c = run(go())
    assert n == 8
    assert c["object"] == "text_completion" and c["choices"][0]["text"] == "anthropic says: finish this"
