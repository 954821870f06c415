"""Preparation pipelines: steps declared in YAML or Python, checked whole before any row is read, run over a
version's rows in one streaming pass, and recorded in the new version's lineage (each step with its
configuration and report).

    seed: 7
    steps:
      - normalize: {unicode: NFKC}
      - dedup: {field: text}
      - near_dedup: {threshold: 0.8}

A step is `{name: {settings}}` or `{step: name, ...settings}`. An unknown step, an unknown setting or a bad
value fails before work starts, naming the field (`steps[2].threshold`); a failing step leaves no version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import yaml
from pydantic import ValidationError

from podium.core import yamlload
from podium.core.errors import InvalidInput
from podium.data import steps as _steps  # noqa: F401  (registers every step)
from podium.data.steps.base import STEPS, Step, StepContext

MAX_STEPS = 50
MAX_SPEC_CHARS = 64 * 1024


@dataclass(frozen=True)
class StepSpec:
    """One step as declared: its name and validated settings."""

    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class PipelineSpec:
    """A whole pipeline as declared."""

    steps: tuple[StepSpec, ...]
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The canonical form recorded in lineage."""
        return {"seed": self.seed, "steps": [{s.name: s.config} for s in self.steps]}


def parse(spec: Any) -> PipelineSpec:
    """A pipeline from YAML text, a dict `{seed, steps}` or a list of steps; `InvalidInput` names the field."""
    if isinstance(spec, str):
        if len(spec) > MAX_SPEC_CHARS:
            raise InvalidInput(f"the pipeline is over {MAX_SPEC_CHARS} characters", details={"field": "pipeline"})
        try:
            spec = yamlload.load(spec)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"the pipeline is not valid YAML: {exc}", details={"field": "pipeline"}) from None
    if isinstance(spec, list):
        spec = {"steps": spec}
    if not isinstance(spec, dict):
        raise InvalidInput("a pipeline is a mapping with `steps` (a list)", details={"field": "pipeline"})
    unknown = set(spec) - {"steps", "seed"}
    if unknown:
        raise InvalidInput(
            f"unknown pipeline setting(s) {', '.join(sorted(map(str, unknown)))}; known: steps, seed",
            details={"field": sorted(map(str, unknown))[0]},
        )
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InvalidInput("seed must be an integer", details={"field": "seed"})
    items = spec.get("steps")
    if not isinstance(items, list) or not items:
        raise InvalidInput("`steps` must be a non-empty list of steps", details={"field": "steps"})
    if len(items) > MAX_STEPS:
        raise InvalidInput(f"a pipeline has at most {MAX_STEPS} steps", details={"field": "steps"})
    return PipelineSpec(tuple(_step(i, item) for i, item in enumerate(items)), seed)


def _step(i: int, item: Any) -> StepSpec:
    where = f"steps[{i}]"
    if isinstance(item, str):
        name, settings = item, {}
    elif isinstance(item, dict) and "step" in item:
        name, settings = item["step"], {k: v for k, v in item.items() if k != "step"}
    elif isinstance(item, dict) and len(item) == 1:
        name, settings = next(iter(item.items()))
        settings = {} if settings is None else settings
    else:
        raise InvalidInput(
            f"{where}: a step is `name`, `{{name: {{settings}}}}` or `{{step: name, ...}}`", details={"field": where}
        )
    if not isinstance(name, str) or name not in STEPS:
        raise InvalidInput(
            f"{where}: unknown step {name!r}; known steps: {', '.join(sorted(STEPS))}", details={"field": where}
        )
    if not isinstance(settings, dict):
        raise InvalidInput(f"{where}: the settings of {name!r} must be a mapping", details={"field": where})
    try:
        config = STEPS[name].Config.model_validate(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        field = f"{where}.{loc}" if loc else where
        raise InvalidInput(f"{field}: {err['msg']} (step {name!r})", details={"field": field}) from None
    return StepSpec(name, config.model_dump(mode="json"))


class Pipeline:
    """Steps built from a spec and checked against an input schema; `run` streams batches through them."""

    def __init__(self, spec: PipelineSpec, ctx: StepContext, schema: pa.Schema):
        self.spec = spec
        self.steps: list[Step] = []
        for i, s in enumerate(spec.steps):
            cls = STEPS[s.name]
            self.steps.append(cls(cls.Config.model_validate(s.config), ctx, prefix=f"steps[{i}]"))
        self.schemas = [schema]
        for step in self.steps:  # every step checked before any row is read
            self.schemas.append(step.output_schema(self.schemas[-1]))
        self.rows_in = [0] * len(self.steps)
        self.rows_out = [0] * len(self.steps)

    @property
    def schema(self) -> pa.Schema:
        """The schema of the rows the pipeline outputs."""
        return self.schemas[-1]

    def _through(self, table: pa.Table, start: int) -> pa.Table:
        for i in range(start, len(self.steps)):
            if table.num_rows == 0:
                return table
            offset = self.rows_in[i]
            self.rows_in[i] += table.num_rows
            table = self.steps[i].apply(table, offset)
            self.rows_out[i] += table.num_rows
        return table

    def run(self, batches: Iterable[pa.Table], progress: Callable[[int], None] | None = None) -> Iterator[pa.Table]:
        """The output rows, batch by batch; then whatever steps held back to the end."""
        seen = 0
        for batch in batches:
            out = self._through(batch, 0)
            seen += batch.num_rows
            if progress is not None:
                progress(seen)
            if out.num_rows:
                yield out
        for i, step in enumerate(self.steps):
            tail = step.finish()
            if tail is not None and tail.num_rows:
                self.rows_out[i] += tail.num_rows
                out = self._through(tail, i + 1)
                if out.num_rows:
                    yield out

    def lineage(self) -> list[dict[str, Any]]:
        """Each step: its name, settings, rows in and out, and its report."""
        return [
            {
                "step": spec.name,
                "config": spec.config,
                "rows_in": self.rows_in[i],
                "rows_out": self.rows_out[i],
                "report": step.report(),
            }
            for i, (spec, step) in enumerate(zip(self.spec.steps, self.steps, strict=True))
        ]
