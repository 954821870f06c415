"""Trace texts for analyses that read what users asked and what models answered (drift): a bounded random sample
of the traces a filter selects, each reduced to its text (a chat request's last user message, an answer's
assistant message, plain text as it is). Read-only.

A window holding more traces than asked is sampled by the database (`ORDER BY random()` over the ids, on SQLite
and PostgreSQL alike, then the bodies of the ids drawn), so the sample is random but not reproducible; fewer are
read whole. A payload kept in the
artifact store counts with its stored preview (its first 1,000 characters), not its whole body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, func, select

from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing.filters import TraceFilters, conditions
from podium.tracing.store import Span, Trace
from podium.tracing.views import artifact_ref

MAX_SAMPLE = 10_000  # texts one call returns at most
MAX_TEXT_CHARS = 8_000  # characters kept of each text
TextField = Literal["input", "output"]


@dataclass(frozen=True)
class TextSample:
    """A sample of trace texts: `total` traces matched with a non-empty field, `texts` (trace id, text) were
    read (all of them unless `sampled`)."""

    total: int
    texts: list[tuple[str, str]]
    sampled: bool


def _parts_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def input_text(body: Any) -> str:
    """What a user asked, from a stored input value: a chat request's last user message (or every message's
    text when none is the user's), a completion's prompt, an `input` field, or text as it is."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in ("messages", "prompt", "input"):
            if key in body:
                return input_text(body[key])
        return ""
    if isinstance(body, list):
        if body and all(isinstance(m, dict) and "content" in m for m in body):
            users = [m for m in body if m.get("role") == "user"]
            chosen = users[-1:] if users else body
            return "\n".join(_parts_text(m.get("content")) for m in chosen)
        return "\n".join(t for t in (input_text(x) for x in body) if t)
    return ""


def output_text(body: Any) -> str:
    """What a model answered, from a stored output value: the first choice's message (or text) of an OpenAI
    answer, a message's content, or text as it is."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            first = choices[0]
            message = first.get("message") or first.get("delta")
            if isinstance(message, dict):
                return _parts_text(message.get("content"))
            return str(first.get("text") or "")
        if "content" in body:
            return _parts_text(body["content"])
        for key in ("output", "text", "answer"):
            if isinstance(body.get(key), str):
                return str(body[key])
        return ""
    return ""


def stored_to_text(stored: str | None, field: TextField) -> str:
    """The text of a stored payload (JSON text, plain text or an artifact marker, whose preview is used)."""
    if not stored:
        return ""
    ref = artifact_ref(stored)
    if ref is not None:
        return ref.preview
    value: Any = stored
    if stored.lstrip()[:1] in ("{", "[", '"'):
        try:
            value = orjson.loads(stored)
        except orjson.JSONDecodeError:
            value = stored
    text = input_text(value) if field == "input" else output_text(value)
    return text.strip()[:MAX_TEXT_CHARS]


def sample_texts(
    platform: Platform,
    actor: Actor,
    filters: TraceFilters,
    field: TextField,
    limit: int,
    *,
    prompt_version: str | None = None,
) -> TextSample:
    """Up to `limit` texts of `field` of the traces `filters` select in the caller's scope (with a span of
    `prompt_version` when given): all of them when they fit, else a random sample."""
    actor.require("viewer", "read traces")
    if field not in ("input", "output"):
        raise InvalidInput(f"field {field!r} is not input or output", details={"field": "field"})
    if not 1 <= limit <= MAX_SAMPLE:
        raise InvalidInput(f"limit must be between 1 and {MAX_SAMPLE}", details={"field": "limit"})
    column = Trace.input if field == "input" else Trace.output
    with platform.db.read_session() as s:
        conds: list[ColumnElement[bool]] = [*conditions(s, actor, filters), column.is_not(None), column != ""]
        if prompt_version is not None:
            conds.append(Trace.id.in_(select(Span.trace_id).where(Span.prompt_version_id == prompt_version)))
        total = int(s.execute(select(func.count()).select_from(Trace).where(*conds)).scalar_one())
        sampled = total > limit
        texts = []
        if not sampled:
            q = select(Trace.id, column.label("body")).where(*conds).order_by(Trace.id)
            rows = [(str(r.id), r.body) for r in s.execute(q.execution_options(yield_per=200))]
        else:  # draw the ids first (the sort holds ids, not bodies), then read their bodies
            ids = [str(i) for i in s.scalars(select(Trace.id).where(*conds).order_by(func.random()).limit(limit))]
            rows = []
            for at in range(0, len(ids), 500):
                chunk = select(Trace.id, column.label("body")).where(Trace.id.in_(ids[at : at + 500]))
                rows += [(str(r.id), r.body) for r in s.execute(chunk)]
        for trace_id, body in rows:
            text = stored_to_text(body, field)
            if text:
                texts.append((trace_id, text))
    return TextSample(total=total, texts=texts, sampled=sampled)
