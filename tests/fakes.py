"""Stand-ins for what lies outside the platform: an OpenAI-compatible upstream and an Anthropic server,
on loopback, speaking each wire format. Behaviour is steered per request through the last user message
(`fail:500`, `fail:429`, `slow:2`, `drop-mid-stream`, `too-long`), and every request is recorded."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .conftest import free_port


@dataclass
class FakeServer:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    runner: web.AppRunner | None = None
    thread: threading.Thread | None = None
    forced: str | None = None  # a cue applied to every request (e.g. "fail:503"), whatever the message says
    forced_times: int = -1  # how many more requests `forced` applies to (-1: all)
    disconnected: int = 0  # hanging requests whose client went away
    fail_every: int = 0  # every n-th chat request answers 500
    chats: int = 0
    usage: dict[str, Any] | None = None  # the usage chat answers report (default 11 + 7 tokens)
    word_delay: float = 0.0  # seconds between the words of a streamed answer

    def stop(self) -> None:
        assert self.loop is not None and self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self.thread is not None
        self.thread.join(10)


def _last_user(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
            return c if isinstance(c, str) else ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def _serve(app: web.Application, server: FakeServer) -> FakeServer:
    port = free_port()
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server.loop = loop
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", port)
        loop.run_until_complete(site.start())
        server.runner = runner
        ready.set()
        loop.run_forever()

    server.url = f"http://127.0.0.1:{port}"
    server.thread = threading.Thread(target=run, daemon=True)
    server.thread.start()
    ready.wait(10)
    return server


# --- OpenAI-compatible -----------------------------------------------------------------------------


def start_fake_openai() -> FakeServer:
    server = FakeServer(url="")

    def reply_text(body: dict[str, Any]) -> str:
        return "echo: " + _last_user(body)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        server.requests.append(body)
        server.headers.append(dict(request.headers))
        server.chats += 1
        cue = _last_user(body)
        if server.forced and server.forced_times != 0:
            cue = server.forced
            server.forced_times -= 1 if server.forced_times > 0 else 0
        if server.fail_every and server.chats % server.fail_every == 0:
            cue = "fail:500"
        if cue.startswith("fail:"):
            status = int(cue.split(":")[1])
            headers = {"Retry-After": "2"} if status == 429 else {}
            return web.json_response(
                {"error": {"message": f"upstream says {status}", "type": "x"}}, status=status, headers=headers
            )
        if cue == "too-long":
            return web.json_response(
                {
                    "error": {
                        "message": "This model's maximum context length is 4096 tokens",
                        "code": "context_length_exceeded",
                    }
                },
                status=400,
            )
        if cue.startswith("slow:"):
            await asyncio.sleep(float(cue.split(":")[1]))
        if cue.startswith("hang"):
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)
            server.disconnected += 1
            return web.Response(status=499)
        text = reply_text(body)
        usage = server.usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        if body.get("tools"):
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": body["tools"][0]["function"]["name"], "arguments": '{"city": "Paris"}'},
                    }
                ],
            }
            finish = "tool_calls"
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def frame(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            data = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        await resp.write(frame({"role": "assistant", "content": ""}))
        for i, word in enumerate(text.split(" ")):
            if server.word_delay:
                await asyncio.sleep(server.word_delay)
            await resp.write(frame({"content": (" " if i else "") + word}))
            if cue == "drop-mid-stream" and i == 1:
                request.transport.close()  # type: ignore[union-attr]
                return resp
        await resp.write(frame({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body.get("model"),
                "choices": [],
                "usage": usage,
            }
            await resp.write(b"data: " + json.dumps(final).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        server.requests.append(body)
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            chunk = {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": body.get("model")}
            for text, finish in ((" completed", None), ("", "stop")):
                data = {**chunk, "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
                await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [{"index": 0, "text": " completed", "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        server.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and isinstance(inputs[0], int):  # one text as token ids
            inputs = [inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(inputs)
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": 2, "total_tokens": 2},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    return _serve(app, server)


# --- Anthropic ----------------------------------------------------------------------------------


def start_fake_anthropic() -> FakeServer:
    server = FakeServer(url="")

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        server.requests.append(body)
        server.headers.append(dict(request.headers))
        if request.headers.get("x-api-key") != "ant-key":
            return web.json_response(
                {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, status=401
            )
        last = body["messages"][-1]["content"]
        text_in = (
            last if isinstance(last, str) else " ".join(b.get("text", "") for b in last if b.get("type") == "text")
        )
        if text_in == "fail:529":
            return web.json_response(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529
            )
        if text_in == "too-long":
            return web.json_response(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "prompt is too long: 210000 tokens > 200000 maximum",
                    },
                },
                status=400,
            )
        use_tool = bool(body.get("tools")) and "weather" in text_in
        content: list[dict[str, Any]]
        if use_tool:
            content = [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": body["tools"][0]["name"], "input": {"city": "Paris"}},
            ]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": "anthropic says: " + text_in}]
            stop = "end_turn"
        usage = {"input_tokens": 21, "output_tokens": 9}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": stop,
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        await event(
            "message_start",
            {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 21, "output_tokens": 1}}},
        )
        await event("ping", {"type": "ping"})
        for i, block in enumerate(content):
            if block["type"] == "text":
                await event(
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                )
                for word in block["text"].split(" "):
                    await event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": word + " "},
                        },
                    )
            else:
                await event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}},
                    },
                )
                await event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
                    },
                )
                await event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
                    },
                )
            await event("content_block_stop", {"type": "content_block_stop", "index": i})
        await event(
            "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 9}}
        )
        await event("message_stop", {"type": "message_stop"})
        return resp

    async def count(request: web.Request) -> web.Response:
        body = await request.json()
        server.requests.append(body)

        def text_of(content: Any) -> str:
            return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)

        words = sum(len(text_of(m["content"]).split()) for m in body["messages"])
        return web.json_response({"input_tokens": words + (5 if body.get("system") else 0)})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count)
    return _serve(app, server)


def serving(factory: Any) -> Iterator[FakeServer]:
    server = factory()
    yield server
    server.stop()
