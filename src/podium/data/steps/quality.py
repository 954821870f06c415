"""`quality`: heuristic document filters in the style of Gopher (Rae et al., 2021) and C4 (Raffel et al., 2020).

Each rule has its threshold in the settings and is switched off by setting it to null. The measures are
computed for a whole batch at once in Arrow and NumPy (words and lines are split by Arrow kernels, counted
per row with `bincount`), so the cost per row stays in C. A dropped row counts under the first rule it
fails, in the order of `RULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from podium.data.steps.base import Step, StepConfig, StepContext, register

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

GOPHER_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
RULES = (
    "no_punctuated_lines",
    "min_words",
    "max_words",
    "mean_word_length",
    "symbol_word_ratio",
    "bullet_lines",
    "ellipsis_lines",
    "alpha_words",
    "stop_words",
    "duplicate_lines",
    "lorem_ipsum",
    "curly_braces",
)
MAX_EXAMPLES = 3
# stripped from word ends before matching stop words (with curly quotes and dashes)
_PUNCTUATION = ".,;:!?\"'()[]{}<>*_-\u00ab\u00bb\u201c\u201d\u2018\u2019\u2013\u2014"
_BULLET = (
    r"^\s*[-*\x{2022}\x{2023}\x{25e6}\x{25cf}\x{25cb}\x{25aa}\x{b7}\x{2013}\x{2014}]"  # - * • ‣ ◦ ● ○ ▪ · and dashes
)
_ELLIPSIS = r"(?:\.\.\.|…)\s*$"
_TERMINAL = r"[.!?\"'\x{201d}\x{2019}]\s*$"  # C4 keeps lines ending in terminal punctuation or a closing quote


class _Measures:
    """Per-row measures of one batch's texts, each computed on first use."""

    def __init__(self, texts: pa.Array):
        self.texts = texts
        self.n = len(texts)
        self._cache: dict[str, Any] = {}

    def _get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _per_row(self, parents: npt.NDArray[np.int64], weights: Any = None) -> Floats:
        return np.bincount(parents, weights=weights, minlength=self.n).astype(np.float64)

    # words
    def _words(self) -> tuple[pa.Array, npt.NDArray[np.int64]]:
        def make() -> tuple[pa.Array, npt.NDArray[np.int64]]:
            lists = pc.utf8_split_whitespace(self.texts)
            return pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy()

        result: tuple[pa.Array, npt.NDArray[np.int64]] = self._get("words", make)
        return result

    def n_words(self) -> Floats:
        """Whitespace-separated words per row."""
        return self._get("n_words", lambda: self._per_row(self._words()[1]))  # type: ignore[no-any-return]

    def mean_word_length(self) -> Floats:
        """Mean characters per word (0 without words)."""
        words, parents = self._words()
        chars = self._per_row(parents, pc.utf8_length(words).to_numpy(zero_copy_only=False))
        return chars / np.maximum(self.n_words(), 1)

    def alpha_words(self) -> Floats:
        """Fraction of words holding at least one letter."""
        words, parents = self._words()
        alpha = pc.match_substring_regex(words, r"\p{L}").to_numpy(zero_copy_only=False)
        return self._per_row(parents, alpha) / np.maximum(self.n_words(), 1)

    def stop_words(self, vocabulary: list[str]) -> Floats:
        """Occurrences of the stop words (case-folded, punctuation stripped from word ends)."""
        words, parents = self._words()
        bare = pc.utf8_trim(pc.utf8_lower(words), characters=_PUNCTUATION)
        found = pc.is_in(bare, value_set=pa.array(vocabulary, bare.type)).to_numpy(zero_copy_only=False)
        return self._per_row(parents, found)

    def symbol_word_ratio(self) -> Floats:
        """Hash signs and ellipses per word."""
        symbols = sum(
            pc.count_substring(self.texts, s).to_numpy(zero_copy_only=False).astype(np.float64)
            for s in ("#", "...", "…")
        )
        return np.asarray(symbols, dtype=np.float64) / np.maximum(self.n_words(), 1)

    # lines
    def _lines(self) -> tuple[pa.Array, npt.NDArray[np.int64], Bools]:
        def make() -> tuple[pa.Array, npt.NDArray[np.int64], Bools]:
            lists = pc.split_pattern(self.texts, "\n")
            lines = pc.list_flatten(lists)
            nonblank = pc.match_substring_regex(lines, r"\S").to_numpy(zero_copy_only=False)
            return lines, pc.list_parent_indices(lists).to_numpy(), nonblank

        result: tuple[pa.Array, npt.NDArray[np.int64], Bools] = self._get("lines", make)
        return result

    def n_lines(self) -> Floats:
        """Non-blank lines per row."""
        return self._get("n_lines", lambda: self._per_row(self._lines()[1], self._lines()[2]))  # type: ignore[no-any-return]

    def _line_fraction(self, pattern: str) -> Floats:
        lines, parents, nonblank = self._lines()
        match = pc.match_substring_regex(lines, pattern).to_numpy(zero_copy_only=False) & nonblank
        return self._per_row(parents, match) / np.maximum(self.n_lines(), 1)

    def bullet_lines(self) -> Floats:
        """Fraction of non-blank lines that start with a bullet."""
        return self._line_fraction(_BULLET)

    def ellipsis_lines(self) -> Floats:
        """Fraction of non-blank lines that end with an ellipsis."""
        return self._line_fraction(_ELLIPSIS)

    def duplicate_lines(self) -> Floats:
        """Fraction of non-blank lines that repeat an earlier line of the same row."""
        lines, parents, nonblank = self._lines()
        keep = pa.array(nonblank, pa.bool_())
        table = pa.table({"row": pa.array(parents).filter(keep), "line": pc.utf8_trim_whitespace(lines.filter(keep))})
        grouped = table.group_by(["row", "line"]).aggregate([("line", "count")])
        extra = grouped.column("line_count").to_numpy() - 1
        return self._per_row(grouped.column("row").to_numpy(), extra) / np.maximum(self.n_lines(), 1)


@register
class Quality(Step):
    """Drop documents that heuristics call low quality (too short, symbol-heavy, repetitive, not prose)."""

    name = "quality"

    class Config(StepConfig):
        """Settings of `quality`: each threshold switches its rule off when null."""

        field: str = Field(default="text", min_length=1)
        min_words: int | None = Field(default=50, ge=0)
        max_words: int | None = Field(default=100_000, ge=1)
        min_mean_word_length: float | None = Field(default=3.0, ge=0)
        max_mean_word_length: float | None = Field(default=10.0, gt=0)
        max_symbol_word_ratio: float | None = Field(default=0.1, ge=0)
        max_bullet_lines: float | None = Field(default=0.9, ge=0, le=1)
        max_ellipsis_lines: float | None = Field(default=0.3, ge=0, le=1)
        min_alpha_words: float | None = Field(default=0.8, ge=0, le=1)
        min_stop_words: int | None = Field(default=2, ge=0)
        stop_words: list[str] = Field(default_factory=lambda: list(GOPHER_STOP_WORDS), min_length=1)
        max_duplicate_lines: float | None = Field(default=0.3, ge=0, le=1)
        drop_lines_without_punctuation: bool = False  # C4: keep only lines ending in . ! ? or a quote
        lorem_ipsum: bool = False  # C4: drop documents containing "lorem ipsum"
        curly_braces: bool = False  # C4: drop documents containing "{" (code)

        @model_validator(mode="after")
        def _ranges(self) -> Quality.Config:
            if self.min_words is not None and self.max_words is not None and self.min_words > self.max_words:
                raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words})")
            low, high = self.min_mean_word_length, self.max_mean_word_length
            if low is not None and high is not None and low > high:
                raise ValueError(f"min_mean_word_length ({low}) is above max_mean_word_length ({high})")
            return self

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.rows_in = 0
        self.rows_out = 0
        self.drops = dict.fromkeys(RULES, 0)
        self.examples: dict[str, list[dict[str, Any]]] = {rule: [] for rule in RULES}

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The field must be a text column; the columns stay as they are."""
        self.require_column(schema, self.config.field)
        return schema

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The batch without the rows some rule rejects (lines trimmed first, with the C4 line filter)."""
        n = batch.num_rows
        self.rows_in += n
        if n == 0:
            return batch
        index = batch.schema.get_field_index(self.config.field)
        column = batch.column(index)
        if pa.types.is_null(column.type):
            texts = pa.array([""] * n, pa.string())
        else:
            texts = pc.fill_null(column.combine_chunks(), "")
        if self.config.drop_lines_without_punctuation and not pa.types.is_null(column.type):
            texts = _punctuated_lines(texts)
            trimmed = pc.if_else(pc.is_null(column), pa.scalar(None, column.type), texts.cast(column.type))
            batch = batch.set_column(index, batch.schema.field(index), trimmed)
        failed = np.full(n, -1, dtype=np.int64)
        for rule, (values, bad) in self._checks(_Measures(texts)):
            newly = np.flatnonzero(bad & (failed < 0))
            if not len(newly):
                continue
            failed[newly] = RULES.index(rule)
            self.drops[rule] += len(newly)
            examples = self.examples[rule]
            for i in newly[: MAX_EXAMPLES - len(examples)]:
                text = texts[int(i)].as_py()
                examples.append({"row": offset + int(i), "value": round(float(values[i]), 4), "text": text[:120]})
        keep = failed < 0
        self.rows_out += int(keep.sum())
        return batch if keep.all() else batch.filter(pa.array(keep, pa.bool_()))

    def _checks(self, m: _Measures) -> list[tuple[str, tuple[Floats, Bools]]]:
        """Each enabled rule: the measure per row, and which rows fail it (lazy: measures computed on demand)."""
        c = self.config
        checks: list[tuple[str, Callable[[], tuple[Floats, Bools]]]] = []
        if c.drop_lines_without_punctuation:
            checks.append(("no_punctuated_lines", lambda: (m.n_lines(), m.n_lines() == 0)))
        if c.min_words is not None:
            low = c.min_words
            checks.append(("min_words", lambda: (m.n_words(), m.n_words() < low)))
        if c.max_words is not None:
            high = c.max_words
            checks.append(("max_words", lambda: (m.n_words(), m.n_words() > high)))
        if c.min_mean_word_length is not None or c.max_mean_word_length is not None:
            lo = c.min_mean_word_length if c.min_mean_word_length is not None else -np.inf
            hi = c.max_mean_word_length if c.max_mean_word_length is not None else np.inf

            def word_length() -> tuple[Floats, Bools]:
                v = m.mean_word_length()
                return v, (v < lo) | (v > hi)

            checks.append(("mean_word_length", word_length))
        for rule, limit, measure in (
            ("symbol_word_ratio", c.max_symbol_word_ratio, m.symbol_word_ratio),
            ("bullet_lines", c.max_bullet_lines, m.bullet_lines),
            ("ellipsis_lines", c.max_ellipsis_lines, m.ellipsis_lines),
            ("duplicate_lines", c.max_duplicate_lines, m.duplicate_lines),
        ):
            if limit is not None:
                checks.append((rule, _above(measure, limit)))
        if c.min_alpha_words is not None:
            checks.append(("alpha_words", _below(m.alpha_words, c.min_alpha_words)))
        if c.min_stop_words is not None:
            words = [w.lower() for w in c.stop_words]
            checks.append(("stop_words", _below(lambda: m.stop_words(words), c.min_stop_words)))
        if c.lorem_ipsum:
            checks.append(("lorem_ipsum", lambda: _flag(pc.match_substring(m.texts, "lorem ipsum", ignore_case=True))))
        if c.curly_braces:
            checks.append(("curly_braces", lambda: _flag(pc.match_substring(m.texts, "{"))))
        checks.sort(key=lambda item: RULES.index(item[0]))
        return [(rule, check()) for rule, check in checks]

    def report(self) -> dict[str, Any]:
        """Rows in and out, drops per rule (first rule failed), and a few examples per rule."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": {rule: n for rule, n in self.drops.items() if n},
            "examples": {rule: ex for rule, ex in self.examples.items() if ex},
        }


def _above(measure: Callable[[], Floats], limit: float) -> Callable[[], tuple[Floats, Bools]]:
    """A check failing rows whose measure is above `limit`."""

    def check() -> tuple[Floats, Bools]:
        v = measure()
        return v, v > limit

    return check


def _below(measure: Callable[[], Floats], limit: float) -> Callable[[], tuple[Floats, Bools]]:
    """A check failing rows whose measure is below `limit`."""

    def check() -> tuple[Floats, Bools]:
        v = measure()
        return v, v < limit

    return check


def _flag(matches: pa.Array) -> tuple[Floats, Bools]:
    """A yes/no rule as (1.0 or 0.0, failed)."""
    bad = matches.to_numpy(zero_copy_only=False).astype(bool)
    return bad.astype(np.float64), bad


def _punctuated_lines(texts: pa.Array) -> pa.Array:
    """Each text keeping only lines that end in terminal punctuation (and blank lines between paragraphs)."""
    lists = pc.split_pattern(texts, "\n")
    lines = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    blank = ~pc.match_substring_regex(lines, r"\S").to_numpy(zero_copy_only=False)
    keep = blank | pc.match_substring_regex(lines, _TERMINAL).to_numpy(zero_copy_only=False)
    counts = np.bincount(parents[keep], minlength=len(texts))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    kept = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), lines.filter(pa.array(keep, pa.bool_())))
    joined = pc.binary_join(kept, pa.scalar("\n", lines.type))
    joined = pc.replace_substring_regex(joined, pattern=r"\n\s*\n(?:\s*\n)*", replacement="\n\n")
    return pc.utf8_trim_whitespace(joined)
