"""Money: stored as integer micro-dollars (never floats), shown as dollars by one formatter everywhere
(API, CLI, dashboard, error messages)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICROS_PER_USD = 1_000_000
_MICRO = Decimal("0.000001")


def usd(micros: int) -> Decimal:
    """Micro-dollars as an exact USD decimal."""
    return Decimal(micros) / MICROS_PER_USD


def micros(amount: Decimal | str | float) -> int:
    """Dollars as whole micro-dollars (half a micro-dollar rounds up)."""
    return int((Decimal(str(amount)) * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_usd(amount: Decimal | str | float | None) -> str:
    """`$1.50`, `$1,234.00`, `$0.000156`: cents at least, micro-dollars at most, no trailing zeros beyond the
    cents; `—` for no amount."""
    if amount is None:
        return "—"
    value = Decimal(str(amount)).quantize(_MICRO, rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    whole, _, frac = f"{abs(value):,.6f}".partition(".")
    return f"{sign}${whole}.{frac.rstrip('0').ljust(2, '0')}"


def format_micros(amount: int | None) -> str:
    """`format_usd` of an amount in micro-dollars."""
    return "—" if amount is None else format_usd(usd(amount))
