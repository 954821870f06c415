"""Experiment assignment: which arm (prompt version) a request gets, sticky by user or session.

The same user (or session) always lands in the same arm while the shares stay put: a hash of the
experiment id and the key gives a point in [0, 1) that is looked up in the cumulative shares. When a
bandit moves the shares, only the users whose points fall in the moved slice change arms. Requests
without a key are assigned at random.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def point(experiment_id: str, key: str) -> float:
    """A stable point in [0, 1) for this experiment and key."""
    digest = hashlib.blake2b(f"{experiment_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick(experiment_id: str, arms: Sequence[tuple[str, float]], key: str | None) -> str:
    """The version id of the arm for `key` (random when there is none); shares need not sum exactly to 1."""
    if not arms:
        raise ValueError("an experiment needs at least one arm")
    total = sum(max(share, 0.0) for _, share in arms)
    if total <= 0:
        return arms[0][0]
    at = (point(experiment_id, key) if key else random.random()) * total  # nosec B311  # not security: load spreading, jitter and experiment arms
    for version_id, share in arms:
        at -= max(share, 0.0)
        if at < 0:
            return version_id
    return arms[-1][0]
