"""`normalize`: text cleaning before anything else looks at the words.

HTML becomes text (jusText keeps the article and drops menus and footers; plain lxml text extraction when
jusText keeps nothing), invisible and control characters go, Unicode is normalized (NFC or NFKC) and
whitespace collapsed. Everything but the HTML pass runs vectorized in Arrow (RE2 regexes, linear time).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from podium.data.steps.base import Step, StepConfig, StepContext, register

# RE2 patterns (pyarrow.compute): linear time whatever the input.
_CONTROL = r"[^\P{Cc}\n\t]|\p{Cf}"  # control characters but newline and tab; format (zero-width, bidi) characters
_NEWLINES = r"\r\n?|[\x0b\x0c\x{85}\x{2028}\x{2029}]"  # CRLF, CR, vertical tab, form feed, Unicode line breaks
_HSPACE = r"[\t\x0b\x0c\p{Zs}]+"  # runs of horizontal whitespace (tabs, Unicode spaces)
_LOOKS_HTML = r"<(?:[A-Za-z][A-Za-z0-9-]{0,20}|/[A-Za-z]|!)"  # a tag, end tag, comment or doctype
_BLOCK_TAGS = (
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "aside",
    "nav",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "dt",
    "dd",
    "figcaption",
)
_DROPPED_TAGS = ("script", "style", "noscript", "template", "head", "svg")


@register
class Normalize(Step):
    """Clean text columns: HTML to text, control characters, Unicode form, whitespace."""

    name = "normalize"

    class Config(StepConfig):
        """Settings of `normalize`."""

        fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
        unicode: Literal["NFC", "NFKC"] | None = "NFC"
        whitespace: bool = True
        control: bool = True
        html: bool = False
        html_language: str = Field(default="English", min_length=1)

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.changed = dict.fromkeys(self.config.fields, 0)
        self.html_converted = 0
        self.html_fallbacks = 0
        self._stoplist: frozenset[str] = frozenset()

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """Every field must be a text column; with `html`, jusText must know the language."""
        for i, name in enumerate(self.config.fields):
            self.require_column(schema, name, f"fields[{i}]")
        if self.config.html:
            justext = _justext(self)
            languages = justext.get_stoplists()
            if self.config.html_language not in languages:
                raise self.field_error(
                    f"jusText has no stop list for {self.config.html_language!r}; known: "
                    f"{', '.join(sorted(languages))}",
                    "html_language",
                )
            self._stoplist = frozenset(justext.get_stoplist(self.config.html_language))
        return schema

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """Clean each field of the batch; nulls stay null."""
        for name in self.config.fields:
            index = batch.schema.get_field_index(name)
            column = batch.column(index)
            if pa.types.is_null(column.type) or batch.num_rows == 0:
                continue
            cleaned = self._clean(column)
            self.changed[name] += int(pc.sum(pc.not_equal(column, cleaned)).as_py() or 0)
            batch = batch.set_column(index, batch.schema.field(index), cleaned)
        return batch

    def _clean(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        """One text column through every enabled pass, in order."""
        out = column
        if self.config.html:
            out = self._html(out)
        if self.config.unicode:
            out = pc.utf8_normalize(out, form=self.config.unicode)
        if self.config.control or self.config.whitespace:
            out = pc.replace_substring_regex(out, pattern=_NEWLINES, replacement="\n")
        if self.config.control:
            out = pc.replace_substring_regex(out, pattern=_CONTROL, replacement="")
        if self.config.whitespace:
            out = pc.replace_substring_regex(out, pattern=_HSPACE, replacement=" ")
            out = pc.replace_substring_regex(out, pattern=r" ?\n ?", replacement="\n")  # strip each line
            out = pc.replace_substring_regex(out, pattern=r"\n{3,}", replacement="\n\n")
            out = pc.utf8_trim_whitespace(out)
        return out.cast(column.type)

    def _html(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        """Rows that hold markup become their main text; other rows are left as they are."""
        looks = pc.fill_null(pc.match_substring_regex(column, _LOOKS_HTML), False)
        if not pc.any(looks).as_py():
            return column
        values = column.to_pylist()
        for i in pc.indices_nonzero(looks).to_pylist():
            text, fallback = html_to_text(values[i], self._stoplist)
            values[i] = text
            self.html_converted += 1
            self.html_fallbacks += fallback
        return pa.chunked_array([pa.array(values, type=column.type)])

    def report(self) -> dict[str, Any]:
        """Rows changed per field, and how many documents were HTML."""
        return {
            "rows_changed": dict(self.changed),
            "html_converted": self.html_converted,
            "html_plain_fallbacks": self.html_fallbacks,
        }


def _justext(step: Step) -> Any:
    """The jusText module, or an error naming the `html` setting when it is not installed."""
    try:
        return importlib.import_module("justext")
    except ImportError:
        raise step.field_error("HTML cleaning needs jusText: pip install justext", "html") from None


@cache
def _modules() -> tuple[Any, Any]:
    """jusText and lxml.html, imported on first use (only the `html` option needs them)."""
    return importlib.import_module("justext"), importlib.import_module("lxml.html")


def html_to_text(html: str, stoplist: frozenset[str]) -> tuple[str, bool]:
    """The main text of an HTML document (paragraphs jusText does not call boilerplate, one blank line
    apart), and whether it had to fall back to all the page's text because jusText kept nothing."""
    if not html.strip():
        return "", False
    justext, _ = _modules()
    try:
        paragraphs = justext.justext(html, stoplist)
    except Exception:  # malformed markup: jusText gives up, the plain extraction may not
        paragraphs = []
    kept = [p.text.strip() for p in paragraphs if not p.is_boilerplate and p.text.strip()]
    if kept:
        return "\n\n".join(kept), False
    return plain_text(html), True


def plain_text(html: str) -> str:
    """All visible text of an HTML document, a line break after each block element (scripts, styles dropped)."""
    _, lxml_html = _modules()
    try:
        doc = lxml_html.document_fromstring(html)
    except Exception:  # an empty or unparseable document has no text
        return ""
    for element in list(doc.iter(*_DROPPED_TAGS)):
        element.drop_tree()
    for element in doc.iter(*_BLOCK_TAGS):
        element.tail = "\n" + (element.tail or "")
    return str(doc.text_content()).strip()
