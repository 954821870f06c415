"""Engine-facing types shared by the worker's HTTP layer and the generation engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


class QueueFull(Exception):
    """The engine's waiting queue is full; the client should retry later (429)."""


@dataclass
class TokenOut:
    """One generated token, with its log-probability and the top alternatives when asked."""

    token_id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


@dataclass
class Finished:
    """The end of a sequence: `length`, `stop` (end-of-sequence token), `cancelled` or `error`."""

    reason: str
    error: str | None = None


Event = TokenOut | Finished


@dataclass
class SeqRequest:
    """One sequence to generate; `emit` is called from the engine thread for every event."""

    id: str
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    eos_ids: list[int]
    logprobs: int | None
    emit: Callable[[Event], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
