"""How the trace pages write figures (durations, counts, dollars, rates) and carry the trace filters from
one page's links to the next."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from podium.core.money import format_usd
from podium.tracing import service


def fmt_ms(value: float | None) -> str:
    """A duration for people: `0.42 ms`, `125 ms`, `1.35 s`, `2m 05s`."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(round(value / 1000), 60)
    return f"{minutes}m {seconds:02d}s"


def fmt_count(value: float | None) -> str:
    """A count with thousands separators, or 12.3K / 4.5M when large."""
    if value is None:
        return "—"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e5:
        return f"{value / 1e3:.0f}K"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def fmt_pct(value: float | None) -> str:
    """A rate as a percentage."""
    return "—" if value is None else f"{value * 100:.1f}%"


# what templates call them; dollars are written by `core.money.format_usd`, as everywhere else
FORMATS: dict[str, Any] = {"fmt_ms": fmt_ms, "fmt_count": fmt_count, "fmt_usd": format_usd, "fmt_pct": fmt_pct}


def query_string(params: Mapping[str, str | None], **changes: str | None) -> str:
    """A query string of the non-empty values of `params` with `changes` applied."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v})


def filter_params(request: Request) -> dict[str, str]:
    """The trace filters in the request's query string, as typed."""
    return {p: request.query_params[p] for p in service.FILTER_PARAMS if request.query_params.get(p)}
