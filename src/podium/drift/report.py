"""What a drift report is asked with (`DriftSpec`) and what it answers (`DriftReport`): per field (input, output)
the domain classifier's test, the descriptor tests, the words that changed most and the examples that explain
the change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Field_ = Literal["input", "output"]
Verdict = Literal["drift", "moderate", "none", "unavailable"]

MIN_SAMPLES = 30  # texts per side below which a field is not judged (5-fold cross-validation needs a few per fold)
DEFAULT_SAMPLES = 2_000  # texts per side at most: a random sample when a side holds more
MAX_SAMPLES = 5_000
AUC_THRESHOLD = 0.55  # Evidently's default for its text domain classifier
PSI_THRESHOLD = 0.2  # PSI above this is drift; between half of it and it, moderate


class DriftSpec(BaseModel):
    """A drift report's question: the current window of a project's traces against a reference window (or a
    text column of a dataset version), optionally of one route, model or prompt version. Times without a zone
    are UTC."""

    model_config = ConfigDict(extra="forbid")

    project: str | None = Field(None, max_length=200, description="Project name or id (default: your key's).")
    current_from: datetime = Field(description="Start of the current window (inclusive).")
    current_to: datetime = Field(description="End of the current window (exclusive).")
    reference_from: datetime | None = Field(None, description="Start of the reference window.")
    reference_to: datetime | None = Field(None, description="End of the reference window (exclusive).")
    reference_dataset: str | None = Field(
        None, max_length=300, description="A dataset version (`name@3`, `name@label`) as the reference instead."
    )
    reference_input_column: str | None = Field(
        None, max_length=200, description="The dataset's text column compared with the traces' inputs."
    )
    reference_output_column: str | None = Field(
        None, max_length=200, description="The dataset's text column compared with the traces' outputs."
    )
    fields: list[Field_] | None = Field(
        None,
        max_length=2,
        description="input, output or both (default: both, a field with too few texts marked insufficient).",
    )
    route: str | None = Field(None, max_length=200, description="Only traces of this gateway route.")
    model: str | None = Field(None, max_length=200, description="Only traces of this model.")
    prompt_version: str | None = Field(
        None, max_length=40, description="Only traces with a span of this prompt version."
    )
    max_samples: int = Field(DEFAULT_SAMPLES, ge=MIN_SAMPLES, le=MAX_SAMPLES, description="Texts per side at most.")
    auc_threshold: float = Field(AUC_THRESHOLD, gt=0.5, lt=1.0, description="Classifier ROC AUC above which: drift.")
    psi_threshold: float = Field(PSI_THRESHOLD, gt=0.0, le=10.0, description="PSI above which: drift.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the cross-validation folds and dataset sampling.")

    @field_validator("current_from", "current_to", "reference_from", "reference_to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None


class TestResult(BaseModel):
    """One test of one field: its score against its threshold, the verdict, and for descriptors the two
    distributions compared (bins or categories, each side's share) with each side's mean."""

    __test__ = False  # not a pytest class

    name: str
    method: str
    score: float | None
    threshold: float
    verdict: Verdict
    detail: str = ""
    hellinger: float | None = None
    bins: list[str] = Field(default_factory=list)
    reference_shares: list[float] = Field(default_factory=list)
    current_shares: list[float] = Field(default_factory=list)
    reference_mean: float | None = None
    current_mean: float | None = None


class WordShift(BaseModel):
    """A word whose share of texts changed (`z` > 0: more frequent in the current window)."""

    word: str
    reference_share: float
    current_share: float
    z: float


class Example(BaseModel):
    """A text the domain classifier places firmly on one side (`probability` that it is current)."""

    trace_id: str | None
    text: str
    probability: float


class FieldReport(BaseModel):
    """The drift of one field (input or output): how many texts each side had and used, the tests, and the
    explanation (words that rose and fell, the most current-like and most reference-like examples)."""

    field: Field_
    status: Literal["ok", "insufficient"]
    detail: str = ""
    reference_total: int
    current_total: int
    reference_used: int
    current_used: int
    sampled: bool
    drift: bool = False
    tests: list[TestResult] = Field(default_factory=list)
    words_up: list[WordShift] = Field(default_factory=list)
    words_down: list[WordShift] = Field(default_factory=list)
    current_like: list[Example] = Field(default_factory=list)
    reference_like: list[Example] = Field(default_factory=list)


class DriftReportInfo(BaseModel):
    """A report as lists show it."""

    id: str
    project_id: str
    drift: bool
    score: float | None = Field(description="The highest domain-classifier ROC AUC over the fields.")
    reference: str
    current_from: datetime
    current_to: datetime
    created_by: str
    created_at: datetime


class DriftReport(DriftReportInfo):
    """A whole report: the question, each field's tests and explanation, and how long it took."""

    spec: DriftSpec
    fields: list[FieldReport]
    seconds: float
