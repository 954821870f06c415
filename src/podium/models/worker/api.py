"""Engine-facing types shared by the worker's HTTP layer and the generation engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


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


class Constraint(Protocol):
    """What a sequence may generate next (a grammar, say), advanced token by token on the engine thread."""

    def apply(self, logits: Any) -> None:
        """Set the logits of every token not allowed next to -inf, in place (`logits` is one row)."""

    def accept(self, token: int) -> bool:
        """Advance past `token`; False if it was not allowed."""

    def done(self) -> bool:
        """True once the grammar has ended (its stop token accepted)."""


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
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    constraint: Constraint | None = None

    @property
    def adjusts(self) -> bool:
        """Whether the model's logits are changed before sampling (penalties, biases, a constraint)."""
        return bool(self.constraint or self.logit_bias or self.presence_penalty or self.frequency_penalty)
