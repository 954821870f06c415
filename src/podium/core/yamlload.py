"""YAML from callers, bounded: PyYAML's `safe_load` with the document's expanded size and depth capped.

A few hundred bytes of anchors and aliases (`b: &b [*a, *a, ...]`, nine levels deep) describe a billion values:
`safe_load` shares them, so parsing is instant, but whatever walks the result afterwards (validation, JSON,
hashing) expands them. Every spec a caller sends (policies, rules, blueprints, chains, pipelines) is read here,
so its expanded size is counted once, at most `max_values` steps, and refused beyond. Deep nesting (`[[[[...`)
makes PyYAML's recursive composer raise `RecursionError`; it is refused as a YAML error too.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_VALUES = 200_000  # scalars, lists and mappings of the expanded document
MAX_DEPTH = 64


class TooLarge(yaml.YAMLError):
    """The document expands to too many values, or nests too deeply."""


def load(text: str, *, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH) -> Any:
    """The document's data (`yaml.safe_load`); `yaml.YAMLError` (a `TooLarge`) when it expands beyond
    `max_values` values or `max_depth` levels, so callers' existing error handling names the problem."""
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise TooLarge(f"the document nests more deeply than YAML is read here (at most {max_depth} levels)") from None
    _check(data, max_values, max_depth)
    return data


def _check(data: Any, max_values: int, max_depth: int) -> None:
    seen = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise TooLarge(
                f"the document expands to more than {max_values:,} values (anchors and aliases repeat what they"
                " name); write it out smaller"
            )
        if depth > max_depth:
            raise TooLarge(f"the document nests more than {max_depth} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if isinstance(k, tuple))
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)
