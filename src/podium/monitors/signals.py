"""What one trace says beyond its totals, read as the monitors roll it up: its prompt version, whether the
cache answered, whether a guardrail blocked it, and whether its answer opens as a refusal.

The refusal detector is deliberately cheap (it runs on every rolled trace): a list of refusal openings,
matched case-insensitively at the start of the answer's text (after a few words at most), on the first
`MONITOR_OUTPUT_CHARS` characters of the stored output (of its preview, for an answer moved to the
artifact store). It catches the stock phrasings of assistant
models ("I'm sorry, but I can't…", "I cannot help with…", "As an AI…"); a refusal worded otherwise is
missed, and an answer that apologises and then helps ("I'm sorry for the confusion, here is…") is not
counted, because the list holds refusal verbs, not apologies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from podium.tracing.aggregates import MONITOR_OUTPUT_CHARS
from podium.tracing.markers import MARKER_PREFIX

CACHE_HITS = frozenset({"hit", "semantic-hit"})
CACHE_LOOKUPS = CACHE_HITS | {"miss"}
BLOCK_CODE = "guardrail_violation"
# what the error of a call a route's own guardrails refused says (`gateway.guardrails`)
_BLOCK_MARKS = (BLOCK_CODE, "blocked by guardrail")

_CANNOT = r"(?:can(?:'t|not|\s+not)|won't|will\s+not|am\s+(?:not\s+able|unable)|'m\s+(?:not\s+able|unable))"
_VERBS = r"(?:help|assist|provide|comply|do\s+that|fulfil+|answer|support|create|generate|share|write|engage)"
_OPENINGS = (
    rf"i\s*(?:'m|am)\s+(?:sorry|afraid)[,.!]?\s*(?:but\s+)?i\s+{_CANNOT}",
    rf"i\s+(?:can(?:'t|not|\s+not)|won't|will\s+not)\s+{_VERBS}",
    rf"i\s*(?:'m|\s+am)\s+(?:not\s+able|unable)\s+to\s+{_VERBS}",
    r"i\s+(?:must|have\s+to)\s+(?:decline|refuse)",
    rf"i\s+(?:apologi[sz]e|regret)[,.!]?\s*(?:but\s+)?i\s+{_CANNOT}",
    rf"sorry[,.!]?\s*(?:but\s+)?i\s+{_CANNOT}",
    r"as\s+an?\s+(?:ai|language\s+model|ai\s+language\s+model|assistant),?\s+i\s+(?:can(?:'t|not)|don't|do\s+not|am\s+(?:not|unable))",
    rf"(?:unfortunately|regrettably),?\s+i\s+{_CANNOT}",
)
# a refusal opening, after at most four words ("Hello! I'm sorry, but I can't…")
_REFUSAL = re.compile(r"^\W*(?:[\w']+[,.!:;]?\s+){0,4}?(?:" + "|".join(_OPENINGS) + ")", re.IGNORECASE)


def is_refusal(text: str) -> bool:
    """Whether an answer opens as a refusal (see the module docstring)."""
    return _REFUSAL.match(text.replace("\u2019", "'")) is not None


def answer_text(output: str | None) -> str:
    """The text of an answer as the trace stores it: a chat completion's first message, a completion's text,
    a message, or plain text (a clipped JSON document is read as text)."""
    if not output:
        return ""
    if output.startswith(MARKER_PREFIX):  # moved to the artifact store: its preview holds the opening
        output = _string_at(_PREVIEW, output)
    raw = output.lstrip()
    if raw[:1] not in ("{", "[", '"'):
        return raw
    if len(output) >= MONITOR_OUTPUT_CHARS:  # read clipped: not whole JSON, its first text field will do
        return _json_string_field(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json_string_field(raw)
    return _text_of(doc)


def _text_of(doc: Any) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, list):
        return _text_of(doc[-1]) if doc else ""
    if not isinstance(doc, dict):
        return ""
    choices = doc.get("choices")
    if isinstance(choices, list) and choices:
        first = choices[0]
        if isinstance(first, dict):
            if isinstance(first.get("message"), dict):
                return _text_of(first["message"])
            if isinstance(first.get("text"), str):
                return str(first["text"])
    content = doc.get("content", doc.get("text", doc.get("output")))
    if isinstance(content, list):  # content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


_CONTENT_FIELD = re.compile(r'"(?:content|text)"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)')  # unrolled: fast


_PREVIEW = re.compile(r'"preview"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)')


def _json_string_field(raw: str) -> str:
    """The first `content` or `text` string of a JSON document cut short (the output read is clipped)."""
    return _string_at(_CONTENT_FIELD, raw)


def _string_at(pattern: re.Pattern[str], raw: str) -> str:
    """The JSON string the pattern's group starts, unescaped; cut short, up to its last whole character."""
    found = pattern.search(raw)
    if found is None:
        return ""
    body = found.group(1)
    for cut in range(0, 7):  # a clipped escape (`\`, `\u20`) is dropped
        try:
            return str(orjson.loads(f'"{body[: len(body) - cut]}"'))
        except orjson.JSONDecodeError:
            continue
    return body


def prompt_of(meta: Any) -> str:
    """The prompt version a trace used (`name@N`, from its metadata), or ""."""
    if isinstance(meta, str):
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            return ""
    if isinstance(meta, Mapping):
        value = meta.get("prompt")
        if isinstance(value, str):
            return value[:200]
    return ""


def is_blocked(status: str | None, error: str | None, meta: Any) -> bool:
    """Whether a guardrail refused the call: an error trace whose metadata records a guard policy that blocked
    it (`guard.blocked`: the stage), or whose error says a route's guardrail blocked it."""
    if status != "error":
        return False
    if isinstance(meta, str):
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            meta = {}
    if isinstance(meta, Mapping):
        if meta.get("error_code") == BLOCK_CODE:
            return True
        guard = meta.get("guard")
        if guard is not None and _blocked(guard):
            return True
    return bool(error) and any(mark in str(error) for mark in _BLOCK_MARKS)


def _blocked(guard: Any) -> bool:
    """Whether a guard record (a decision, or a list or mapping of them) says the call was blocked."""
    if isinstance(guard, list):
        return any(_blocked(g) for g in guard)
    if not isinstance(guard, Mapping):
        return False
    if guard.get("blocked") or guard.get("action") == "block":
        return True
    for key in ("stages", "input", "output"):
        inner = guard.get(key)
        if isinstance(inner, list | Mapping) and _blocked(inner):
            return True
    return False


def facts(trace: Mapping[str, Any]) -> tuple[str, bool, bool, bool, bool, bool]:
    """A rolled trace's (prompt, cache looked up, cache hit, blocked, answered, refused)."""
    cache = trace.get("cache_status")
    blocked = is_blocked(trace.get("status"), trace.get("error"), trace.get("meta"))
    answered = trace.get("status") == "ok" and bool(trace.get("output"))
    refused = answered and is_refusal(answer_text(trace.get("output")))
    return prompt_of(trace.get("meta")), cache in CACHE_LOOKUPS, cache in CACHE_HITS, blocked, answered, refused
