"""The exact response cache: answers keyed by a hash of the canonicalised request, per route, with a TTL.

In-process (an LRU of at most `max_entries`); a cached answer is replayed as JSON or as a stream. Requests
with `temperature > 0` are not cached unless the route allows it, and `Cache-Control: no-cache` skips
the lookup (the fresh answer is still stored).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any

import orjson

from podium.gateway.spec import CacheSpec

# fields that do not change the answer, or that only change how it is delivered
_IGNORED = frozenset({"stream", "stream_options", "user", "metadata"})


def cache_key(route: str, kind: str, body: dict[str, Any]) -> str:
    """A stable hash of what determines the answer (key order and delivery fields do not matter)."""
    canonical = {k: v for k, v in body.items() if k not in _IGNORED}
    raw = orjson.dumps([route, kind, canonical], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


def cache_decision(spec: CacheSpec, body: dict[str, Any], cache_control: str | None) -> str:
    """`lookup`, `bypass` (client said no-cache) or `off` (not enabled, or a sampled request)."""
    if not spec.exact:
        return "off"
    temperature = body.get("temperature", 1.0)
    if not spec.allow_temperature and not (isinstance(temperature, int | float) and temperature <= 0):
        return "off"
    if cache_control and "no-cache" in cache_control.lower():
        return "bypass"
    return "lookup"


class ExactCache:
    """An in-process LRU with per-entry expiry."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
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

    def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store an answer for `ttl` seconds."""
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def as_chunks(result: dict[str, Any], include_usage: bool) -> list[bytes]:
    """A cached chat or text completion replayed as server-sent events."""
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
    last: dict[str, Any] = {**base, "choices": finals}
    if include_usage:
        frames.append(last)
        frames.append({**base, "choices": [], "usage": result.get("usage")})
    else:
        frames.append({**last, "usage": result.get("usage")})
    return [b"data: " + orjson.dumps(f) + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"]
