"""Two tools for the example agent: load them with `PODIUM_TOOL_MODULES=tools` (run `podium serve` from this
folder, or put it on PYTHONPATH)."""

from __future__ import annotations

from podium.chains.tools import tool

ORDERS = {
    "A-17": {"status": "in transit", "carrier": "DHL", "eta_days": 2, "total": 42.5},
    "B-02": {"status": "delivered", "carrier": "UPS", "eta_days": 0, "total": 19.0},
}


@tool
def order_status(order_id: str) -> dict[str, object]:
    """The status, carrier and expected delivery of an order (ids look like A-17)."""
    found = ORDERS.get(order_id.strip().upper())
    if found is None:
        raise ValueError(f"no order {order_id!r}; order ids look like A-17")
    return {"order_id": order_id, **found}


@tool(requires_approval=True)
def refund(order_id: str, amount: float) -> dict[str, object]:
    """Refund part or all of an order (a person approves each refund)."""
    order = ORDERS.get(order_id.strip().upper())
    if order is None:
        raise ValueError(f"no order {order_id!r}")
    if amount <= 0 or amount > float(str(order["total"])):
        raise ValueError(f"a refund of order {order_id} must be between 0 and {order['total']}")
    return {"order_id": order_id, "refunded": amount}
