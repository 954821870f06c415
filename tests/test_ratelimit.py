"""The in-process sliding window behind failed sign-ins."""

from __future__ import annotations

import time

from podium.core.ratelimit import SlidingWindow


def test_a_key_over_its_limit_waits_until_its_oldest_event_leaves_the_window() -> None:
    window = SlidingWindow(limit=2, seconds=0.5)
    assert window.wait("a") == 0
    window.hit("a")
    assert window.wait("a") == 0
    window.hit("a")
    assert window.wait("a") == 1  # whole seconds, at least one
    assert window.wait("b") == 0  # keys are counted apart
    time.sleep(0.6)
    assert window.wait("a") == 0


def test_it_remembers_a_bounded_number_of_keys() -> None:
    window = SlidingWindow(limit=1, seconds=60, max_keys=3)
    for key in "abcd":
        window.hit(key)
    assert window.wait("a") == 0  # the oldest key was forgotten
    assert window.wait("d") > 1
