"""What an eval run is asked to do, as the API, the CLI's suite files and the SDK send it: the dataset
version, the target, the evaluators, how row fields map onto the sample, thresholds for the gate, and
limits. Bounded at the edge: sizes, counts and ranges are checked here, before anything runs."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from podium.core.errors import InvalidInput

MAX_EVALUATORS = 32
MAX_TARGETS = 8
MAX_THRESHOLDS = 64
MAX_ROWS = 100_000
MAX_OUTPUT_CHARS = 100_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/@-]{0,119}$")


class Target(BaseModel):
    """What produces the outputs: a gateway `model` (or route), a `prompt` version rendered with each row and
    sent to `model`, a `chain` version run on each row (through the gateway as `chain:<ref>`), or `outputs`
    computed by the caller (the SDK running a Python callable sends them)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["model", "prompt", "chain", "outputs"] = "model"
    model: str | None = Field(None, max_length=200)
    prompt: str | None = Field(None, max_length=200, description="A prompt reference: `name@label`, `name@3`.")
    chain: str | None = Field(None, max_length=200, description="A chain reference: `name@label`, `name@3`.")
    inputs: dict[str, str] | None = Field(
        None,
        max_length=100,
        description="A chain target's inputs: input name → dataset column (default: the row's input column fills"
        " the chain's question/query/input/message input, or its only required one).",
    )
    system: str | None = Field(None, max_length=20_000, description="A system message before each row's input.")
    params: dict[str, Any] = Field(default_factory=dict, description="Model parameters (temperature, max_tokens…).")
    label: str | None = Field(None, max_length=200, description="How the run names its target.")
    retrieval: dict[str, Any] | None = Field(
        None,
        description="Retrieval-augmented target: the gateway's `retrieval` field (`kb`, `k`, `mode`, `filter`,"
        " `rerank`) sent with each row; the chunks it cites are the row's context for the RAG evaluators.",
    )

    @model_validator(mode="after")
    def _complete(self) -> Target:
        if self.type == "model" and not self.model:
            raise ValueError("a model target needs 'model' (a gateway model or route)")
        if self.type == "prompt" and (not self.prompt or not self.model):
            raise ValueError("a prompt target needs 'prompt' (name@label) and 'model'")
        if self.type == "chain" and not self.chain:
            raise ValueError("a chain target needs 'chain'")
        if self.inputs is not None and self.type != "chain":
            raise ValueError("inputs go with a chain target")
        if self.retrieval is not None:
            if self.type not in ("model", "prompt"):
                raise ValueError("retrieval goes with a model or prompt target")
            kb = self.retrieval.get("kb")
            if not isinstance(kb, str) or not kb.strip():
                raise ValueError("retrieval needs 'kb': a knowledge-base reference (name@label)")
        for key in ("model", "messages", "stream", "prompt", "n", "retrieval"):
            if key in self.params:
                raise ValueError(f"params may not set {key!r}")
        return self

    def describe(self) -> str:
        """A one-line name for tables and pages."""
        if self.label:
            return self.label
        rag = f" + {self.retrieval['kb']}" if self.retrieval is not None else ""
        if self.type == "prompt":
            return f"{self.prompt} on {self.model}{rag}"
        if self.type == "chain":
            return f"chain:{self.chain}"
        if self.type == "outputs":
            return "outputs (computed by the caller)"
        if self.system:
            short = self.system if len(self.system) <= 40 else self.system[:39] + "…"
            return f"{self.model} (system: {short}){rag}"
        return f"{self.model}{rag}"


class Fields(BaseModel):
    """Which dataset columns feed the sample."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field("input", max_length=120, description="The user message (model targets).")
    messages: str | None = Field(None, max_length=120, description="A column of chat messages, sent as they are.")
    reference: str = Field("reference", max_length=120, description="The expected answer.")
    context: str = Field("context", max_length=120, description="Retrieved passages (a list or one text).")


class Threshold(BaseModel):
    """A gate check on a score's mean: absolute (`min`/`max`), or against a baseline run: the mean may not be
    worse than the baseline's by more than `max_drop` (direction from the score: lower is better for
    latency, cost, tokens, toxicity and perplexity)."""

    model_config = ConfigDict(extra="forbid")

    score: str = Field(max_length=120)
    min: float | None = None
    max: float | None = None
    baseline: str | None = Field(None, max_length=40, description="An eval run id (`evr_…`).")
    max_drop: float | None = Field(None, ge=0)
    max_failed_rows: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _some(self) -> Threshold:
        if self.min is None and self.max is None and self.baseline is None and self.max_failed_rows is None:
            raise ValueError(f"threshold on {self.score!r}: give min, max, baseline with max_drop, or max_failed_rows")
        if self.baseline is not None and self.max_drop is None:
            raise ValueError(f"threshold on {self.score!r}: a baseline needs 'max_drop' (0 for no regression)")
        return self


class OutputIn(BaseModel):
    """An output computed by the caller for row `index` (an `outputs` target), with its own scores from
    evaluators that only the caller has (custom Python functions)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    output: str | None = Field(None, max_length=MAX_OUTPUT_CHARS)
    error: str | None = Field(None, max_length=10_000)
    latency_ms: float | None = Field(None, ge=0)
    trace_id: str | None = Field(None, max_length=40)
    scores: dict[str, float] = Field(default_factory=dict)


class Bias(BaseModel):
    """A counterfactual bias test: swap demographic terms in `fields` and run the swapped rows too. `lists`
    names built-in term lists (gender, names, groups); `terms` adds the caller's own, in the same format
    (`{name, description, pairs: [[a, b], [x, y, z]]}`); the CLI inlines a suite's `files` here."""

    model_config = ConfigDict(extra="forbid")

    lists: list[str] = Field(default_factory=lambda: ["gender"], max_length=16)
    terms: list[dict[str, Any]] = Field(default_factory=list, max_length=16)
    fields: list[str] = Field(default_factory=lambda: ["input"], max_length=16)

    def term_lists(self) -> list[Any]:
        """The built-in and given term lists (InvalidInput naming a bad one)."""
        from pathlib import Path

        from podium.evals.bias import load_lists, parse_list

        lists = load_lists(self.lists)
        lists += [parse_list(t, Path(f"bias.terms[{i}]")) for i, t in enumerate(self.terms)]
        return lists


class RunSpec(BaseModel):
    """One eval run: a target over a dataset version with evaluators."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("eval", description="A name for the run (a suite's name).")
    dataset: str = Field(max_length=200, description="A dataset version: `name@label`, `name@3`, `dsv_…`.")
    target: Target
    evaluators: list[dict[str, Any] | str] = Field(max_length=MAX_EVALUATORS)
    fields: Fields = Field(default_factory=Fields)
    judge: str | None = Field(None, max_length=200, description="The default judge model of model-based evaluators.")
    embedder: str | None = Field(None, max_length=200, description="The default embedding model.")
    concurrency: int = Field(8, ge=1, le=64)
    limit: int | None = Field(None, ge=1, le=MAX_ROWS, description="Evaluate only the first N rows.")
    cache: bool = Field(True, description="Re-use cached model calls and verdicts.")
    thresholds: list[Threshold] = Field(default_factory=list, max_length=MAX_THRESHOLDS)
    outputs: list[OutputIn] | None = Field(None, max_length=MAX_ROWS)
    bias: Bias | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("1-120 letters, digits, spaces or '._:/@-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _outputs(self) -> RunSpec:
        if (self.target.type == "outputs") != (self.outputs is not None):
            raise ValueError("'outputs' comes with a target of type 'outputs', and only with one")
        return self


class Suite(BaseModel):
    """A suite file: a dataset, one or more targets, evaluators and thresholds; one run per target."""

    model_config = ConfigDict(extra="forbid")

    name: str = "suite"
    dataset: str = Field(max_length=200)
    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS)
    evaluators: list[dict[str, Any] | str] = Field(min_length=1, max_length=MAX_EVALUATORS)
    fields: Fields = Field(default_factory=Fields)
    judge: str | None = Field(None, max_length=200)
    embedder: str | None = Field(None, max_length=200)
    concurrency: int = Field(8, ge=1, le=64)
    limit: int | None = Field(None, ge=1, le=MAX_ROWS)
    cache: bool = True
    thresholds: list[Threshold] = Field(default_factory=list, max_length=MAX_THRESHOLDS)
    bias: Bias | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and "target" in data and "targets" not in data:
            data = {**data, "targets": [data["target"]]}
            del data["target"]
        return data

    def runs(self) -> list[RunSpec]:
        """One run spec per target; what only a whole run can check (its name, an `outputs` target, which a
        suite cannot carry) is refused here naming the target."""
        common = self.model_dump(exclude={"targets"})
        specs = []
        for i, t in enumerate(self.targets):
            try:
                specs.append(RunSpec.model_validate({**common, "target": t.model_dump()}))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'suite'}: {e['msg']}" for e in exc.errors())
                raise InvalidInput(f"targets[{i}]: {problems}", details={"target": i}) from None
        return specs
