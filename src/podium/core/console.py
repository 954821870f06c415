"""Shared CLI output: Rich tables for people, tab-separated rows for pipes, `--json` for scripts, one-line
errors on stderr.

On a terminal a table is a Rich table fitted to the window. When stdout is not a terminal (`| grep`,
`> file`) it is one header line and one line per row, cells separated by tabs, never cut or wrapped,
so `podium models ls | grep NAME` and `cut -f1` see whole names and ids. Money is formatted by
`core.money` (`format_usd`, `format_micros`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

_FLAT = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


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


def is_terminal() -> bool:
    """Whether stdout is a terminal (a person reading), not a pipe or a file."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def print_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A table of dict rows, one column per key in `columns`: Rich on a terminal, tab-separated otherwise."""
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    if not is_terminal():
        lines = [f"# {title}"] if title else []
        lines += ["\t".join(columns)]
        lines += ["\t".join(cell.translate(_FLAT) for cell in line) for line in cells]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col.replace("_", " "))
    for line in cells:
        table.add_row(*(Text(cell) for cell in line))  # Text: a `[tag]` in a value is shown, not read as markup
    console.print(table)


def print_record(row: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    """One object as `key: value` lines."""
    for key in keys or list(row):
        console.print(f"[bold]{escape(key)}[/bold]: {escape(fmt(row.get(key)))}")


def fail(message: str, code: int = 1) -> None:
    """Print one error line to stderr and exit."""
    err_console.print(f"[red]error:[/red] {escape(message)}", markup=True)
    raise SystemExit(code)
