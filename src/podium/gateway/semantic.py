"""Semantic cache stores: answers kept with the unit-length embedding of their prompt, per scope (route,
endpoint and every parameter but the prompt); a lookup returns the closest entry at or above a cosine
threshold. In-process by default; in Redis so every worker and host shares the entries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

MAX_PER_SCOPE = 1_000  # in-process entries per scope; the oldest go first
MAX_SCOPES = 10_000  # in-process scopes (route, endpoint, parameters, project); the least recently used go
MAX_PER_SCOPE_REDIS = 256  # Redis entries per scope (each lookup reads the scope's vectors)


def unit(vector: list[float]) -> np.ndarray:
    """A float32 copy scaled to length 1 (so a dot product is the cosine)."""
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class SemanticStore(Protocol):
    """Where semantic entries live."""

    async def nearest(self, scope: str, vector: np.ndarray, threshold: float) -> tuple[float, dict[str, Any]] | None:
        """The most similar live entry's (cosine, answer) if its cosine is at least `threshold`."""

    async def add(self, scope: str, vector: np.ndarray, answer: dict[str, Any], ttl: float) -> None:
        """Keep an answer for `ttl` seconds."""


@dataclass
class _Scope:
    vectors: list[np.ndarray] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    expires: list[float] = field(default_factory=list)
    matrix: np.ndarray | None = None  # stacked vectors, rebuilt after a change


class MemorySemanticStore:
    """Entries in this process."""

    def __init__(self, max_per_scope: int = MAX_PER_SCOPE):
        self.max_per_scope = max_per_scope
        self._scopes: dict[str, _Scope] = {}

    async def nearest(self, scope: str, vector: np.ndarray, threshold: float) -> tuple[float, dict[str, Any]] | None:
        """See `SemanticStore.nearest`."""
        s = self._scopes.get(scope)
        if s is None or not s.vectors:
            return None
        now = time.monotonic()
        if s.expires[0] < now:  # drop expired entries (oldest first: they were added in order)
            keep = [i for i, t in enumerate(s.expires) if t >= now]
            s.vectors = [s.vectors[i] for i in keep]
            s.answers = [s.answers[i] for i in keep]
            s.expires = [s.expires[i] for i in keep]
            s.matrix = None
            if not keep:
                return None
        if s.matrix is None:
            s.matrix = np.stack(s.vectors)
        scores = s.matrix @ vector
        best = int(np.argmax(scores))
        score = float(scores[best])
        return (score, s.answers[best]) if score >= threshold else None

    async def add(self, scope: str, vector: np.ndarray, answer: dict[str, Any], ttl: float) -> None:
        """See `SemanticStore.add`. At most `MAX_SCOPES` scopes are kept: a new one pushes out the least
        recently added to (each parameter set is a scope, so clients could otherwise make them without end)."""
        s = self._scopes.pop(scope, None) or _Scope()
        self._scopes[scope] = s  # to the end: the dict's order is the order of last use
        while len(self._scopes) > MAX_SCOPES:
            del self._scopes[next(iter(self._scopes))]
        s.vectors.append(vector)
        s.answers.append(answer)
        s.expires.append(time.monotonic() + ttl)
        if len(s.vectors) > self.max_per_scope:
            del s.vectors[0], s.answers[0], s.expires[0]
        s.matrix = None


class RedisSemanticStore:
    """Entries in Redis: per scope a list of entry ids (newest first, capped) and, per entry, its vector
    and answer with a TTL. A lookup reads the scope's vectors and compares them here."""

    def __init__(self, client: Any, prefix: str = "podium:semantic:", max_per_scope: int = MAX_PER_SCOPE_REDIS):
        self.client = client
        self.prefix = prefix
        self.max_per_scope = max_per_scope

    async def nearest(self, scope: str, vector: np.ndarray, threshold: float) -> tuple[float, dict[str, Any]] | None:
        """See `SemanticStore.nearest`."""
        ids = await self.client.lrange(self.prefix + scope, 0, self.max_per_scope - 1)
        if not ids:
            return None
        keys = [self.prefix + "v:" + i.decode() for i in ids]
        blobs = await self.client.mget(keys)
        live = [(k, b) for k, b in zip(keys, blobs, strict=True) if b is not None]
        if not live:
            return None
        matrix = np.stack([np.frombuffer(b[: vector.size * 2], dtype=np.float16) for _, b in live]).astype(np.float32)
        scores = matrix @ vector
        best = int(np.argmax(scores))
        if float(scores[best]) < threshold:
            return None
        answer = await self.client.get(live[best][0].replace(":v:", ":a:", 1))
        return None if answer is None else (float(scores[best]), orjson.loads(answer))

    async def add(self, scope: str, vector: np.ndarray, answer: dict[str, Any], ttl: float) -> None:
        """See `SemanticStore.add`."""
        from podium.core.ids import ulid

        entry = ulid()
        seconds = max(1, int(ttl))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.prefix + "v:" + entry, vector.astype(np.float16).tobytes(), ex=seconds)
            pipe.set(self.prefix + "a:" + entry, orjson.dumps(answer), ex=seconds)
            pipe.lpush(self.prefix + scope, entry)
            pipe.ltrim(self.prefix + scope, 0, self.max_per_scope - 1)
            pipe.expire(self.prefix + scope, seconds)
            await pipe.execute()
