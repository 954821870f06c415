"""Prometheus text for collectors that read the database at scrape time (the monitors', the alert states),
kept a few seconds per database so frequent scrapes (or several scrapers) cost one read."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector


class CachedExposition:
    """`render(key)` builds a fresh registry around `collector(key)`'s result and keeps the text `seconds`."""

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def render(self, key: str, collector: Callable[[], Collector]) -> bytes:
        """The text for `key` (a database URL): cached, or collected now."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < self.seconds:
                return cached[1]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector())
        body = generate_latest(registry)
        with self._lock:
            self._cache[key] = (now, body)
        return body
