"""Prices and costs. Costs are integer micro-dollars: tokens times USD-per-million-tokens is exactly micro-USD."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PRICE_FILE = Path(__file__).with_name("data") / "prices.toml"


@dataclass(frozen=True)
class Price:
    """USD per one million input and output tokens."""

    input: float
    output: float

    def cost_micros(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Micro-dollars for a call's usage, rounded up so a budget is never under-counted."""
        exact = prompt_tokens * self.input + completion_tokens * self.output
        whole = int(exact)
        return whole + (1 if exact > whole + 1e-9 else 0)


FREE = Price(0.0, 0.0)


@cache
def price_table() -> tuple[str, dict[str, Price]]:
    """The shipped table's version and prices by model name."""
    data = tomllib.loads(PRICE_FILE.read_text())
    prices = {name: Price(float(p["input"]), float(p.get("output", 0.0))) for name, p in data["models"].items()}
    return str(data["version"]), prices


def lookup_price(model: str) -> Price | None:
    """The shipped price of an upstream model name; dated suffixes (`gpt-4o-2024-08-06`) match their base."""
    _, prices = price_table()
    if model in prices:
        return prices[model]
    name = model.rsplit("/", 1)[-1]
    best = None
    for known, price in prices.items():
        if (name.startswith(known + "-") or name == known) and (best is None or len(known) > len(best[0])):
            best = (known, price)
    return best[1] if best else None
