"""What a span can be: one `Literal` for type checkers and pydantic, and its values as a tuple for checks at
run time. The SDK, ingest and the tables share it; it imports nothing, so the client-side SDK stays light."""

from __future__ import annotations

from typing import Literal, get_args

SpanKind = Literal["llm", "chain", "retriever", "embedding", "tool", "agent", "guardrail", "evaluator", "other"]
SPAN_KINDS: tuple[SpanKind, ...] = get_args(SpanKind)
