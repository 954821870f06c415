"""Anthropic's Messages API behind the OpenAI-shaped interface.

System messages become `system`, tool calls and tool results become `tool_use` / `tool_result` blocks,
`stop` becomes `stop_sequences`, and streaming events (message_start, content_block_*, message_delta,
message_stop) become OpenAI chunks ending with usage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from podium.core import sse
from podium.core.netguard import GuardedResolver, NetGuard
from podium.models.providers.base import (
    BAD_REQUEST,
    CONNECTION,
    SERVER,
    TIMEOUT,
    UNSUPPORTED,
    Provider,
    Timeouts,
    UpstreamError,
)
from podium.models.providers.openai import error_from_response

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise UpstreamError(BAD_REQUEST, f"content part type {kind!r} is not supported by anthropic", status=400)
    return blocks


def to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate an OpenAI chat request into a Messages API request."""
    if int(body.get("n") or 1) != 1:
        raise UpstreamError(UNSUPPORTED, "anthropic does not support n > 1", status=400, param="n")
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def push(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for m in body.get("messages") or []:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(m.get("content")))
        elif role == "user":
            push("user", _blocks(m.get("content")))
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    args = {"_raw": fn.get("arguments")}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
            push("assistant", blocks)
        elif role == "tool":
            push(
                "user",
                [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": _text_of(m.get("content"))}],
            )
        else:
            raise UpstreamError(BAD_REQUEST, f"message role {role!r} is not supported", status=400, param="messages")
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": int(body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS),
    }
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        schema = (fmt.get("json_schema") or {}).get("schema")
        hint = "Answer with one JSON object and nothing else."
        if schema:
            hint += " It must follow this JSON schema: " + orjson.dumps(schema).decode()
        system.append(hint)
    if system:
        out["system"] = "\n\n".join(s for s in system if s)
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(src) is not None:
            out[dst] = body[src]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    tools = body.get("tools")
    if tools:
        out["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if t.get("type") == "function"
        ]
    choice = body.get("tool_choice")
    if choice == "auto":
        out["tool_choice"] = {"type": "auto"}
    elif choice == "required":
        out["tool_choice"] = {"type": "any"}
    elif choice == "none":
        out["tool_choice"] = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    return out


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def from_anthropic(msg: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate a Messages API response into an OpenAI chat completion."""
    text = "".join(b.get("text", "") for b in msg.get("content", []) if b.get("type") == "text")
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input") or {}).decode()},
        }
        for b in msg.get("content", [])
        if b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    usage = msg.get("usage") or {}
    prompt = (
        int(usage.get("input_tokens", 0))
        + int(usage.get("cache_read_input_tokens", 0) or 0)
        + int(usage.get("cache_creation_input_tokens", 0) or 0)
    )
    return {
        "id": "chatcmpl-" + str(msg.get("id", "")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _FINISH.get(msg.get("stop_reason") or "", "stop")}
        ],
        "usage": _usage(prompt, int(usage.get("output_tokens", 0))),
    }


class AnthropicProvider(Provider):
    """Anthropic's Messages API (or any server speaking its wire format)."""

    name = "anthropic"
    supports_embeddings = False

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        headers: dict[str, str] | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 1000,
        guard: NetGuard | None = None,
    ):
        self.guard = guard  # checked on every connection's resolved addresses
        self.base_url = (base_url or "https://api.anthropic.com").rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.model = model
        self.timeouts = timeouts or Timeouts()
        self._headers = {"content-type": "application/json", "anthropic-version": API_VERSION, **(headers or {})}
        if api_key:
            self._headers["x-api-key"] = api_key
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        """The pooled session of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            resolver = GuardedResolver(self.guard) if self.guard is not None else None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, resolver=resolver), headers=self._headers
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _timeout(self, timeouts: Timeouts | None) -> aiohttp.ClientTimeout:
        t = timeouts or self.timeouts
        return aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_token)

    async def _post(self, path: str, payload: dict[str, Any], timeouts: Timeouts | None) -> dict[str, Any]:
        try:
            async with self.session().post(
                self.base_url + path, data=orjson.dumps(payload), timeout=self._timeout(timeouts)
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise error_from_response(resp.status, raw, resp.headers)
                result: dict[str, Any] = orjson.loads(raw)
                return result
        except TimeoutError:
            raise UpstreamError(TIMEOUT, f"anthropic at {self.base_url} timed out", status=504) from None
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamError(CONNECTION, f"cannot reach anthropic at {self.base_url}: {exc}", status=502) from None

    async def chat(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        msg = await self._post("/v1/messages", to_anthropic(body, self.model), timeouts)
        return from_anthropic(msg, body.get("model") or self.model)

    async def chat_stream(
        self, body: dict[str, Any], timeouts: Timeouts | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        payload = to_anthropic(body, self.model)
        payload["stream"] = True
        public_model = body.get("model") or self.model
        created = int(time.time())
        chunk_id = "chatcmpl-"
        input_tokens = output_tokens = 0
        tool_index: dict[int, int] = {}
        finish: str | None = None

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": public_model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        try:
            async with self.session().post(
                self.base_url + "/v1/messages", data=orjson.dumps(payload), timeout=self._timeout(timeouts)
            ) as resp:
                if resp.status >= 400:
                    raise error_from_response(resp.status, await resp.read(), resp.headers)
                stopped = False
                async for item in sse.EventStream(resp.content):
                    event = item.data
                    if not isinstance(event, dict):
                        raise UpstreamError(SERVER, "anthropic sent a stream event that is not an object", status=502)
                    kind = event.get("type")
                    if kind == "message_start":
                        msg = event.get("message") or {}
                        chunk_id = "chatcmpl-" + str(msg.get("id", ""))
                        u = msg.get("usage") or {}
                        input_tokens = int(u.get("input_tokens", 0)) + int(u.get("cache_read_input_tokens", 0) or 0)
                        output_tokens = int(u.get("output_tokens", 0))
                        yield chunk({"role": "assistant", "content": ""})
                    elif kind == "content_block_start":
                        block = event.get("content_block") or {}
                        if block.get("type") == "tool_use":
                            i = tool_index.setdefault(int(event.get("index", 0)), len(tool_index))
                            call = {
                                "index": i,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""},
                            }
                            yield chunk({"tool_calls": [call]})
                        elif block.get("type") == "text" and block.get("text"):
                            yield chunk({"content": block["text"]})
                    elif kind == "content_block_delta":
                        delta = event.get("delta") or {}
                        if delta.get("type") == "text_delta":
                            yield chunk({"content": delta.get("text", "")})
                        elif delta.get("type") == "input_json_delta":
                            i = tool_index.get(int(event.get("index", 0)), 0)
                            part = {"index": i, "function": {"arguments": delta.get("partial_json", "")}}
                            yield chunk({"tool_calls": [part]})
                    elif kind == "message_delta":
                        delta = event.get("delta") or {}
                        if delta.get("stop_reason"):
                            finish = _FINISH.get(delta["stop_reason"], "stop")
                        u = event.get("usage") or {}
                        if "output_tokens" in u:
                            output_tokens = int(u["output_tokens"])
                    elif kind == "message_stop":
                        stopped = True
                        yield chunk({}, finish or "stop")
                        yield {
                            "id": chunk_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": public_model,
                            "choices": [],
                            "usage": _usage(input_tokens, output_tokens),
                        }
                        break
                    elif kind == "error":
                        err = event.get("error") or {}
                        raise UpstreamError(
                            SERVER, f"anthropic failed mid-stream: {err.get('message', err)}", status=502
                        )
                if not stopped:
                    raise UpstreamError(CONNECTION, "anthropic closed the stream before it finished", status=502)
        except sse.SSEError:
            raise UpstreamError(SERVER, "anthropic sent a malformed stream event", status=502) from None
        except TimeoutError:
            raise UpstreamError(TIMEOUT, f"anthropic at {self.base_url} timed out", status=504) from None
        except aiohttp.ClientPayloadError:
            raise UpstreamError(CONNECTION, "anthropic closed the stream before it finished", status=502) from None
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamError(CONNECTION, f"cannot reach anthropic at {self.base_url}: {exc}", status=502) from None

    async def complete(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        chat = await self.chat(self._as_chat(body), timeouts)
        choice = chat["choices"][0]
        return {
            "id": chat["id"].replace("chatcmpl-", "cmpl-"),
            "object": "text_completion",
            "created": chat["created"],
            "model": chat["model"],
            "choices": [
                {
                    "index": 0,
                    "text": choice["message"]["content"] or "",
                    "finish_reason": choice["finish_reason"],
                    "logprobs": None,
                }
            ],
            "usage": chat["usage"],
        }

    async def complete_stream(
        self, body: dict[str, Any], timeouts: Timeouts | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        async for c in self.chat_stream(self._as_chat(body), timeouts):
            if not c["choices"]:
                yield {**c, "object": "text_completion"}
                continue
            ch = c["choices"][0]
            yield {
                **c,
                "object": "text_completion",
                "choices": [
                    {"index": 0, "text": ch["delta"].get("content") or "", "finish_reason": ch["finish_reason"]}
                ],
            }

    @staticmethod
    def _as_chat(body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise UpstreamError(UNSUPPORTED, "anthropic takes one prompt per request", status=400, param="prompt")
            prompt = prompt[0]
        chat = {k: v for k, v in body.items() if k not in ("prompt", "echo", "logprobs", "suffix", "best_of")}
        chat["messages"] = [{"role": "user", "content": str(prompt or "")}]
        return chat

    async def embed(self, body: dict[str, Any], timeouts: Timeouts | None = None) -> dict[str, Any]:
        raise UpstreamError(
            UNSUPPORTED, "anthropic has no embeddings API; use another model for embeddings", status=400
        )

    async def count_tokens(self, body: dict[str, Any]) -> int:
        payload = to_anthropic(body if "messages" in body else self._as_chat(body), self.model)
        payload.pop("max_tokens", None)
        payload.pop("stop_sequences", None)
        payload.pop("temperature", None)
        payload.pop("top_p", None)
        payload.pop("metadata", None)
        result = await self._post("/v1/messages/count_tokens", payload, None)
        return int(result.get("input_tokens", 0))
