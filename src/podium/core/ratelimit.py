"""A small in-process rate limit for rare, abuse-prone actions (failed sign-ins): at most `limit` events per
key in any `seconds`-long window. Per process by design: it bounds guessing without a shared store; the
gateway's request limits (RPM, budgets) are a different, shared mechanism."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque


class SlidingWindow:
    """Counts events per key over the last `seconds`; remembers at most `max_keys` keys (oldest forgotten)."""

    def __init__(self, limit: int, seconds: float, max_keys: int = 10_000):
        self.limit = limit
        self.seconds = seconds
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        while events and events[0] <= now - self.seconds:
            events.popleft()
        return events

    def hit(self, key: str) -> None:
        """Record one event for `key`."""
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)
            self._events.move_to_end(key)

    def wait(self, key: str) -> int:
        """Whole seconds until `key` may act again (0: now)."""
        now = time.monotonic()
        with self._lock:
            if key not in self._events:  # asking costs no memory: only events are remembered
                return 0
            events = self._recent(key, now)
            if len(events) < self.limit:
                return 0
            return max(1, math.ceil(events[-self.limit] + self.seconds - now))
