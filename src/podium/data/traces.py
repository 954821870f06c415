"""Traces to rows: production traffic and the feedback on it become a dataset version.

A trace query (the filters of `/api/traces`) plus score conditions selects traces; each becomes one row of
its input, output, metadata, scores and feedback, with its `trace_id`, so every row links back to the call
behind it. Chat inputs also give a `messages` column (the request's messages and the answer as the last
assistant turn), ready for fine-tuning sets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import service
from podium.data.service import ImportResult
from podium.tracing import service as tracing
from podium.tracing.scores.service import ScoreInfo, trace_scores

PAGE = 200
MAX_TRACES = 1_000_000

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCORE = pa.struct([("name", pa.string()), ("value", pa.float64()), ("source", pa.string()), ("comment", pa.string())])
SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("name", pa.string()),
        ("model", pa.string()),
        ("status", pa.string()),
        ("start_time", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("messages", pa.list_(MESSAGE)),
        ("metadata", pa.string()),
        ("scores", pa.list_(SCORE)),
        ("feedback", pa.string()),
    ]
)


class TraceSelection(BaseModel):
    """Which traces become rows: the trace filters (as query parameters of `/api/traces`), a score condition,
    whether only traces with human feedback count, and how many at most."""

    model_config = ConfigDict(extra="forbid")

    filters: dict[str, str] = Field(default_factory=dict, description="`/api/traces` filters: from, to, model, …")
    score: str | None = Field(None, description="A score name the trace must have.")
    min_score: float | None = None
    max_score: float | None = None
    feedback_only: bool = Field(False, description="Only traces with a score from a person (source `user`).")
    limit: int = Field(10_000, ge=1, le=MAX_TRACES)


def _messages(raw: str | None, output: str | None) -> list[dict[str, str]] | None:
    """The chat turns of a stored request body and its answer, or None when the input is not chat."""
    if not raw:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    items = body.get("messages") if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        return None
    turns = []
    for m in items:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return None
        content = m.get("content")
        turns.append(
            {"role": m["role"], "content": content if isinstance(content, str) else orjson.dumps(content).decode()}
        )
    if output:
        turns.append({"role": "assistant", "content": _answer(output)})
    return turns


def _answer(output: str) -> str:
    """The assistant's text from a stored answer (an OpenAI body or plain text)."""
    try:
        body = orjson.loads(output)
    except orjson.JSONDecodeError:
        return output
    if isinstance(body, dict) and isinstance(body.get("choices"), list) and body["choices"]:
        choice = body["choices"][0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
    return output if not isinstance(body, str) else body


def _keep(scores: list[ScoreInfo], sel: TraceSelection) -> bool:
    if sel.feedback_only and not any(s.source == "user" for s in scores):
        return False
    if sel.score is None:
        return True
    values = [s.value for s in scores if s.name == sel.score]
    if not values:
        return False
    value = values[-1]  # the latest
    return not (
        (sel.min_score is not None and value < sel.min_score) or (sel.max_score is not None and value > sel.max_score)
    )


def _rows(platform: Platform, actor: Actor, sel: TraceSelection, counts: dict[str, int]) -> Iterator[pa.Table]:
    filters = tracing.parse_filters(sel.filters)
    cursor: str | None = None
    while counts["rows"] < sel.limit:
        page = tracing.list_traces(platform, actor, filters, limit=PAGE, cursor=cursor, bodies=True)
        scores = trace_scores(platform.db, actor, [t.id for t in page.traces])
        rows = []
        for t in page.traces:
            counts["traces"] += 1
            mine = scores.get(t.id, [])
            if not _keep(mine, sel):
                continue
            record: Any = t
            feedback = [s.comment for s in mine if s.source == "user" and s.comment]
            rows.append(
                {
                    "trace_id": t.id,
                    "name": t.name,
                    "model": t.model,
                    "status": t.status,
                    "start_time": t.start_time,
                    "user_id": t.user_id,
                    "session_id": t.session_id,
                    "input": record.input,
                    "output": record.output,
                    "messages": _messages(record.input, record.output),
                    "metadata": orjson.dumps(record.metadata).decode() if record.metadata else None,
                    "scores": [
                        {
                            "name": s.name,
                            "value": s.value if math.isfinite(s.value) else None,
                            "source": s.source,
                            "comment": s.comment,
                        }
                        for s in mine
                    ],
                    "feedback": feedback[-1] if feedback else None,
                }
            )
            counts["rows"] += 1
            if counts["rows"] >= sel.limit:
                break
        if rows:
            yield pa.Table.from_pylist(rows, schema=SCHEMA)
        cursor = page.next_cursor
        if cursor is None:
            break


def import_traces(
    platform: Platform, actor: Actor, name: str, selection: Any, *, message: str = "", description: str = ""
) -> ImportResult:
    """The traces `selection` picks, as the next version of dataset `name` (one row per trace, linked by
    `trace_id`); the selection is recorded in the version's lineage."""
    actor.require("member", "import datasets")
    sel = selection if isinstance(selection, TraceSelection) else _selection(selection)
    counts = {"traces": 0, "rows": 0}
    return service.import_batches(
        platform,
        actor,
        name,
        _rows(platform, actor, sel, counts),
        lineage={"kind": "traces", "selection": sel.model_dump(mode="json"), "counts": counts},
        message=message,
        description=description,
    )


def _selection(data: Any) -> TraceSelection:
    from podium.core.errors import validated

    if not isinstance(data, dict):
        raise InvalidInput("a trace selection is a JSON object (filters, score, …)", details={"field": "selection"})
    return validated(TraceSelection, data, "trace selection")
