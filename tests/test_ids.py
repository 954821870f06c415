"""Prefixed, sortable ids."""

from __future__ import annotations

import time

from podium.core.ids import new_id, ulid, ulid_time_ms


def test_ids_are_prefixed_unique_and_sorted() -> None:
    ids = [new_id("trc") for _ in range(5000)]
    assert all(i.startswith("trc_") and len(i) == 30 for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_ulid_encodes_time() -> None:
    before = time.time_ns() // 1_000_000
    value = ulid()
    after = time.time_ns() // 1_000_000
    assert before <= ulid_time_ms(value) <= after
    assert before <= ulid_time_ms("prj_" + value) <= after
