"""The scanner interface: a scanner takes text (and, for output scanners, the prompt as context) and returns
findings; each finding names its type, span, score and the action the scanner suggests.

A scanner is built from a dict of settings, validated when it is built (`ScannerError` names the setting), and
declares the stages it applies to (`input`, `output` or both). CPU-bound scanners implement `check`; a scanner
that waits on something (a model call) overrides the async `scan` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

Stage = Literal["input", "output"]
Action = Literal["block", "redact", "mask", "hash", "warn"]
ACTIONS: tuple[Action, ...] = ("block", "redact", "mask", "hash", "warn")
BOTH: frozenset[Stage] = frozenset({"input", "output"})
INPUT: frozenset[Stage] = frozenset({"input"})
OUTPUT: frozenset[Stage] = frozenset({"output"})


class ScannerError(ValueError):
    """A scanner's settings are wrong (the message names the scanner and the setting), or it cannot run here."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class Finding:
    """What a scanner found: its `type` (`EMAIL`, `PROMPT_INJECTION`, ...), the span `[start, end)` in the text
    (the whole text for verdicts on all of it), a score in [0, 1], the action the scanner suggests, the scanner's
    name and a short `detail` (never the matched value itself, so findings can be recorded safely)."""

    type: str
    start: int
    end: int
    score: float
    action: Action
    scanner: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data."""
        return {
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
            "action": self.action,
            "scanner": self.scanner,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ScanContext:
    """What a scanner may need besides the text: the stage, and for output scanners the prompt that produced it."""

    stage: Stage = "input"
    prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ScannerSettings(BaseModel):
    """Base of every scanner's settings: unknown keys are refused; `action` is what the scanner suggests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action = "block"


class Scanner:
    """Base of every scanner. Subclasses set `name`, `stages`, `description`, a `Settings` model, and implement
    `check` (or `scan` when they must await). `blocking` marks scanners heavy enough (a model forward pass) that
    an event loop should run them on a thread; `whole` marks those that judge an answer as a whole, which a
    gateway policy runs once on a complete streamed answer rather than on each window of it."""

    name: ClassVar[str] = "scanner"
    description: ClassVar[str] = ""
    stages: ClassVar[frozenset[Stage]] = BOTH
    blocking: ClassVar[bool] = False
    whole: ClassVar[bool] = False  # judges a whole answer (JSON validity, relevance, a model's verdict): not a window
    Settings: ClassVar[type[ScannerSettings]] = ScannerSettings

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings = self.parse(settings or {})

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ScannerSettings:
        """Validated settings; `ScannerError` naming the first bad setting and what it should be."""
        if not isinstance(raw, dict):
            raise ScannerError(f"scanner {cls.name!r}: settings must be an object (a dict of setting: value)")
        try:
            return cls.Settings.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(cls.Settings.model_fields))
                raise ScannerError(
                    f"scanner {cls.name!r}: unknown setting {where!r}; known settings: {known}", where
                ) from None
            message = str(err["msg"]).removeprefix("Value error, ")
            if not err["loc"]:  # a rule across settings (a model validator)
                raise ScannerError(
                    message if cls.name in message else f"scanner {cls.name!r}: {message}", where
                ) from None
            raise ScannerError(f"scanner {cls.name!r} setting {where!r}: {message}", where) from None

    @property
    def action(self) -> Action:
        """The action this scanner suggests for what it finds."""
        return self.settings.action

    def applies_to(self, stage: Stage) -> bool:
        """Whether the scanner runs on this stage."""
        return stage in self.stages

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        """Findings in `text` (CPU-bound scanners implement this)."""
        raise NotImplementedError(f"scanner {self.name!r} has no synchronous check; await scan()")

    async def scan(self, text: str, context: ScanContext | None = None) -> list[Finding]:
        """Findings in `text`; the default runs `check` inline."""
        return self.check(text, context or ScanContext())

    def finding(self, type_: str, start: int, end: int, score: float, detail: str = "") -> Finding:
        """A finding of this scanner with its configured action."""
        return Finding(type_, start, end, max(0.0, min(1.0, float(score))), self.action, self.name, detail)

    def describe(self) -> dict[str, Any]:
        """The scanner's name, stages and settings, as data."""
        return {"name": self.name, "stages": sorted(self.stages), "settings": self.settings.model_dump()}
