"""A scripted OpenAI-compatible upstream for evaluation tests (an upstream provider lies outside the platform).

Chat answers: the first rule whose substring occurs in the last user message gives the answer (text, and optionally
the top log-probs of its first token); otherwise a user message `say:TEXT` answers TEXT, `fail:N` answers HTTP N,
and anything else is echoed (in two chunks when streamed). Embeddings are bag-of-letters vectors, so texts that
share words are close; an input starting `fail:N` fails the embedding call with HTTP N, and `embedding_delay`
seconds pass before each embedding answer; a model whose name ends `-wide` answers vectors of twice the dimension.
A rule may answer with tool calls instead (`tool_calls`), and a rule with `after_tool` matches the content of a
trailing `tool` message (an agent's next turn) instead of the last user message. Every request is counted."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .fakes import FakeServer, _last_user, _serve


@dataclass
class Rule:
    contains: str
    text: str
    top: dict[str, float] | None = None  # first token's alternatives: token -> probability
    # answer with these tool calls ({"name", "arguments"} each) instead of a final answer
    tool_calls: list[dict[str, Any]] | None = None
    after_tool: bool = False  # match the content of a trailing tool message rather than the last user message


@dataclass
class EvalFake(FakeServer):
    rules: list[Rule] = field(default_factory=list)
    chat_calls: int = 0
    embedding_calls: int = 0
    embedding_delay: float = 0.0

    def reset(self) -> None:
        self.rules.clear()
        self.requests.clear()
        self.chat_calls = 0
        self.embedding_calls = 0
        self.embedding_delay = 0.0


def _vector(text: str) -> list[float]:
    v = [0.0] * 26
    for ch in text.lower():
        if "a" <= ch <= "z":
            v[ord(ch) - 97] += 1.0
    return v


def start_eval_fake() -> EvalFake:
    server = EvalFake(url="")

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        server.requests.append(body)
        server.chat_calls += 1
        messages = body.get("messages") or []
        after_tool = bool(messages) and messages[-1].get("role") == "tool"
        cue = str(messages[-1].get("content")) if after_tool else _last_user(body)
        rule = next((r for r in server.rules if r.after_tool == after_tool and r.contains in cue), None)
        logprobs = None
        if rule is not None and rule.tool_calls is not None:
            calls = [
                {
                    "id": f"call_{server.chat_calls}_{i}",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
                }
                for i, c in enumerate(rule.tool_calls)
            ]
            message = {"role": "assistant", "content": rule.text or None, "tool_calls": calls}
            return web.json_response(
                {
                    "id": "chatcmpl-eval",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                    "usage": {"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40},
                }
            )
        if rule is not None:
            text = rule.text
            if rule.top is not None and body.get("logprobs"):
                first = max(rule.top, key=lambda k: rule.top[k])  # type: ignore[index]
                tops = [{"token": t, "logprob": math.log(p)} for t, p in rule.top.items()]
                logprobs = {"content": [{"token": first, "logprob": math.log(rule.top[first]), "top_logprobs": tops}]}
        elif cue.startswith("fail:"):
            status = int(cue.split(":")[1])
            return web.json_response({"error": {"message": f"upstream says {status}"}}, status=status)
        elif cue.startswith("say:"):
            text = cue[4:]
        elif cue.startswith("slow:"):
            await asyncio.sleep(float(cue.split(":")[1]))
            text = "slept"
        else:
            text = "echo: " + cue
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        if logprobs is not None:
            choice["logprobs"] = logprobs
        if body.get("stream"):  # the text in two chunks, then the finish reason
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            half = len(text) // 2
            for piece, finish in ((text[:half], None), (text[half:], None), ("", "stop")):
                delta = {"content": piece} if piece else {}
                chunk = {
                    "id": "chatcmpl-eval",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response(
            {
                "id": "chatcmpl-eval",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [choice],
                "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
            }
        )

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        server.requests.append(body)
        server.embedding_calls += 1
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if server.embedding_delay:
            await asyncio.sleep(server.embedding_delay)
        failing = next((t for t in inputs if isinstance(t, str) and t.startswith("fail:")), None)
        if failing is not None:
            status = int(failing.split(":")[1].split()[0])
            return web.json_response({"error": {"message": f"upstream says {status}"}}, status=status)
        wide = str(body.get("model", "")).endswith("-wide")  # a model of another dimension: each vector twice
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(t) * 2 if wide else _vector(t)}
            for i, t in enumerate(inputs)
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    return _serve(app, server)  # type: ignore[return-value]
