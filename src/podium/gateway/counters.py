"""Counters the governor reserves against: in this process (default) or in Redis (shared by every worker
and host). A reservation checks every limit and takes from all of them at once, or from none.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple, Protocol

log = logging.getLogger("podium.gateway.counters")


class Check(NamedTuple):
    """One limit a reservation must fit under: `base + counter + amount <= limit`.

    `base` is what the counter does not hold itself (spend other processes already committed to the
    database, for in-process counters); a shared counter starts from `seed` the first time it is used
    (the ledger total) and expires `ttl` seconds later. (A tuple: several are made for every request.)
    """

    key: str
    amount: int
    limit: int
    base: int = 0
    seed: int = 0
    ttl: int = 120


class Counters(Protocol):
    """Where counts live."""

    shared: bool

    async def reserve(self, checks: list[Check]) -> tuple[int, int] | None:
        """Add every check's amount if all fit; else add nothing and return (index, current total)."""

    async def adjust(self, deltas: list[tuple[str, int]]) -> None:
        """Add deltas (negative to give back a reservation)."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryCounters:
    """Counters in this process: exact for one worker; each worker counts its own requests per minute."""

    shared = False

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._next_prune = 0.0

    async def reserve(self, checks: list[Check]) -> tuple[int, int] | None:
        """See `Counters.reserve` (runs on the event loop, so it is atomic without a lock)."""
        values = self.values
        for i, c in enumerate(checks):
            total = c.base + values.get(c.key, 0)
            if total + c.amount > c.limit:
                return i, total
        now = time.monotonic()
        expires = self._expires
        for c in checks:
            values[c.key] = values.get(c.key, 0) + c.amount
            expires[c.key] = now + c.ttl
        if now > self._next_prune:
            self._prune(now)
        return None

    async def adjust(self, deltas: list[tuple[str, int]]) -> None:
        """See `Counters.adjust`."""
        self.add(deltas)

    def add(self, deltas: list[tuple[str, int]], ttl: int = 0) -> None:
        """Add deltas now (no await: callable from a `finally` that may be cancelled)."""
        values = self.values
        expires = self._expires
        until = time.monotonic() + ttl if ttl else 0.0
        for key, delta in deltas:
            values[key] = values.get(key, 0) + delta
            if ttl and expires.get(key, 0.0) < until:
                expires[key] = until

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._expires.items() if t < now]:
            self.values.pop(key, None)
            del self._expires[key]
        self._next_prune = now + 30

    async def aclose(self) -> None:
        """Nothing to release."""


# KEYS: counter keys; ARGV: four numbers per key (amount, limit, seed, ttl). Returns {0, 0} when every
# amount was added, else {index (1-based), current value} and nothing was added.
_RESERVE = """
local n = #KEYS
for i = 1, n do
  local b = (i - 1) * 4
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('SET', KEYS[i], ARGV[b + 3], 'EX', tonumber(ARGV[b + 4]))
  end
  local v = tonumber(redis.call('GET', KEYS[i]))
  if v + tonumber(ARGV[b + 1]) > tonumber(ARGV[b + 2]) then
    return {i, v}
  end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 4 + 1])
end
return {0, 0}
"""


_ADJUST = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i])
  end
end
return 0
"""


def redis_client(url: str) -> Any:
    """An asyncio Redis client (a connection pool) for `PODIUM_REDIS_URL`."""
    import redis.asyncio as redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


class RedisCounters:
    """Counters in Redis (`PODIUM_REDIS_URL`): one Lua script checks and reserves atomically, so workers
    and hosts share every limit exactly."""

    shared = True

    def __init__(self, client: Any, prefix: str = "podium:limits:"):
        self.client = client
        self.prefix = prefix
        self._reserve = self.client.register_script(_RESERVE)
        self._adjust = self.client.register_script(_ADJUST)

    async def reserve(self, checks: list[Check]) -> tuple[int, int] | None:
        """See `Counters.reserve`."""
        keys = [self.prefix + c.key for c in checks]
        args: list[int] = []
        for c in checks:
            args += [c.amount, c.limit, c.seed, c.ttl]
        index, value = await self._reserve(keys=keys, args=args)
        return None if int(index) == 0 else (int(index) - 1, int(value))

    async def adjust(self, deltas: list[tuple[str, int]]) -> None:
        """See `Counters.adjust` (a key that expired meanwhile is not brought back)."""
        deltas = [(k, d) for k, d in deltas if d]
        if deltas:
            await self._adjust(keys=[self.prefix + k for k, _ in deltas], args=[d for _, d in deltas])

    async def aclose(self) -> None:
        """Nothing to release: the app closes the shared client."""
