"""The one rule for the names of things people create (projects, users, models, prompts, experiments and
every later object) and for the movable labels on their versions.

Names are lowercase so that `Support-Bot` and `support-bot` can never be two objects, and carry no `@`,
which separates a name from a version or label in references (`name@label`). A label can never be read as
something else in a reference: `latest` always means the newest version and `v3` means version 3, so
neither is a label.
"""

from __future__ import annotations

import re

from podium.core.errors import InvalidInput

MAX_NAME = 120
MAX_LABEL = 60
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_LABEL = re.compile(r"^[a-z][a-z0-9_-]*$")
_VERSION_WORD = re.compile(r"^v[0-9]+$")  # `name@v3` is version 3
RESERVED_LABELS = frozenset({"latest"})  # `name@latest` always means the newest version


def check_name(value: str, kind: str, *, max_length: int = MAX_NAME, field: str = "name") -> str:
    """`value` stripped, if it is a valid name for a `kind` ("model", "prompt", …); else `InvalidInput`."""
    name = value.strip() if isinstance(value, str) else ""
    if not _NAME.match(name) or len(name) > max_length:
        raise InvalidInput(
            f"{kind} name {value!r} is not valid: use 1-{max_length} lowercase letters, digits, '.', '_' or '-',"
            " starting with a letter or digit",
            details={"field": field},
        )
    return name


def check_label(value: str, kind: str = "label", *, field: str = "label") -> str:
    """A movable label (`production`, `staging`, `golden`): 1-60 lowercase letters, digits, '_' or '-',
    starting with a letter; `latest` and version numbers (`v3`) are reserved."""
    if (
        not isinstance(value, str)
        or value in RESERVED_LABELS
        or not _LABEL.match(value)
        or _VERSION_WORD.match(value)
        or len(value) > MAX_LABEL
    ):
        raise InvalidInput(
            f"{kind} {value!r} is not valid: use 1-{MAX_LABEL} lowercase letters, digits, '_' or '-', starting"
            " with a letter ('latest' is reserved: it always means the newest version; 'v3' means version 3)",
            details={"field": field},
        )
    return value
