"""`pii`: find personal data and secrets in text columns, and redact, mask, hash them or drop the row.

Candidates come from bounded regexes (no nested unbounded repetition, so no catastrophic backtracking) and
are kept only when they check out: cards by Luhn, IBANs by their mod-97 checksum, IP addresses by the
`ipaddress` parser, SSNs outside the never-issued areas, tokens after `key=` by their entropy. A vectorized
RE2 pre-filter per entity means the Python regexes only run on rows that may hold that entity. PERSON and
LOCATION need a model: they come from Microsoft Presidio when it is installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from podium.data.steps.base import Step, StepConfig, StepContext, register

Entity = Literal["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "SECRET", "PERSON", "LOCATION"]
PATTERN_ENTITIES: tuple[Entity, ...] = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "SECRET")
PRESIDIO_ENTITIES: tuple[Entity, ...] = ("PERSON", "LOCATION")

Span = tuple[int, int]  # [start, end) in the text

# --- candidates (Python `re`, every repetition bounded) -------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![\w-])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9][\d ().-]{6,22}\d(?!\w)")
_PHONE_US = re.compile(r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\w|[.-]\d)")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?!\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?!\w|-\d)")
_SECRET_PREFIXED = re.compile(
    r"(?<![\w-])(?:"
    r"sk-[A-Za-z0-9_-]{20,500}|pk-[A-Za-z0-9_-]{20,500}"  # OpenAI, Anthropic and similar
    r"|[spr]k_(?:live|test)_[A-Za-z0-9]{16,500}"  # Stripe
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub
    r"|xox[abeoprs]-[A-Za-z0-9-]{10,250}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r")(?![\w-])"
)
_SECRET_ASSIGNED = re.compile(
    r"(?i)(?<![a-z0-9])(?:[a-z0-9]{1,20}[_-]){0,3}(?:api[_-]?key|apikey|key|token|secret|password|passwd|pwd)"
    r"[\"']?[ \t]{0,3}[:=][ \t]{0,3}[\"']?([A-Za-z0-9._~+/=-]{16,512})"
)
_BEARER = re.compile(r"(?i)\bbearer[ \t]{1,5}([A-Za-z0-9._~+/=-]{20,2048})")

# RE2 pre-filters (pyarrow.compute, linear time): a row that fails one cannot hold that entity.
_KEY_SHAPES = (
    r"sk-|pk-|[spr]k_(?:live|test)_|AKIA|ASIA|gh[pousr]_|github_pat_|xox[abeoprs]-|AIza"
    r"|(?i:bearer|key|token|secret|passw|pwd)"
)
_HINTS: dict[str, str] = {
    "EMAIL": "@",
    "PHONE": r"\+\d|\d{3}[ .\-)]{1,2}\d{3}",
    "CREDIT_CARD": r"\d(?:[ \-]?\d){12}",
    "IBAN": r"[A-Z]{2}\d{2} ?[A-Z0-9]",
    "IP_ADDRESS": r"\d\.\d{1,3}\.\d{1,3}\.\d|:[0-9A-Fa-f]{0,4}:",
    "US_SSN": r"\d{3}[ \-]\d{2}[ \-]\d{4}",
    "SECRET": _KEY_SHAPES,
}


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum of card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """Whether an IBAN (no spaces) has a plausible length and passes its mod-97 checksum."""
    if not 15 <= len(iban) <= 34 or not iban.isascii() or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def entropy(value: str) -> float:
    """Shannon entropy of a string, in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def _looks_random(token: str) -> bool:
    """Whether a token after `key=`/`token=`/Bearer looks like a generated secret, not a word or a name."""
    has_alpha = any(ch.isalpha() for ch in token)
    has_digit = any(ch.isdigit() for ch in token)
    return has_alpha and has_digit and entropy(token) >= 3.0


def find_email(text: str) -> list[Span]:
    """Email addresses."""
    return [m.span() for m in _EMAIL.finditer(text)]


def _phone_shape_ok(candidate: str) -> bool:
    """An international number: 8 to 15 digits, balanced parentheses, no run of three separators."""
    digits = sum(ch.isdigit() for ch in candidate)
    if not 8 <= digits <= 15 or candidate.count("(") != candidate.count(")"):
        return False
    run = 0
    for ch in candidate:
        run = 0 if ch.isdigit() else run + 1
        if run > 2:
            return False
    return True


def find_phone(text: str) -> list[Span]:
    """Phone numbers: `+` international forms, and US forms with separators (`(415) 555-0132`)."""
    spans = [m.span() for m in _PHONE_INTL.finditer(text) if _phone_shape_ok(m.group())]
    for m in _PHONE_US.finditer(text):
        digits = "".join(ch for ch in m.group() if ch.isdigit())
        if len(digits) == 11:
            digits = digits[1:]
        if digits[0] in "23456789":  # area codes never start with 0 or 1
            spans.append(m.span())
    return spans


def find_card(text: str) -> list[Span]:
    """Payment card numbers: 13-19 digits, spaces or dashes allowed, Luhn-valid."""
    spans = []
    for m in _CARD.finditer(text):
        digits = m.group().replace(" ", "").replace("-", "")
        if digits.strip("0") and luhn_ok(digits):
            spans.append(m.span())
    return spans


def find_iban(text: str) -> list[Span]:
    """IBANs, with or without spaces, checksum-valid (trailing words the regex swallowed are given back)."""
    spans = []
    for m in _IBAN.finditer(text):
        start, candidate = m.start(), m.group()
        while True:
            if iban_ok(candidate.replace(" ", "")):
                spans.append((start, start + len(candidate)))
                break
            cut = candidate.rfind(" ")
            if cut < 15:
                break
            candidate = candidate[:cut]
    return spans


def find_ip(text: str) -> list[Span]:
    """IPv4 and IPv6 addresses that parse as such."""
    spans = []
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        spans.append(m.span())
    if ":" in text:
        for m in _IPV6.finditer(text):
            candidate = m.group()
            if not any(ch.isdigit() for ch in candidate):  # `::` alone, or hex words like `dead::beef`
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            spans.append(m.span())
    return spans


def find_ssn(text: str) -> list[Span]:
    """US social security numbers (`123-45-6789`), outside the areas never issued (000, 666, 900-999)."""
    return [m.span() for m in _SSN.finditer(text)]


def find_secret(text: str) -> list[Span]:
    """API keys of known shapes, and random-looking tokens after `key=`, `token=`, `secret=` or `Bearer`."""
    spans = [m.span() for m in _SECRET_PREFIXED.finditer(text)]
    for pattern in (_SECRET_ASSIGNED, _BEARER):
        spans.extend(m.span(1) for m in pattern.finditer(text) if _looks_random(m.group(1)))
    return spans


FINDERS: dict[str, Callable[[str], list[Span]]] = {
    "EMAIL": find_email,
    "PHONE": find_phone,
    "CREDIT_CARD": find_card,
    "IBAN": find_iban,
    "IP_ADDRESS": find_ip,
    "US_SSN": find_ssn,
    "SECRET": find_secret,
}
# When two findings overlap, the longer wins; on equal length, the earlier in this order.
_PRIORITY = {name: i for i, name in enumerate(("SECRET", "EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS"))}


def resolve(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Non-overlapping findings, in text order: at each place the longest (then highest-priority) one."""
    found.sort(key=lambda f: (f[0], f[0] - f[1], _PRIORITY.get(f[2], 99)))
    kept: list[tuple[int, int, str]] = []
    end = -1
    for f in found:
        if f[0] >= end:
            kept.append(f)
            end = f[1]
    return kept


@register
class Pii(Step):
    """Detect personal data and secrets; redact, mask or hash them, or drop the rows that hold any."""

    name = "pii"

    class Config(StepConfig):
        """Settings of `pii`."""

        fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
        entities: list[Entity] = Field(default_factory=lambda: list(PATTERN_ENTITIES), min_length=1)
        mode: Literal["redact", "mask", "hash", "drop_row"] = "redact"
        salt: str = ""
        language: str = Field(default="en", min_length=2)  # for Presidio's PERSON and LOCATION

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.counts: Counter[str] = Counter()
        self.rows_affected = 0
        self.rows_dropped = 0
        self.patterns = [e for e in dict.fromkeys(self.config.entities) if e in FINDERS]
        self.presidio_entities = [e for e in dict.fromkeys(self.config.entities) if e in PRESIDIO_ENTITIES]
        self._analyzer: Any = None

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """Text fields must exist; PERSON and LOCATION need Presidio installed."""
        for i, name in enumerate(self.config.fields):
            self.require_column(schema, name, f"fields[{i}]")
        if self.presidio_entities and importlib.util.find_spec("presidio_analyzer") is None:
            raise self.field_error(
                f"{' and '.join(self.presidio_entities)} detection needs Microsoft Presidio, which is not "
                "installed: pip install presidio-analyzer (and a spaCy model), or leave these entities out",
                "entities",
            )
        return schema

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """Rewrite (or drop) the rows holding any finding."""
        if batch.num_rows == 0:
            return batch
        hit = [False] * batch.num_rows
        for name in self.config.fields:
            index = batch.schema.get_field_index(name)
            column = batch.column(index)
            if pa.types.is_null(column.type):
                continue
            new_values, changed = self._scan(column, hit)
            if changed and self.config.mode != "drop_row":
                batch = batch.set_column(
                    index, batch.schema.field(index), pa.chunked_array([pa.array(new_values, type=column.type)])
                )
        affected = sum(hit)
        self.rows_affected += affected
        if self.config.mode == "drop_row" and affected:
            self.rows_dropped += affected
            batch = batch.filter(pa.array([not h for h in hit], type=pa.bool_()))
        return batch

    def _scan(self, column: pa.ChunkedArray, hit: list[bool]) -> tuple[list[str | None], bool]:
        """The column's values with findings replaced, whether any changed; marks rows with findings in `hit`."""
        candidates: list[tuple[str, list[bool]]] = []
        for entity in self.patterns:
            mask = pc.fill_null(pc.match_substring_regex(column, _HINTS[entity]), False)
            if pc.any(mask).as_py():
                candidates.append((entity, mask.to_pylist()))
        if not candidates and not self.presidio_entities:
            return [], False
        values: list[str | None] = column.to_pylist()
        changed = False
        for i, text in enumerate(values):
            if not text:
                continue
            found = [(s, e, entity) for entity, mask in candidates if mask[i] for s, e in FINDERS[entity](text)]
            if self.presidio_entities:
                found.extend(self._presidio(text))
            if not found:
                continue
            kept = resolve(found)
            hit[i] = True
            changed = True
            self.counts.update(f[2] for f in kept)
            if self.config.mode != "drop_row":
                values[i] = self._rewrite(text, kept)
        return values, changed

    def _rewrite(self, text: str, kept: list[tuple[int, int, str]]) -> str:
        """The text with each finding replaced according to the mode."""
        parts: list[str] = []
        at = 0
        for start, end, entity in kept:
            parts.append(text[at:start])
            parts.append(self._replacement(text[start:end], entity))
            at = end
        parts.append(text[at:])
        return "".join(parts)

    def _replacement(self, value: str, entity: str) -> str:
        """`[EMAIL]`, `*******1234` or `[EMAIL:3f2a9c0b1d4e]`."""
        mode = self.config.mode
        if mode == "mask":
            return "*" * (len(value) - 4) + value[-4:] if len(value) > 4 else "*" * len(value)
        if mode == "hash":
            digest = hashlib.sha256((self.config.salt + value).encode()).hexdigest()[:12]
            return f"[{entity}:{digest}]"
        return f"[{entity}]"

    def _presidio(self, text: str) -> list[tuple[int, int, str]]:
        """PERSON and LOCATION findings from Presidio's analyzer (created once, on first use)."""
        if self._analyzer is None:
            self._analyzer = importlib.import_module("presidio_analyzer").AnalyzerEngine()
        results = self._analyzer.analyze(text=text, entities=self.presidio_entities, language=self.config.language)
        return [(int(r.start), int(r.end), str(r.entity_type)) for r in results]

    def report(self) -> dict[str, Any]:
        """Findings per entity, rows with any, rows dropped."""
        return {
            "counts": {e: self.counts.get(e, 0) for e in dict.fromkeys(self.config.entities)},
            "rows_affected": self.rows_affected,
            "rows_dropped": self.rows_dropped,
        }
