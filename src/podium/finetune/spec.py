"""A fine-tuning blueprint as data: every setting of one fine-tune, so it runs the same way everywhere.

```yaml
base_model: smollm2-135m-instruct@1          # a model version of the registry
data:
  train: support-replies@2                   # dataset versions of the datasets domain
  validation: support-replies-held-out@1
  chat_template: true                        # render rows with the base model's chat template
  prompt_field: question                     # text columns ...
  completion_field: answer
  # messages_field: messages                 # ... or one column of chat messages
method: lora                                 # lora | qlora | full
lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: [q_proj, k_proj, v_proj, o_proj]}
hyperparameters:
  epochs: 3                                  # or max_steps
  learning_rate: 0.0002
  lr_schedule: cosine
  warmup_ratio: 0.03
  batch_size: 8
  gradient_accumulation: 1
  max_length: 256
  packing: false
  seed: 0
  truncation: truncate                       # truncate | drop | refuse rows longer than max_length
eval:                                        # base and tuned answer the same prompts; the gate compares them
  dataset: support-replies-held-out@1        # default: data.validation
  evaluators: [{type: regex, name: style, pattern: "^Ticket [A-Z]{3}-\\d{4} ", match: search}]
  score: style
  min_score: 0.8
  better_than_base_by: 0.3                   # with the paired test's p < significance (0.05)
artifacts: {merged: false}                   # also register the merged weights
deploy: {model: smollm2-support, alias: canary, route: support, canary_share: 20, promotion: manual}
backend: local                               # or ray
```

`load` checks a mapping whole (`InvalidInput` naming the field, e.g. `hyperparameters.learning_rate`);
`canonical` is the JSON its content hash is taken over, so the same blueprint always has the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from podium.core import yamlload
from podium.core.errors import InvalidInput, field_path

MAX_YAML_BYTES = 64 * 1024
MAX_REF = 200
MAX_FIELD = 128
MAX_LENGTH = 32_768  # tokens of one training sequence
MAX_TARGET_MODULES = 32
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
METHODS = ("lora", "qlora", "full")
TRUNCATION = ("truncate", "drop", "refuse")

Ref = Annotated[str, Field(min_length=3, max_length=MAX_REF, pattern=r"^[^@\s]+@[^@\s]+$")]
ColumnName = Annotated[str, Field(min_length=1, max_length=MAX_FIELD)]
ModuleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.]+$")]
Name = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Part):
    """The training data: dataset versions (`name@version`) and how a row becomes a training sequence."""

    train: Ref
    validation: Ref | None = None
    chat_template: bool = True
    prompt_field: ColumnName | None = None
    completion_field: ColumnName | None = None
    messages_field: ColumnName | None = None

    @model_validator(mode="after")
    def _one_mapping(self) -> DataSpec:
        if self.messages_field is not None:
            if self.prompt_field is not None or self.completion_field is not None:
                raise ValueError("give messages_field, or prompt_field and completion_field, not both")
        elif self.prompt_field is None or self.completion_field is None:
            raise ValueError("give prompt_field and completion_field (text columns), or messages_field")
        return self


class LoraSpec(_Part):
    """LoRA's parameters: rank, scaling, dropout and the modules adapted."""

    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=4096)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[ModuleName] = Field(
        default_factory=lambda: list(LORA_TARGETS), min_length=1, max_length=MAX_TARGET_MODULES
    )

    @field_validator("target_modules")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("target_modules lists a module twice")
        return value


class Hyperparameters(_Part):
    """How long and how fast to train, and what to do with sequences longer than `max_length`."""

    epochs: float | None = Field(None, gt=0, le=100)
    max_steps: int | None = Field(None, ge=1, le=1_000_000)
    learning_rate: float = Field(2e-4, le=1.0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, le=0.5)
    batch_size: int = Field(8, ge=1, le=1024)
    gradient_accumulation: int = Field(1, ge=1, le=1024)
    max_length: int = Field(512, ge=16, le=MAX_LENGTH)
    packing: bool = False
    seed: int = Field(0, ge=0, le=2**31 - 1)
    truncation: Literal["truncate", "drop", "refuse"] = "truncate"

    @field_validator("learning_rate")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:  # also refuses NaN
            raise ValueError("the learning rate must be greater than 0")
        return value

    @model_validator(mode="after")
    def _how_long(self) -> Hyperparameters:
        if (self.epochs is None) == (self.max_steps is None):
            raise ValueError("give epochs or max_steps (exactly one)")
        return self


class EvalGate(_Part):
    """How the tuned model is judged against its base, in the same run: both answer the eval dataset's prompts
    (greedy, on the local engine that serves them), the evals domain scores both answer sets with
    `evaluators`, and the gate reads `score`'s mean: at least `min_score`, and better than the base's by at
    least `better_than_base_by` with the paired test's p value below `significance`."""

    dataset: Ref | None = None  # default: data.validation
    limit: int | None = Field(None, ge=1, le=10_000)
    evaluators: list[dict[str, Any] | str] = Field(default_factory=list, max_length=16)
    score: Name | None = None  # default: the first evaluator's score
    min_score: float | None = Field(None, ge=-1e9, le=1e9)
    better_than_base_by: float = Field(0.0, ge=-1.0, le=1.0)
    significance: float = Field(0.05, gt=0.0, le=1.0)
    max_new_tokens: int = Field(128, ge=1, le=4096)

    @model_validator(mode="after")
    def _gate_has_a_score(self) -> EvalGate:
        if self.evaluators and self.score is None:
            first = self.evaluators[0]
            name = first if isinstance(first, str) else first.get("name") or first.get("type")
            if not isinstance(name, str):
                raise ValueError("name the score the gate reads (eval.score)")
            object.__setattr__(self, "score", name)
        return self


class ArtifactsPlan(_Part):
    """What the tuned version's artifacts are: the adapter (always, for LoRA), and the merged weights too when
    `merged` (a transformers folder the local engine serves without merging at load)."""

    merged: bool = False


class DeployPlan(_Part):
    """Where a tuned version goes once it passes the gate: the registry model (`model`, default
    `<base model>-tuned`) whose `alias` (default `canary`) moves to it, and the gateway route (`route`, default
    `<model>-live`) that sends `canary_share` percent of its traffic there and the rest to the model's
    `stable` alias (the base model's weights before any promotion). `promotion: after_gate` moves `stable` too
    at once; `manual` waits for `podium finetune promote`."""

    model: Name | None = None
    alias: Name = "canary"
    route: Name | None = None
    canary_share: int = Field(20, ge=0, le=100)
    promotion: Literal["manual", "after_gate"] = "manual"


class Blueprint(_Part):
    """Every setting of one fine-tune (see the module's docstring)."""

    base_model: Ref
    data: DataSpec
    method: Literal["lora", "qlora", "full"] = "lora"
    lora: LoraSpec | None = None
    hyperparameters: Hyperparameters
    eval: EvalGate = Field(default_factory=EvalGate)
    artifacts: ArtifactsPlan = Field(default_factory=ArtifactsPlan)
    deploy: DeployPlan = Field(default_factory=DeployPlan)
    backend: Literal["local", "ray"] = "local"

    @model_validator(mode="after")
    def _lora_matches_method(self) -> Blueprint:
        if self.method == "full" and self.lora is not None:
            raise ValueError("a full fine-tune takes no lora parameters; remove 'lora' or choose method lora")
        if self.method != "full" and self.lora is None:
            raise ValueError(f"method {self.method} needs 'lora' parameters (r, alpha, dropout, target_modules)")
        return self


def _named(exc: ValidationError) -> InvalidInput:
    err = exc.errors()[0]
    where = field_path(tuple(err["loc"])) or "blueprint"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "is required"
    elif err["type"] == "extra_forbidden":
        message = "is not a blueprint field"
    return InvalidInput(f"blueprint field {where!r}: {message}", details={"field": where})


def load(data: Any) -> Blueprint:
    """A blueprint from its parsed form (YAML's or JSON's mapping), checked whole."""
    if not isinstance(data, Mapping):
        raise InvalidInput("a blueprint must be a mapping (base_model, data, method, hyperparameters, …)")
    try:
        return Blueprint.model_validate(data)
    except ValidationError as exc:
        raise _named(exc) from None


def parse_yaml(text: str) -> dict[str, Any]:
    """A blueprint's YAML as a mapping (not yet checked)."""
    if len(text.encode()) > MAX_YAML_BYTES:
        raise InvalidInput(f"a blueprint may be at most {MAX_YAML_BYTES // 1024} KB", details={"field": "source"})
    try:
        data = yamlload.load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the blueprint is not valid YAML: {exc}", details={"field": "source"}) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput("a blueprint must be a YAML mapping", details={"field": "source"})
    return data


def canonical(blueprint: Blueprint) -> bytes:
    """The canonical JSON of a blueprint (every field, defaults included, keys sorted): what its hash is of."""
    return orjson.dumps(blueprint.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def content_hash(blueprint: Blueprint) -> str:
    """The sha256 of the canonical JSON."""
    return hashlib.sha256(canonical(blueprint)).hexdigest()


def blueprint_id(blueprint: Blueprint) -> str:
    """The blueprint's id: `ftb_` and the first 32 hex digits of its content hash."""
    return "ftb_" + content_hash(blueprint)[:32]


def to_yaml(blueprint: Blueprint) -> str:
    """The blueprint as YAML, in the fields' order (what `show` prints and diffs compare)."""
    return yaml.safe_dump(blueprint.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
