"""Per-deployment health: a circuit breaker, in-flight counts and a latency EWMA; retry delays."""

from __future__ import annotations

import random
import time


class Breaker:
    """Closed → open after `failures` consecutive failures → half-open after `cooldown` (one probe at a time)
    → closed on the probe's success, open again on its failure."""

    def __init__(self, failures: int = 5, cooldown: float = 30.0):
        self.failures = failures
        self.cooldown = cooldown
        self.consecutive = 0
        self.open_until = 0.0
        self.probing = False

    @property
    def state(self) -> str:
        """closed, open or half-open."""
        if self.consecutive < self.failures:
            return "closed"
        return "open" if time.monotonic() < self.open_until else "half-open"

    def allows(self) -> bool:
        """Whether a request may go to this deployment now (does not take the probe)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self.probing)

    def acquire(self) -> None:
        """Mark the start of a request; in half-open it is the probe."""
        if self.state == "half-open":
            self.probing = True

    def success(self) -> None:
        """A call worked: close."""
        self.consecutive = 0
        self.probing = False

    def failure(self) -> None:
        """A call failed: count it; open (again) at the threshold."""
        self.consecutive += 1
        self.probing = False
        if self.consecutive >= self.failures:
            self.open_until = time.monotonic() + self.cooldown

    def release(self) -> None:
        """A call ended without a verdict on the deployment (client left, request refused): free the probe."""
        self.probing = False


class Health:
    """Live figures of one deployment used by the routing strategies."""

    def __init__(self, breaker: Breaker):
        self.breaker = breaker
        self.inflight = 0
        self.ewma_ms: float | None = None
        self.alpha = 0.3

    def observe(self, latency_ms: float) -> None:
        """Fold a successful call's latency into the EWMA."""
        self.ewma_ms = latency_ms if self.ewma_ms is None else self.alpha * latency_ms + (1 - self.alpha) * self.ewma_ms


def backoff_delay(attempt: int, base: float, retry_after: float | None, cap: float) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based) on the same deployment: exponential with full
    jitter, at least the upstream's Retry-After; None when Retry-After asks for longer than `cap`."""
    if retry_after is not None and retry_after > cap:
        return None
    delay = random.uniform(0.5, 1.0) * base * (2**attempt)  # nosec B311  # not security: load spreading, jitter and experiment arms
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(min(delay, cap))
