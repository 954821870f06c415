"""`invisible_text`: characters a reader cannot see that can smuggle instructions or break parsers: zero-width
characters, bidirectional overrides (Trojan Source), Unicode tag characters (ASCII hidden in U+E0000 block),
private-use code points and C0/C1 control characters other than tab and newlines."""

from __future__ import annotations

import re
import unicodedata

from podium.guard.base import BOTH, Action, Finding, ScanContext, Scanner, ScannerSettings
from podium.guard.registry import register

_CLASSES: tuple[tuple[str, str], ...] = (
    ("ZERO_WIDTH", "\u200b-\u200d\u2060-\u2064\ufeff\u180e\u00ad"),
    ("BIDI_CONTROL", "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"),
    ("TAG_CHARACTER", "\U000e0000-\U000e007f"),
    ("PRIVATE_USE", "\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"),
    ("CONTROL", "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"),
)
_ANY = re.compile("[" + "".join(r for _, r in _CLASSES) + "]+")
_KIND = [(name, re.compile(f"[{r}]")) for name, r in _CLASSES]


class InvisibleSettings(ScannerSettings):
    """Settings of `invisible_text`; `redact` replaces each run with a placeholder, `mask` with stars."""

    action: Action = "block"
    allow_zero_width_joiner: bool = True  # U+200D inside emoji sequences (family, flags) is ordinary text


@register
class InvisibleText(Scanner):
    """Invisible and control characters."""

    name = "invisible_text"
    description = "zero-width, bidi-override, tag, private-use and control characters"
    stages = BOTH
    Settings = InvisibleSettings
    settings: InvisibleSettings

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        if text.isascii() and text.isprintable():
            return []
        out = []
        for m in _ANY.finditer(text):
            run = m.group()
            if self.settings.allow_zero_width_joiner and run == "\u200d" and self._in_emoji(text, m.start()):
                continue
            kind = next((name for name, rx in _KIND if rx.search(run)), "INVISIBLE")
            names = sorted({unicodedata.name(c, f"U+{ord(c):04X}") for c in run})[:3]
            out.append(self.finding(kind, m.start(), m.end(), 1.0, f"{len(run)} x {', '.join(names)}"))
        return out

    @staticmethod
    def _in_emoji(text: str, at: int) -> bool:
        before = text[at - 1] if at > 0 else ""
        after = text[at + 1] if at + 1 < len(text) else ""
        return bool(before and after and ord(before) > 0x2000 and ord(after) > 0x2000)
