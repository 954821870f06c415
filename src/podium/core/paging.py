"""A page of results with a cursor, the shape every list endpoint answers."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of results and the cursor for the next one (None at the end)."""

    items: list[T]
    next_cursor: str | None = None
