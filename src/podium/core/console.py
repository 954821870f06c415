"""Shared CLI output: Rich tables for people, `--json` for scripts, one-line errors on stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fmt(value: Any) -> str:
    """A cell value for a table."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def usd(amount: str | Decimal | None) -> str:
    """`$1.50`, `$0.000156`: cents at least, micro-dollars at most, no trailing zeros beyond the cents."""
    if amount is None:
        return "—"
    whole, _, frac = f"{Decimal(amount):.6f}".partition(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


def print_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A table of dict rows, one column per key in `columns`."""
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col.replace("_", " "))
    for row in rows:
        table.add_row(*(fmt(row.get(c)) for c in columns))
    console.print(table)


def print_record(row: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    """One object as `key: value` lines."""
    for key in keys or list(row):
        console.print(f"[bold]{key}[/bold]: {fmt(row.get(key))}")


def fail(message: str, code: int = 1) -> None:
    """Print one error line to stderr and exit."""
    err_console.print(f"[red]error:[/red] {message}", markup=True)
    raise SystemExit(code)
