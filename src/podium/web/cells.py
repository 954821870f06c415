"""How a value of a user's data is shown in a table cell: the dataset row browser and the eval rows share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

CELL_CHARS = 300  # characters of a value shown in a table cell


@dataclass(frozen=True)
class Cell:
    """A value as a table cell: its text (cut to `CELL_CHARS`), how many characters were left out, and its
    kind (`text`, `number`, `json`, `null`) for styling."""

    text: str
    cut: int
    kind: str


def cell(value: Any, limit: int = CELL_CHARS) -> Cell:
    """How a value is shown: text as it is, numbers as written, lists and objects as JSON; cut."""
    if value is None:
        return Cell("null", 0, "null")
    if isinstance(value, bool):
        return Cell("true" if value else "false", 0, "number")
    if isinstance(value, int | float):
        return Cell(str(value), 0, "number")
    if isinstance(value, str):
        text, kind = value, "text"
    else:
        text, kind = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode(), "json"
    if len(text) > limit:
        return Cell(text[:limit], len(text) - limit, kind)
    return Cell(text, 0, kind)
