"""`chat_validate`: check that each row is a well-formed chat conversation before fine-tuning on it.

A conversation is a list of `{role, content}` messages (an Arrow `list<struct<role, content>>` column, or a
text column holding the JSON). It is well formed when every role is known and every message has content, a
system message comes only first, the first other message is the user's, user and assistant take turns (tool
results come after an assistant turn, and the assistant answers them), and, by default, the assistant speaks
last. Roles and emptiness are read with Arrow kernels; only the turn-taking walk runs in Python.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from podium.data.steps.base import Step, StepConfig, StepContext, register

MAX_EXAMPLES = 20
PROBLEMS = {
    "not_a_conversation": "not a list of {role, content} messages",
    "empty_conversation": "no messages",
    "unknown_role": "a role outside the allowed roles",
    "empty_content": "a message without content",
    "system_not_first": "a system message after the first message",
    "first_not_user": "the first message after the system prompt is not the user's",
    "not_alternating": "user and assistant do not take turns",
    "tool_out_of_place": "a tool message not following an assistant or tool message",
    "final_not_assistant": "the last message is not the assistant's",
}
Problem = tuple[str, int]  # (problem, index of the message at fault)


def check(roles: list[str | None], empty: list[bool], allowed: frozenset[str], final_assistant: bool) -> Problem | None:
    """The first problem of one conversation, or None when it is well formed."""
    if not roles:
        return "empty_conversation", 0
    previous: str | None = None  # the last non-system turn: user, assistant or tool (any other allowed role)
    for k, role in enumerate(roles):
        if role is None or role not in allowed:
            return "unknown_role", k
        if empty[k]:
            return "empty_content", k
        if role == "system":
            if k:
                return "system_not_first", k
            continue
        turn = role if role in ("user", "assistant") else "tool"
        if previous is None:
            if turn != "user":
                return "first_not_user", k
        elif turn == "tool":
            if previous == "user":
                return "tool_out_of_place", k
        elif turn == previous or (turn == "user" and previous == "tool"):
            return "not_alternating", k
        previous = turn
    if previous is None:
        return "first_not_user", len(roles)
    if final_assistant and previous != "assistant":
        return "final_not_assistant", len(roles) - 1
    return None


@register
class ChatValidate(Step):
    """Drop (or fail on) conversations that break chat-format rules."""

    name = "chat_validate"

    class Config(StepConfig):
        """Settings of `chat_validate`."""

        field: str = Field(default="messages", min_length=1)
        roles: list[str] = Field(default_factory=lambda: ["system", "user", "assistant", "tool"], min_length=2)
        require_final_assistant: bool = True
        action: Literal["drop", "fail"] = "drop"

        @field_validator("roles")
        @classmethod
        def _needs_both_sides(cls, roles: list[str]) -> list[str]:
            missing = [r for r in ("user", "assistant") if r not in roles]
            if missing:
                raise ValueError(f"roles must include {' and '.join(missing)}")
            return roles

    config: Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        self.allowed = frozenset(self.config.roles)
        self.problems: Counter[str] = Counter()
        self.rows_in = 0
        self.rows_dropped = 0
        self.examples: list[dict[str, Any]] = []
        self._json = False

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The field must hold a list of {role, content} structs, or JSON text; the columns stay as they are."""
        self.require_column(schema, self.config.field, text=False)
        kind = schema.field(self.config.field).type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            self._json = True
            return schema
        ok = (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type)
        if ok:
            message = kind.value_type
            types = {message.field(i).name: message.field(i).type for i in range(message.num_fields)}
            ok = all(
                name in types and (pa.types.is_string(types[name]) or pa.types.is_large_string(types[name]))
                for name in ("role", "content")
            )
        if not ok:
            raise self.field_error(
                f"column {self.config.field!r} holds {kind}, not a list of {{role, content}} messages of text "
                "(or their JSON text)",
                "field",
            )
        return schema

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The batch without malformed conversations (or `InvalidInput` at the first, with `action: fail`)."""
        self.rows_in += batch.num_rows
        column = batch.column(self.config.field).combine_chunks()
        rows = self._parse_json(column) if self._json else self._read_lists(column)
        keep = [True] * batch.num_rows
        for i, row in enumerate(rows):
            problem = ("not_a_conversation", 0) if row is None else check(*row, self.allowed, self._final)
            if problem is None:
                continue
            name, message = problem
            if self.config.action == "fail":
                error = self.field_error(f"row {offset + i}, message {message}: {name} ({PROBLEMS[name]})", "field")
                error.details.update({"row": offset + i, "rule": name, "message": message})
                raise error
            keep[i] = False
            self.problems[name] += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append({"row": offset + i, "problem": name, "message": message})
        dropped = len(keep) - sum(keep)
        self.rows_dropped += dropped
        return batch.filter(pa.array(keep, pa.bool_())) if dropped else batch

    @property
    def _final(self) -> bool:
        return self.config.require_final_assistant

    @staticmethod
    def _read_lists(column: pa.Array) -> list[tuple[list[str | None], list[bool]] | None]:
        """Roles and empty-content flags per row of a list<struct<role, content>> column (None for null rows)."""
        flat = pc.list_flatten(column)
        roles = pc.struct_field(flat, "role").to_pylist() if len(flat) else []
        content = pc.struct_field(flat, "content") if len(flat) else pa.array([], pa.string())
        empty = pc.invert(pc.fill_null(pc.match_substring_regex(content, r"\S"), False)).to_pylist()
        lengths = pc.list_value_length(column).to_pylist()
        rows: list[tuple[list[str | None], list[bool]] | None] = []
        at = 0
        for n in lengths:
            if n is None:
                rows.append(None)
                continue
            rows.append((roles[at : at + n], empty[at : at + n]))
            at += n
        return rows

    @staticmethod
    def _parse_json(column: pa.Array) -> list[tuple[list[str | None], list[bool]] | None]:
        """Roles and empty-content flags per row of a JSON text column (None for rows that are not messages)."""
        rows: list[tuple[list[str | None], list[bool]] | None] = []
        for text in column.to_pylist():
            try:
                messages = orjson.loads(text) if text is not None else None
            except orjson.JSONDecodeError:
                messages = None
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("content", ""), str | None) for m in messages
            ):
                rows.append(None)
                continue
            roles = [m.get("role") if isinstance(m.get("role"), str) else None for m in messages]
            empty = [not (m.get("content") or "").strip() for m in messages]
            rows.append((roles, empty))
        return rows

    def report(self) -> dict[str, Any]:
        """Rows dropped, how many for each problem (the first found in a row), and examples with row indexes."""
        return {
            "rows_in": self.rows_in,
            "rows_dropped": self.rows_dropped,
            "problems": dict(self.problems.most_common()),
            "examples": list(self.examples),
        }
