"""`chunk`: split documents into overlapping pieces for retrieval, one output row per chunk.

A text too long for one chunk is cut at the most natural boundaries that make pieces fit: Markdown
headings, then blank-line paragraphs, then sentences, then lines, then words, and as a last resort inside a
word. Pieces are packed greedily up to `size` (tokens of a model's tokenizer, or characters), and each chunk
after the first starts with the tail of the one before (up to `overlap`) so no passage loses its context at
a cut. Chunks are exact slices of the source: `text[start:end] == chunk`, whitespace untouched, so a
retrieved chunk can always be located in its document.

Token sizes are counted piece by piece; pieces end at whitespace (but for the last-resort cuts), where
WordPiece and BPE tokenizers count a joined text as the sum of its parts or fewer, so chunks stay within
`size`.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, ValidationInfo, field_validator

from podium.data.steps.base import Step, StepConfig, StepContext, Tokenizer, register
from podium.data.steps.tokens import histogram, load_tokenizer, summary

CHUNK_COLUMNS = ("chunk_index", "source_row", "start", "end")

# Where a too-long span may be cut, most natural first. Each yields cut positions (a piece starts there).
_HEADING = re.compile(r"^#{1,6}[ \t]", re.MULTILINE)  # a cut before each Markdown heading line
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")  # a cut after each blank-line run
_SENTENCE = re.compile(  # a cut after sentence ends (closing quotes and brackets stay with the sentence)
    r"[.!?\u2026][\"'\u201d\u2019)\]]{0,3}\s+|[\u3002\uff01\uff1f][\"'\u201d\u2019\u300d\u300f)]{0,3}\s*"
)
_LINE = re.compile(r"\n\s*")  # a cut after each line break
_WORD = re.compile(r"\s+")  # a cut after each whitespace run
_ATOM_LEVELS = 4  # token sizes are counted once per span between cuts of the first four levels
_LEVELS = (
    (_HEADING, False),  # (pattern, cut after the match rather than before)
    (_PARAGRAPH, True),
    (_SENTENCE, True),
    (_LINE, True),
    (_WORD, True),
)


@dataclass(slots=True)
class Piece:
    """A span of the source text, `[start, end)`, and its size in the step's unit."""

    start: int
    end: int
    size: int


def _cuts(text: str, start: int, end: int, level: int) -> list[int]:
    """Cut positions strictly inside `[start, end)` at one boundary level."""
    pattern, after = _LEVELS[level]
    cuts = [m.end() if after else m.start() for m in pattern.finditer(text, start, end)]
    return [c for c in cuts if start < c < end]


@register
class Chunk(Step):
    """One row per chunk of the text column, with its position in the source row and in the source text."""

    name = "chunk"

    class Config(StepConfig):
        """Settings of `chunk`."""

        field: str = Field(default="text", min_length=1)
        size: int = Field(default=256, ge=1)
        overlap: int = Field(default=32, ge=0)
        unit: Literal["tokens", "chars"] = "tokens"
        tokenizer: str | None = Field(default=None, min_length=1, validate_default=True)

        @field_validator("overlap")
        @classmethod
        def _overlap_below_size(cls, overlap: int, info: ValidationInfo) -> int:
            size = info.data.get("size")
            if size is not None and overlap >= size:
                raise ValueError(f"overlap ({overlap}) must be below size ({size})")
            return overlap

        @field_validator("tokenizer")
        @classmethod
        def _tokenizer_for_tokens(cls, tokenizer: str | None, info: ValidationInfo) -> str | None:
            if info.data.get("unit") == "tokens" and not tokenizer:
                raise ValueError("unit 'tokens' needs a tokenizer (a model reference), or set unit to 'chars'")
            return tokenizer

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.tokenizer: Tokenizer | None = None
        self.rows_in = 0
        self.rows_without_chunks = 0
        self.chunks = 0
        self.per_row_min: int | None = None
        self.per_row_max = 0
        self.sizes: Counter[int] = Counter()

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The input columns (the text now holding the chunk) and the four int64 position columns."""
        self.require_column(schema, self.config.field)
        if self.config.field in CHUNK_COLUMNS:
            raise self.field_error(f"the text column cannot be named {self.config.field!r}", "field")
        if self.config.unit == "tokens":
            assert self.config.tokenizer is not None, "the config requires a tokenizer for tokens"
            self.tokenizer = load_tokenizer(self, self.config.tokenizer)
        for name in CHUNK_COLUMNS:
            column = pa.field(name, pa.int64())
            index = schema.get_field_index(name)
            schema = schema.set(index, column) if index >= 0 else schema.append(column)
        return schema

    # --- measuring ------------------------------------------------------------------------------------

    def _measure(self, texts: list[str]) -> list[int]:
        """Sizes of some texts in the step's unit."""
        if self.tokenizer is None:
            return [len(t) for t in texts]
        return [len(ids) for ids in self.tokenizer.encode_batch(texts)] if texts else []

    def _atom_sizes(self, values: list[str]) -> list[dict[int, int] | None]:
        """For token sizes: each text cut at every heading, paragraph, sentence and line boundary into
        atoms, all of a batch's atoms encoded in one call, and the running token count at each boundary.
        Any span between two boundaries is then sized by a subtraction, not by encoding it again."""
        if self.tokenizer is None:
            return [None] * len(values)
        bounds = []
        atoms: list[str] = []
        for text in values:
            cuts = sorted(
                {0, len(text), *(c for level in range(_ATOM_LEVELS) for c in _cuts(text, 0, len(text), level))}
            )
            bounds.append(cuts)
            atoms.extend(text[a:b] for a, b in itertools.pairwise(cuts))
        sizes = iter(self._measure(atoms))
        out: list[dict[int, int] | None] = []
        for cuts in bounds:
            running = {cuts[0]: 0}
            total = 0
            for b in cuts[1:]:
                total += next(sizes)
                running[b] = total
            out.append(running)
        return out

    def _sizes(self, text: str, spans: list[tuple[int, int]], running: dict[int, int] | None) -> list[int]:
        """Sizes of spans of a text: from the running counts where both ends are atom boundaries, else measured."""
        if running is None:
            return [e - s for s, e in spans]
        sizes = [running[e] - running[s] if s in running and e in running else -1 for s, e in spans]
        missing = [i for i, n in enumerate(sizes) if n < 0]
        if missing:
            for i, n in zip(missing, self._measure([text[slice(*spans[i])] for i in missing]), strict=True):
                sizes[i] = n
        return sizes

    # --- splitting ------------------------------------------------------------------------------------

    def _split(
        self, text: str, start: int, end: int, size: int, running: dict[int, int] | None, level: int = 0
    ) -> list[Piece]:
        """Pieces that tile `[start, end)`, each within the size limit (but single characters)."""
        limit = self.config.size
        if size <= limit:
            return [Piece(start, end, size)]
        for lv in range(level, len(_LEVELS)):
            cuts = _cuts(text, start, end, lv)
            if cuts:
                spans = list(itertools.pairwise([start, *cuts, end]))
                pieces: list[Piece] = []
                for (s, e), n in zip(spans, self._sizes(text, spans, running), strict=True):
                    pieces.extend([Piece(s, e, n)] if n <= limit else self._split(text, s, e, n, running, lv + 1))
                return pieces
        return self._hard(text, start, end, size)

    def _hard(self, text: str, start: int, end: int, size: int) -> list[Piece]:
        """Cuts inside a word: fixed spans of characters, sized so each holds at most `size` units."""
        limit = self.config.size
        if self.tokenizer is None:
            return [Piece(s, min(s + limit, end), min(limit, end - s)) for s in range(start, end, limit)]
        step = max(1, (end - start) * limit // max(size, 1))
        spans = [(s, min(s + step, end)) for s in range(start, end, step)]
        pieces: list[Piece] = []
        for (s, e), n in zip(spans, self._measure([text[s:e] for s, e in spans]), strict=True):
            fits = n <= limit or e - s == 1
            pieces.extend([Piece(s, e, n)] if fits else self._hard(text, s, e, n))
        return pieces

    # --- packing --------------------------------------------------------------------------------------

    def _pack(self, text: str, pieces: list[Piece]) -> list[tuple[int, int, int]]:
        """Chunks `(start, end, size)` packing pieces greedily, each chunk opening with the previous one's tail."""
        limit = self.config.size
        chunks: list[tuple[int, int, int]] = []
        current: list[Piece] = []
        filled = 0
        for piece in pieces:
            if current and filled + piece.size > limit:
                chunks.append((current[0].start, current[-1].end, filled))
                current = self._tail(text, current, room=limit - piece.size)
                filled = sum(p.size for p in current)
            current.append(piece)
            filled += piece.size
        if current:
            chunks.append((current[0].start, current[-1].end, filled))
        return chunks

    def _tail(self, text: str, chunk: list[Piece], room: int) -> list[Piece]:
        """The end of a finished chunk carried into the next: whole pieces up to `overlap` units, or else the
        last words of its last piece."""
        budget = min(self.config.overlap, room)
        if budget <= 0:
            return []
        tail: list[Piece] = []
        used = 0
        for piece in reversed(chunk):
            if used + piece.size > budget:
                break
            tail.insert(0, piece)
            used += piece.size
        if tail:
            return tail
        last = chunk[-1]
        chars = (last.end - last.start) * budget // max(last.size, 1)
        for _ in range(3):  # token counts are not proportional to characters: shrink until it fits
            start = _word_start(text, max(last.start, last.end - chars), last.end)
            if start >= last.end:
                return []
            size = self._measure([text[start : last.end]])[0]
            if size <= budget:
                return [Piece(start, last.end, size)]
            chars = (last.end - start) * budget // size
        return []

    # --- the step -------------------------------------------------------------------------------------

    def chunk_text(self, text: str) -> list[tuple[int, int, int]]:
        """Chunks `(start, end, size)` of one text, whitespace trimmed from their ends (still exact slices)."""
        return self._chunks_of([text])[0]

    def _chunks_of(self, values: list[str]) -> list[list[tuple[int, int, int]]]:
        out = []
        for text, running in zip(values, self._atom_sizes(values), strict=True):
            total = len(text) if running is None else running[len(text)]
            raw = self._pack(text, self._split(text, 0, len(text), total, running))
            trimmed = []
            for start, end, size in raw:
                s, e = _trim(text, start, end)
                if s < e:
                    trimmed.append((s, e, e - s if self.tokenizer is None else size))
            out.append(trimmed)
        return out

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """One row per chunk: the source row's columns, the chunk text, and where the chunk comes from."""
        self.rows_in += batch.num_rows
        column = batch.column(self.config.field)
        raw: list[str | None] = [None] * batch.num_rows if pa.types.is_null(column.type) else column.to_pylist()
        present = [i for i, v in enumerate(raw) if v and not v.isspace()]
        chunked = self._chunks_of([raw[i] or "" for i in present])
        rows: list[int] = []
        pieces: list[str] = []
        index: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        per_row = dict.fromkeys(range(batch.num_rows), 0)
        for i, chunks in zip(present, chunked, strict=True):
            text = raw[i] or ""
            per_row[i] = len(chunks)
            for k, (s, e, size) in enumerate(chunks):
                rows.append(i)
                pieces.append(text[s:e])
                index.append(k)
                starts.append(s)
                ends.append(e)
                self.sizes[size] += 1
        self._count(per_row.values())
        out = batch.take(pa.array(rows, pa.int64()))
        where = out.schema.get_field_index(self.config.field)
        text_type = batch.schema.field(where).type
        out = out.set_column(where, pa.field(self.config.field, text_type), pa.array(pieces, text_type))
        source = [offset + i for i in rows]
        for name, values in zip(CHUNK_COLUMNS, (index, source, starts, ends), strict=True):
            column_field = pa.field(name, pa.int64())
            at = out.schema.get_field_index(name)
            array = pa.array(values, pa.int64())
            out = out.set_column(at, column_field, array) if at >= 0 else out.append_column(column_field, array)
        return out

    def _count(self, per_row: Any) -> None:
        for n in per_row:
            self.chunks += n
            self.rows_without_chunks += n == 0
            self.per_row_max = max(self.per_row_max, n)
            self.per_row_min = n if self.per_row_min is None else min(self.per_row_min, n)

    def report(self) -> dict[str, Any]:
        """Chunks made, chunks per row, and chunk sizes (in the step's unit)."""
        return {
            "unit": self.config.unit,
            "size": self.config.size,
            "overlap": self.config.overlap,
            "rows_in": self.rows_in,
            "rows_without_chunks": self.rows_without_chunks,
            "chunks": self.chunks,
            "chunks_per_row": {
                "min": self.per_row_min,
                "mean": round(self.chunks / self.rows_in, 2) if self.rows_in else None,
                "max": self.per_row_max,
            },
            "chunk_size": {"histogram": histogram(self.sizes), **summary(self.sizes)},
        }


def _word_start(text: str, at: int, end: int) -> int:
    """The first position at or after `at` (and before `end`) where a word starts, else `at` itself."""
    if at == 0 or text[at - 1].isspace():
        return at
    m = _WORD.search(text, at, end)
    return m.end() if m else at


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """`[start, end)` without whitespace at either end."""
    piece = text[start:end]
    stripped = piece.lstrip()
    start += len(piece) - len(stripped)
    return start, start + len(stripped.rstrip())
