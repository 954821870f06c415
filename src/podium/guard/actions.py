"""Applying findings to text: block, redact (reversibly), mask, hash, or warn (leave the text).

Redaction replaces each value with a placeholder such as `[EMAIL_1]` (one placeholder per distinct value) and
keeps the mapping in a `Vault`, so an answer that repeats the placeholder can be de-anonymised with
`Vault.restore`. Overlapping findings are resolved first: at each place the longest one wins.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from podium.guard.base import ACTIONS, Action, Finding, ScannerError


@dataclass
class Vault:
    """The reversible mapping of a redaction: placeholder -> original value."""

    values: dict[str, str] = field(default_factory=dict)
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    def placeholder(self, type_: str, value: str) -> str:
        """The placeholder of a value (the same value of the same type always gets the same one)."""
        key = (type_, value)
        found = self._by_value.get(key)
        if found is None:
            n = self._counts.get(type_, 0) + 1
            self._counts[type_] = n
            found = f"[{type_}_{n}]"
            self._by_value[key] = found
            self.values[found] = value
        return found

    def restore(self, text: str) -> str:
        """The text with every placeholder put back to its original value (de-anonymisation)."""
        if not self.values or "[" not in text:
            return text
        pattern = re.compile("|".join(re.escape(p) for p in sorted(self.values, key=len, reverse=True)))
        return pattern.sub(lambda m: self.values[m.group()], text)


@dataclass
class Outcome:
    """The text after the actions, whether it is blocked, the findings applied, and the redaction vault."""

    text: str
    blocked: bool
    findings: list[Finding]
    vault: Vault


def resolve(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping findings in text order: at each place the longest (then the highest-scoring) one."""
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start - f.end, -f.score, f.start)):
        if all(f.end <= k.start or k.end <= f.start for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def mask(value: str, keep: int = 4) -> str:
    """`************1234`: all but the last `keep` characters starred (all of a short value)."""
    return "*" * (len(value) - keep) + value[-keep:] if len(value) > keep * 2 else "*" * len(value)


def hashed(type_: str, value: str, salt: str = "") -> str:
    """`[EMAIL:3f2a9c0b1d4e]`: a salted sha256 prefix, the same for the same value (joins stay possible)."""
    return f"[{type_}:{hashlib.sha256((salt + value).encode()).hexdigest()[:12]}]"


def apply(
    text: str,
    findings: Iterable[Finding],
    action: Action | None = None,
    *,
    salt: str = "",
    vault: Vault | None = None,
) -> Outcome:
    """Apply each finding's action (or `action` for all of them) to the text. Any `block` blocks the whole text
    (returned unchanged); `warn` changes nothing; `redact`, `mask` and `hash` rewrite the finding's span.
    Pass the `vault` of an earlier call to share placeholders (a conversation's turns)."""
    if action is not None and action not in ACTIONS:
        raise ScannerError(f"unknown action {action!r}; choose among {', '.join(ACTIONS)}", "action")
    vault = vault if vault is not None else Vault()
    found = list(findings)
    if any((action or f.action) == "block" for f in found):
        return Outcome(text, True, found, vault)
    parts: list[str] = []
    at = 0
    for f in resolve(x for x in found if (action or x.action) != "warn"):
        start, end = max(f.start, at), min(f.end, len(text))
        if start >= end:
            continue
        value = text[start:end]
        how = action or f.action
        parts.append(text[at:start])
        if how == "redact":
            parts.append(vault.placeholder(f.type, value))
        elif how == "mask":
            parts.append(mask(value))
        else:
            parts.append(hashed(f.type, value, salt))
        at = end
    parts.append(text[at:])
    return Outcome("".join(parts), False, found, vault)
