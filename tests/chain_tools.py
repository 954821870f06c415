"""Tools the chain tests' server loads through the `tool_modules` setting: each does something checkable."""

from __future__ import annotations

import time

from podium.chains.tools import tool

CALLS: list[tuple[str, dict[str, object]]] = []


@tool
def lookup_order(order_id: str) -> dict[str, object]:
    """Look up an order by its id."""
    CALLS.append(("lookup_order", {"order_id": order_id}))
    return {"order_id": order_id, "status": "shipped", "total": 42.5}


@tool
async def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    CALLS.append(("add", {"a": a, "b": b}))
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


@tool
def hang(seconds: float) -> str:
    """Sleeps (to outlive a step's timeout)."""
    time.sleep(seconds)
    return "woke"


@tool(requires_approval=True)
def refund(order_id: str, amount: float) -> dict[str, object]:
    """Refund an order (a person must approve)."""
    CALLS.append(("refund", {"order_id": order_id, "amount": amount}))
    return {"refunded": amount, "order_id": order_id}
