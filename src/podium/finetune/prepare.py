"""Rows to training sequences: a conversation rendered with the base model's chat template (or joined as plain
text), tokenized, with a mask of the tokens the loss is taken on (the answer's, not the prompt's), and the
blueprint's truncation policy applied. The pipeline's prepare stage and planning share it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]


@dataclass
class Prepared:
    """Tokenized rows and what happened to the long ones."""

    rows: list[dict[str, list[int]]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # every row's length before truncation
    truncated: int = 0
    dropped: int = 0
    empty: int = 0  # rows with nothing to learn (no answer tokens): skipped

    def report(self, max_length: int) -> dict[str, Any]:
        """The numbers the run shows for this split."""
        ordered = sorted(self.lengths)
        return {
            "rows": len(self.lengths),
            "kept": len(self.rows),
            "tokens": sum(len(r["input_ids"]) for r in self.rows),
            "longest": ordered[-1] if ordered else 0,
            "too_long": sum(1 for n in self.lengths if n > max_length),
            "truncated": self.truncated,
            "dropped": self.dropped,
            "empty": self.empty,
        }


def split(messages: list[Message]) -> tuple[list[Message], Message]:
    """A conversation as (the turns before its last answer, that answer): the answer is what is learned."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    if last < 0:
        raise ValueError("a training conversation needs an assistant message")
    return messages[:last], messages[last]


def prompt_text(tokenizer: Any, history: list[Message], chat_template: bool) -> str:
    """What the model is given before it answers."""
    if chat_template:
        return str(tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True))
    return "\n".join(m["content"] for m in history) + "\n"


def tokenize(
    tokenizer: Any,
    conversations: Iterable[list[Message]],
    *,
    chat_template: bool,
    max_length: int,
    truncation: str,
) -> Prepared:
    """Each conversation as `input_ids` and `completion_mask` (1 on the last answer's tokens), truncated to
    `max_length` or dropped as `truncation` says (`refuse` was checked at plan time; it truncates here)."""
    out = Prepared()
    eos = tokenizer.eos_token or ""
    for messages in conversations:
        history, answer = split(messages)
        prompt = prompt_text(tokenizer, history, chat_template)
        if chat_template:
            full = str(tokenizer.apply_chat_template([*history, answer], tokenize=False))
            if not full.startswith(prompt):  # a template that rewrites earlier turns: learn from the end
                prompt = full[: len(full) - len(answer["content"]) - len(eos)] if full.endswith(eos) else prompt
        else:
            full = prompt + answer["content"] + eos
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        n = min(len(prompt_ids), len(ids))
        while n and ids[:n] != prompt_ids[:n]:  # the prompt's last token may merge with the answer's first
            n -= 1
        mask = [0] * n + [1] * (len(ids) - n)
        out.lengths.append(len(ids))
        if len(ids) > max_length:
            if truncation == "drop":
                out.dropped += 1
                continue
            ids, mask = ids[:max_length], mask[:max_length]
            out.truncated += 1
        if not any(mask):
            out.empty += 1
            continue
        out.rows.append({"input_ids": ids, "completion_mask": mask})
    return out


def conversations_of(columns: dict[str, list[Any]], data: Any) -> list[list[Message]]:
    """A batch of rows (columns of a table) as conversations, by the blueprint's field mapping."""
    if data.messages_field:
        return [
            [{"role": str(m.get("role", "user")), "content": str(m.get("content") or "")} for m in (row or [])]
            for row in columns[data.messages_field]
        ]
    prompts, completions = columns[data.prompt_field], columns[data.completion_field]
    return [
        [{"role": "user", "content": str(p or "")}, {"role": "assistant", "content": str(c or "")}]
        for p, c in zip(prompts, completions, strict=True)
    ]
