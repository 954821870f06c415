"""Operational thresholds: how long the call took, what it cost, how many tokens it used. Each gives a pass
score (1/0 against its limit) and the raw measurement as a second score, so a suite can gate on the first
and chart the second."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from podium.evals.evaluators.base import Models, Sample, Verdict, register
from podium.evals.evaluators.reference import OUTPUT, check_name


def _limit(value: object, setting: str, *, integer: bool = False) -> float:
    """A non-negative limit setting (an integer when `integer`)."""
    kind = "integer" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and isinstance(value, float)):
        raise ValueError(f"{setting} must be a non-negative {kind}")
    if value < 0:
        raise ValueError(f"{setting} must be a non-negative {kind}")
    return float(value)


def _measure_name(name: str, default: str, measure: str) -> str:
    """The raw measurement's score name: `latency_ms`, or `<name>_latency_ms` when the evaluator is renamed (two
    latency gates with different limits keep distinct names)."""
    return measure if name == default else f"{name}_{measure}"


def _verdict(name: str, passed: bool, measures: dict[str, float], explanation: str) -> Verdict:
    return Verdict({name: float(passed), **measures}, label="pass" if passed else "fail", explanation=explanation)


@dataclass(kw_only=True)
class Latency:
    """1 when the call took at most `max_ms` milliseconds; `latency_ms` is the measurement."""

    name: str = "latency"
    max_ms: float | None = None
    needs: frozenset[str] = field(default=OUTPUT, init=False)
    measures: ClassVar[bool] = True  # reads the call's latency, cost and tokens (part of its verdict's cache key)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        if self.max_ms is None:
            raise ValueError("the max_ms setting is required")
        self.max_ms = _limit(self.max_ms, "max_ms")

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        if sample.latency_ms is None:
            return Verdict(error="no latency recorded for this row")
        assert self.max_ms is not None
        took = float(sample.latency_ms)
        passed = took <= self.max_ms
        return _verdict(
            self.name,
            passed,
            {_measure_name(self.name, "latency", "latency_ms"): took},
            f"{took:.0f} ms {'<=' if passed else '>'} {self.max_ms:g} ms",
        )


def _micros(value: object) -> int:
    """A dollar amount given as a number or a string ("0.002") in micro-dollars, exactly for decimal strings."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("max_usd must be a number of dollars (or a string like '0.002')")
    try:
        dollars = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"max_usd {value!r} is not a number of dollars") from None
    if not dollars.is_finite() or dollars < 0:
        raise ValueError("max_usd must be a non-negative number of dollars")
    return int((dollars * 1_000_000).to_integral_value())


@dataclass(kw_only=True)
class Cost:
    """1 when the call cost at most `max_usd` dollars (compared in whole micro-dollars, no float drift);
    `cost_usd` is the measurement."""

    name: str = "cost"
    max_usd: float | str | None = None
    needs: frozenset[str] = field(default=OUTPUT, init=False)
    measures: ClassVar[bool] = True  # reads the call's latency, cost and tokens (part of its verdict's cache key)
    _max_micros: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        if self.max_usd is None:
            raise ValueError("the max_usd setting is required")
        self._max_micros = _micros(self.max_usd)

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        cost: int | None = sample.cost_micros
        if cost is None:  # Sample says int; a runner that could not price the call may still leave it unset
            return Verdict(error="no cost recorded for this row")
        passed = cost <= self._max_micros
        return _verdict(
            self.name,
            passed,
            {_measure_name(self.name, "cost", "cost_usd"): cost / 1_000_000},
            f"${cost / 1_000_000:.6f} {'<=' if passed else '>'} ${self._max_micros / 1_000_000:.6f}",
        )


@dataclass(kw_only=True)
class Tokens:
    """1 when the call stayed within every limit given: `max_total`, `max_completion`, `max_prompt` tokens;
    `total_tokens` is the measurement. A row with no token counts (both zero) is an error, not a pass."""

    name: str = "tokens"
    max_total: int | None = None
    max_completion: int | None = None
    max_prompt: int | None = None
    needs: frozenset[str] = field(default=OUTPUT, init=False)
    measures: ClassVar[bool] = True  # reads the call's latency, cost and tokens (part of its verdict's cache key)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        limits = {"max_total": self.max_total, "max_completion": self.max_completion, "max_prompt": self.max_prompt}
        if all(v is None for v in limits.values()):
            raise ValueError("give at least one of max_total, max_completion, max_prompt")
        for setting, value in limits.items():
            if value is not None:
                _limit(value, setting, integer=True)

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        prompt: int | None = sample.prompt_tokens
        completion: int | None = sample.completion_tokens
        if prompt is None or completion is None or (prompt == 0 and completion == 0):
            return Verdict(error="no token counts recorded for this row")
        total = prompt + completion
        over = [
            f"{what} {used} > {limit}"
            for what, used, limit in (
                ("total", total, self.max_total),
                ("completion", completion, self.max_completion),
                ("prompt", prompt, self.max_prompt),
            )
            if limit is not None and used > limit
        ]
        explanation = "; ".join(over) if over else f"{total} tokens ({prompt} prompt, {completion} completion)"
        return _verdict(
            self.name, not over, {_measure_name(self.name, "tokens", "total_tokens"): float(total)}, explanation
        )


register("latency", Latency, "1 when the call took at most max_ms milliseconds (with latency_ms)")
register("cost", Cost, "1 when the call cost at most max_usd dollars (with cost_usd)")
register("tokens", Tokens, "1 when the call used at most max_total / max_completion / max_prompt tokens")
