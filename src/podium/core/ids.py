"""Prefixed, time-sortable identifiers (`prj_01J…`) built on ULIDs.

A ULID is 48 bits of milliseconds and 80 random bits, written in Crockford base32 (26 chars), so
identifiers sort by creation time as plain strings. Within one millisecond the random part is
incremented, keeping ids from one process strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as two digits
_RANDOM_MASK = (1 << 80) - 1
_POOL_BYTES = 10 * 256  # random bytes fetched at once: one system call per 256 new milliseconds, not one each
_lock = threading.Lock()
_last_ms = -1
_last_time = ""  # `_last_ms` encoded
_last_rand = 0
_pool = b""
_pool_at = 0


def _time_part(ms: int) -> str:
    """48 bits of milliseconds as 10 digits."""
    p = _PAIRS
    return p[ms >> 40 & 1023] + p[ms >> 30 & 1023] + p[ms >> 20 & 1023] + p[ms >> 10 & 1023] + p[ms & 1023]


def _random_part(r: int) -> str:
    """80 random bits as 16 digits (two at a time from a table: ids are made on every request)."""
    p = _PAIRS
    return "".join(
        (
            p[r >> 70 & 1023],
            p[r >> 60 & 1023],
            p[r >> 50 & 1023],
            p[r >> 40 & 1023],
            p[r >> 30 & 1023],
            p[r >> 20 & 1023],
            p[r >> 10 & 1023],
            p[r & 1023],
        )
    )


def ulid() -> str:
    """A new 26-character ULID, monotonic within this process."""
    global _last_ms, _last_time, _last_rand, _pool, _pool_at
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _last_rand = (_last_rand + 1) & _RANDOM_MASK
        else:
            if _pool_at >= len(_pool):
                _pool, _pool_at = os.urandom(_POOL_BYTES), 0
            _last_ms, _last_time = ms, _time_part(ms)
            _last_rand = int.from_bytes(_pool[_pool_at : _pool_at + 10], "big") >> 1
            _pool_at += 10
        return _last_time + _random_part(_last_rand)


def _forget() -> None:
    """In a forked child: draw fresh randomness, so parent and child never make the same id."""
    global _last_ms, _pool, _pool_at
    _last_ms, _pool, _pool_at = -1, b"", 0


os.register_at_fork(after_in_child=_forget)


def new_id(prefix: str) -> str:
    """A prefixed id such as `prj_01JD3…`."""
    return f"{prefix}_{ulid()}"


def ulid_time_ms(value: str) -> int:
    """Milliseconds since the epoch encoded in a (possibly prefixed) id."""
    raw = value.rsplit("_", 1)[-1][:10]
    result = 0
    for ch in raw:
        result = result * 32 + _ALPHABET.index(ch)
    return result
