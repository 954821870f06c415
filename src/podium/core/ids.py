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
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid() -> str:
    """A new 26-character ULID, monotonic within this process."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        return _encode(ms, 10) + _encode(_last_rand, 16)


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
