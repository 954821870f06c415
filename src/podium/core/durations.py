"""Durations written the way people write them (`90s`, `15m`, `24h`, `7d`, `2w`), and times given either as
ISO-8601 or as such a duration before or after now. One parser for keys' expiry, trace filters and retention.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from podium.core.db import utcnow
from podium.core.errors import InvalidInput

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> timedelta | None:
    """`15m` → 15 minutes; None if `value` is not a duration (so the caller can try another form)."""
    match = _DURATION.match(value.strip().lower())
    if match is None:
        return None
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def _iso(value: str, field: str, message: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(message, details={"field": field}) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_time(value: str, field: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC when it has no zone) or a duration ago (`15m`, `24h`, `7d`), as aware UTC."""
    ago = parse_duration(value)
    if ago is not None:
        return (now or utcnow()) - ago
    return _iso(
        value, field, f"{field} {value!r} is not an ISO-8601 time (2026-01-31T12:00:00Z) or a duration ago (24h, 7d)"
    )


def parse_expiry(value: str | None, now: datetime | None = None, field: str = "expires") -> datetime | None:
    """`30d`, `12h`, `90m` from now, or an ISO-8601 time (UTC if no zone), as an aware datetime in the future."""
    if value is None or value == "":
        return None
    now = now or utcnow()
    ahead = parse_duration(value)
    if ahead is not None:
        if ahead.total_seconds() <= 0:
            raise InvalidInput("expiry must be in the future", details={"field": field})
        return now + ahead
    parsed = _iso(value, field, f"expiry {value!r} is neither a duration like 30d/12h/15m nor an ISO-8601 time")
    if parsed <= now:
        raise InvalidInput(f"expiry {value} is in the past", details={"field": field})
    return parsed
