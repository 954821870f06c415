"""The response cache: exact (answers keyed by a hash of the canonicalised request, per route) and
semantic (answers to a prompt whose embedding is close enough, per route and parameters), with a TTL.

In-process by default, in Redis (`PODIUM_REDIS_URL`) to share it between workers and hosts; a cached
answer is replayed as JSON or as a stream. Requests with `temperature > 0` are not cached unless the route
allows it, and `Cache-Control: no-cache` skips the lookup (the fresh answer is still stored).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from podium.gateway.semantic import MemorySemanticStore, RedisSemanticStore, SemanticStore, unit
from podium.gateway.spec import CacheSpec

log = logging.getLogger("podium.gateway.cache")

# fields that do not change the answer, or that only change how it is delivered
_IGNORED = frozenset({"stream", "stream_options", "user", "metadata"})
_PROMPT_FIELDS = frozenset({"messages", "prompt", "input"})


def cache_key(route: str, kind: str, body: dict[str, Any], project: str | None = None) -> str:
    """A stable hash of what determines the answer (key order and delivery fields do not matter), within
    one project's answers (`project`; None: shared by every project)."""
    canonical = {k: v for k, v in body.items() if k not in _IGNORED}
    raw = orjson.dumps([route, kind, canonical, project], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


def semantic_scope(route: str, kind: str, body: dict[str, Any], project: str | None = None) -> str:
    """A hash of everything but the prompt: semantic matches never cross routes, endpoints, parameters or
    projects (unless the route shares its cache: `project` None)."""
    rest = {k: v for k, v in body.items() if k not in _IGNORED and k not in _PROMPT_FIELDS}
    return hashlib.sha256(orjson.dumps([route, kind, rest, project], option=orjson.OPT_SORT_KEYS)).hexdigest()


def prompt_text(body: dict[str, Any]) -> str | None:
    """The text a semantic match compares: a chat's messages (role and text) or a completion's prompt."""
    messages = body.get("messages")
    if isinstance(messages, list):
        lines = []
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str):
                lines.append(f"{m.get('role')}: {content}")
        return "\n".join(lines) or None
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) and prompt else None


def cache_decision(spec: CacheSpec, body: dict[str, Any], cache_control: str | None) -> str:
    """`lookup`, `bypass` (client said no-cache) or `off` (not enabled, or a sampled request)."""
    if not spec.exact and spec.semantic_threshold is None:
        return "off"
    temperature = body.get("temperature", 1.0)
    if not spec.allow_temperature and not (isinstance(temperature, int | float) and temperature <= 0):
        return "off"
    if cache_control and "no-cache" in cache_control.lower():
        return "bypass"
    return "lookup"


class ExactStore(Protocol):
    """Where exact entries live."""

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached answer, if any and still fresh."""

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store an answer for `ttl` seconds."""


class ExactCache:
    """An in-process LRU with per-entry expiry."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached answer, if any and still fresh."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store an answer for `ttl` seconds."""
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisExactCache:
    """Exact entries in Redis, shared by every worker and host."""

    def __init__(self, client: Any, prefix: str = "podium:cache:"):
        self.client = client
        self.prefix = prefix

    async def get(self, key: str) -> dict[str, Any] | None:
        """See `ExactStore.get`."""
        raw = await self.client.get(self.prefix + key)
        return None if raw is None else dict(orjson.loads(raw))

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """See `ExactStore.put`."""
        await self.client.set(self.prefix + key, orjson.dumps(value), ex=max(1, int(ttl)))


Embedder = Callable[[str, str], Awaitable[list[float]]]  # (embedding model, text) -> vector


@dataclass
class Lookup:
    """What the cache said about one request, and what storing its answer needs."""

    status: str  # none (caching off for it), bypass, miss, hit, semantic-hit, error
    answer: dict[str, Any] | None = None
    key: str | None = None
    scope: str | None = None
    vector: np.ndarray | None = None
    similarity: float | None = None


class ResponseCache:
    """Exact and semantic lookups for a route's cache settings; a store that fails is skipped, not fatal."""

    def __init__(self, embed: Embedder, redis: Any = None):
        self.embed = embed
        self.exact: ExactStore = RedisExactCache(redis) if redis is not None else ExactCache()
        self.semantic: SemanticStore = RedisSemanticStore(redis) if redis is not None else MemorySemanticStore()

    async def lookup(
        self, spec: CacheSpec, route: str, kind: str, body: dict[str, Any], control: str | None, project: str
    ) -> Lookup:
        """Look the request up (exact first, then semantic) unless caching is off for it: among the answers
        given to the caller's project, or to every project when the route shares its cache."""
        partition = None if spec.shared else project
        decision = cache_decision(spec, body, control)
        if decision == "off":
            return Lookup("none")
        found = Lookup("bypass" if decision == "bypass" else "miss")
        try:
            if spec.exact:
                found.key = cache_key(route, kind, body, partition)
                if decision == "lookup":
                    found.answer = await self.exact.get(found.key)
                    if found.answer is not None:
                        found.status = "hit"
                        return found
            text = prompt_text(body) if spec.semantic_threshold is not None and kind != "embedding" else None
            if text is not None:
                found.scope = semantic_scope(route, kind, body, partition)
                found.vector = unit(await self.embed(spec.embedding_model, text))
                if decision == "lookup":
                    near = await self.semantic.nearest(found.scope, found.vector, spec.semantic_threshold or 1.0)
                    if near is not None:
                        found.similarity, found.answer = near
                        found.status = "semantic-hit"
        except Exception as exc:
            log.warning("cache lookup on route %s failed (%s); answering without the cache", route, exc)
            return Lookup("error")
        return found

    async def store(self, found: Lookup, ttl: float, answer: dict[str, Any]) -> None:
        """Keep a fresh answer under the lookup's exact key and semantic vector."""
        try:
            if found.key is not None:
                await self.exact.put(found.key, answer, ttl)
            if found.scope is not None and found.vector is not None:
                await self.semantic.add(found.scope, found.vector, answer, ttl)
        except Exception as exc:
            log.warning("storing an answer in the cache failed (%s)", exc)


def as_chunks(result: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A cached chat or text completion replayed as the chunks of a stream."""
    chat = result.get("object") == "chat.completion"
    base = {
        "id": result.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": result.get("created"),
        "model": result.get("model"),
    }
    frames = []
    finals = []
    for c in result.get("choices") or []:
        i = c.get("index", 0)
        if chat:
            message = c.get("message") or {}
            delta = {"role": "assistant", "content": message.get("content")}
            if message.get("tool_calls"):
                delta["tool_calls"] = [{**t, "index": n} for n, t in enumerate(message["tool_calls"])]
            frames.append({**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
            finals.append({"index": i, "delta": {}, "finish_reason": c.get("finish_reason")})
        else:
            frames.append({**base, "choices": [{"index": i, "text": c.get("text", ""), "finish_reason": None}]})
            finals.append({"index": i, "text": "", "finish_reason": c.get("finish_reason")})
    frames.append({**base, "choices": finals})
    if include_usage:  # only when asked, as OpenAI does
        frames.append({**base, "choices": [], "usage": result.get("usage")})
    return frames
