"""What every preparation step is: a typed configuration, a check of the columns it needs, and a pass over
the rows in batches that keeps memory bounded.

A pipeline checks every step against the schema the previous step produces (`output_schema`) before any
row is read, so an unknown field or a bad setting fails before work starts, naming the field. Then batches
(`pyarrow.Table`, at most a few thousand rows each) flow through `apply` in order; `finish` may emit rows
held back until the end (a fixed-size sample), and `report` says what the step did, for lineage and the
dataset card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from podium.core.errors import InvalidInput


class StepConfig(BaseModel):
    """Base of every step's settings: unknown keys are errors (a typo must not silently do nothing)."""

    model_config = ConfigDict(extra="forbid")


class Tokenizer(Protocol):
    """What steps need of a tokenizer: token ids of many texts at once, and text back from ids."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens)."""
        ...

    def decode(self, ids: list[int]) -> str:
        """The text of some token ids."""
        ...


@dataclass
class StepContext:
    """What a running step may use besides its rows: a tokenizer by model reference, and the pipeline's seed."""

    tokenizer: Callable[[str], Tokenizer] | None = None
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def load_tokenizer(self, ref: str, field_name: str = "tokenizer") -> Tokenizer:
        """The tokenizer of the model `ref`, or `InvalidInput` naming the field when none can be loaded."""
        if self.tokenizer is None:
            raise InvalidInput(
                "this pipeline runs without access to models; tokenizers are unavailable", details={"field": field_name}
            )
        return self.tokenizer(ref)


class Step:
    """One preparation step. Subclasses set `name` and `Config` and override what they need."""

    name: ClassVar[str]
    Config: ClassVar[type[StepConfig]]

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        self.config = config
        self.ctx = ctx
        self.prefix = prefix  # where this step sits in its pipeline (`steps[2]`), for error details

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """Check the step against its input columns (`InvalidInput` naming the field) and say what it
        outputs. The default: the same columns."""
        return schema

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """Transform one batch; `offset` is the position of its first row in the step's input."""
        return batch

    def finish(self) -> pa.Table | None:
        """Rows held back until the end of the input (most steps hold none)."""
        return None

    def report(self) -> dict[str, Any]:
        """What the step did (counts, clusters, histograms): JSON-able, recorded in lineage."""
        return {}

    # --- helpers for subclasses ---------------------------------------------------------------------

    def field_error(self, message: str, name: str) -> InvalidInput:
        """An `InvalidInput` whose `details.field` points into the pipeline (`steps[1].field`)."""
        where = f"{self.prefix}.{name}" if self.prefix else name
        return InvalidInput(f"{where}: {message}", details={"field": where})

    def require_column(self, schema: pa.Schema, column: str, setting: str = "field", *, text: bool = True) -> None:
        """Fail unless `column` exists (and holds strings, when `text`)."""
        if column not in schema.names:
            raise self.field_error(
                f"step {self.name!r} needs column {column!r}, which the data does not have; columns: "
                f"{', '.join(schema.names) or 'none'}",
                setting,
            )
        kind = schema.field(column).type
        if text and not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            raise self.field_error(f"column {column!r} holds {kind}, not text", setting)


STEPS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Add a step class to the registry under its `name`."""
    STEPS[cls.name] = cls
    return cls


def texts(batch: pa.Table, column: str) -> list[str]:
    """A text column as Python strings (nulls as empty strings)."""
    return ["" if v is None else v for v in batch.column(column).to_pylist()]
