"""Retrying HTTP calls: one `Retry-After` parser and one backoff policy (exponential, jittered), shared by the
exporters (the SDK's span exporter and the OTLP exporter).

Only the delay is computed here; each caller waits its own way (the OTLP export sleeps, the span exporter
waits on its condition so that `flush()`, `configure()` and exit can wake it), which is why this is not a
retry decorator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delta-seconds (`120`) or an HTTP date
    (`Wed, 21 Oct 2026 07:28:00 GMT`); 0 for a time already past, None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: retry `n` (0-based) waits between half and all of
    `initial * 2**n`, at most `cap` seconds; a server's `Retry-After` raises the wait to what it asked (still
    at most `cap`)."""

    initial: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry)."""
        ceiling = min(self.cap, self.initial * 2.0 ** min(attempt, 64))
        wait = ceiling * random.uniform(0.5, 1.0)  # nosec B311  # not security: load spreading, jitter and experiment arms
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.cap)
