"""The evaluator interface: a sample (inputs, output, optional reference and context, and how the call went)
in, a verdict (one or more scores, a label, an explanation, what judging cost) out.

Every evaluator is an object with a `name`, the sample fields it `needs`, and an async `evaluate`. Reference
metrics are plain functions of the sample; model-based ones (judges, perplexity, embeddings, RAG metrics)
call models through the `Models` they are given, which the eval runner backs with the gateway and the call
cache. Evaluators are built by name from a spec (`{"type": "rouge", ...}`) through the registry below;
custom ones register with `@evaluator`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from podium.core.errors import InvalidInput

# the sample fields an evaluator may need; a dataset missing a column that feeds one is refused before any call
NEEDS = ("input", "output", "reference", "context")


@dataclass(frozen=True)
class Sample:
    """One row as evaluators see it: the row's fields (`inputs`), the target's `output`, the `reference`
    answer and retrieved `context` passages when the suite maps them, and the call's measurements."""

    inputs: Mapping[str, Any]
    output: str | None
    reference: Any = None
    context: tuple[str, ...] = ()
    latency_ms: float | None = None
    cost_micros: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def input_text(self) -> str:
        """The row's input as one text: its `input` field if there is one, else its fields as `k: v` lines."""
        if "input" in self.inputs and isinstance(self.inputs["input"], str):
            return self.inputs["input"]
        return "\n".join(f"{k}: {v}" for k, v in self.inputs.items())


@dataclass
class Verdict:
    """What an evaluator says about a sample: named scores (most evaluators give one, under their own name),
    a label, an explanation, the cost of judging in micro-dollars, and `error` when it could not score (a judge
    answer that did not parse: `raw` keeps the text). An errored verdict carries no scores: never a silent zero."""

    scores: dict[str, float] = field(default_factory=dict)
    label: str | None = None
    explanation: str | None = None
    cost_micros: int = 0
    error: str | None = None
    raw: str | None = None
    calls: int = 0  # model calls made (cache hits excluded)


@dataclass(frozen=True)
class Reply:
    """A model's answer to one call made for evaluation: text, the first tokens' top log-probs when asked,
    prompt log-probs when echoed, usage, cost, and whether it came from the eval cache."""

    text: str
    top_logprobs: tuple[dict[str, float], ...] = ()  # per generated token: {token: logprob}
    prompt_logprobs: tuple[float | None, ...] = ()  # per prompt token (echo); the first is None
    cost_micros: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    trace_id: str | None = None
    latency_ms: float | None = None  # of the call that made the answer (a cached answer keeps its call's)
    call_cost_micros: int = 0  # what the call that made the answer cost (`cost_micros` is this run's spend)
    context: tuple[str, ...] = ()  # the texts of the answer's `citations` (a retrieval-augmented call)


class ModelError(Exception):
    """A call made for evaluation failed (the gateway's error message, and the trace that recorded it)."""

    def __init__(self, message: str, trace_id: str | None = None):
        super().__init__(message)
        self.trace_id = trace_id


class Models(Protocol):
    """Model calls for evaluators, through the gateway, cached by model, parameters and full input."""

    judge_model: str | None  # the suite's default judge
    embedding_model: str | None  # the suite's default embedding model

    async def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Reply:
        """A chat completion (temperature 0 unless given); raises `ModelError` on failure."""
        ...

    async def complete(self, model: str, prompt: str, **params: Any) -> Reply:
        """A text completion (for prompt log-probs: `echo=True, logprobs=0, max_tokens=0`)."""
        ...

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Embedding vectors of `texts`."""
        ...

    async def remember(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """A value stored once per key for the whole platform (G-Eval's evaluation steps): made on first use."""
        ...


class Evaluator(Protocol):
    """Scores samples. `name` prefixes its scores; `needs` lists the sample fields it reads."""

    name: str
    needs: frozenset[str]

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        """Score one sample."""
        ...


Factory = Callable[..., Evaluator]
_FACTORIES: dict[str, tuple[Factory, str]] = {}


def register(kind: str, factory: Factory, description: str = "") -> None:
    """Make `kind` buildable from specs (`{"type": kind, ...}`); a later registration replaces an earlier one."""
    _FACTORIES[kind] = (factory, description)


def kinds() -> dict[str, str]:
    """Every evaluator type with its one-line description."""
    _load_builtins()
    return {k: d for k, (_, d) in sorted(_FACTORIES.items())}


def _load_builtins() -> None:
    from podium.evals.evaluators import load_builtins

    load_builtins()


def build(spec: Mapping[str, Any] | str) -> Evaluator:
    """The evaluator a suite names: a type name, or `{"type": ..., "name": ..., **settings}`. Unknown types
    and bad settings are `InvalidInput` naming the evaluator."""
    _load_builtins()
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        raise InvalidInput("an evaluator is a type name or an object with a 'type'", details={"evaluator": spec})
    settings = dict(spec)
    kind = settings.pop("type")
    if kind not in _FACTORIES:
        raise InvalidInput(f"unknown evaluator type {kind!r}", details={"known": sorted(_FACTORIES), "evaluator": kind})
    factory = _FACTORIES[kind][0]
    try:
        made = factory(**settings)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"evaluator {kind!r}: {exc}", details={"evaluator": kind}) from None
    return made


@dataclass
class FunctionEvaluator:
    """An evaluator made from a plain function of the sample (sync or async) returning a number, a bool, a
    dict of scores, or a `Verdict`."""

    name: str
    fn: Callable[..., Any]
    needs: frozenset[str] = frozenset({"output"})
    takes_models: bool = False

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        result = self.fn(sample, models) if self.takes_models else self.fn(sample)
        if isinstance(result, Awaitable):
            result = await result
        return as_verdict(self.name, result)


def as_verdict(name: str, result: Any) -> Verdict:
    """A function's result as a verdict: a number or bool is the score `name`; a dict is named scores."""
    if isinstance(result, Verdict):
        return result
    if isinstance(result, bool):
        return Verdict({name: 1.0 if result else 0.0})
    if isinstance(result, int | float):
        return Verdict({name: float(result)})
    if isinstance(result, Mapping) and all(isinstance(v, int | float) for v in result.values()):
        return Verdict({str(k): float(v) for k, v in result.items()})
    raise TypeError(
        f"evaluator {name!r} returned {type(result).__name__}; return a number, a bool, a dict or a Verdict"
    )


def evaluator(
    name: str | None = None, *, needs: tuple[str, ...] = ("output",), models: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a custom evaluator type: `@evaluator("polite")` then `{"type": "polite"}` in a
    suite. The function takes the `Sample` (and the `Models` when `models=True`)."""
    for need in needs:
        if need not in NEEDS:
            raise ValueError(f"needs: {need!r} is not one of {', '.join(NEEDS)}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        kind = name or fn.__name__

        def factory(**settings: Any) -> Evaluator:
            label = str(settings.pop("name", kind))
            if settings:
                raise TypeError(f"unexpected settings {sorted(settings)}")
            return FunctionEvaluator(label, fn, frozenset(needs), models)

        register(kind, factory, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco
