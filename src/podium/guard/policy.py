"""A guardrail policy as written (YAML or JSON) and its checks.

A policy belongs to a project and applies to one route, one API key, or the whole project. A call falls under
one policy at most: the most specific one wins, key > route > project (a key's policy replaces its route's, a
route's replaces the project's; they are not merged). It lists the scanners to run on the request (`input`) and
on the answer (`output`), each with its settings (thresholds), its action and what happens when it fails
(`on_error`), plus policy-wide options:

```yaml
name: support
applies_to: {route: support-bot}     # or {key: key_… or pk-…}, or leave it out: the whole project
mode: enforce                        # monitor: record decisions, block and change nothing
deanonymize: true                    # restore redacted values in the answer
timeout_ms: 1000                     # per scanner (an entry's own `timeout_ms` overrides it)
sources: [gateway, chain]            # the calls it checks: /v1 and the playground, chain runs (the default);
                                     # batch inference, evaluations and knowledge-base builds when listed
input:
  - type: prompt_injection
    settings: {threshold: 0.8}
    action: block
  - type: pii
    action: redact                   # the upstream sees [EMAIL_1]; with deanonymize the client sees the email
output:
  - type: toxicity
    settings: {threshold: 0.7}
    on_error: open                   # a failure lets the answer through (recorded)
```

Everything is checked before the policy is stored: an unknown scanner, an unknown setting, a bad threshold, a
scanner on a stage it does not run on, or a bad action is refused with `InvalidInput` naming the field
(`input.2.settings.threshold`).
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from podium.core import yamlload
from podium.core.errors import InvalidInput
from podium.core.names import check_name
from podium.guard import registry
from podium.guard.base import Action, ScannerError, Stage

OnError = Literal["open", "closed"]
# where a call comes from (its trace's source): /v1 and the playground, chain runs, batch inference, evaluations,
# knowledge-base builds; a scanner's own calls (`guard`) never fall under a policy
Source = Literal["gateway", "chain", "batch", "eval", "kb"]
DEFAULT_SOURCES: tuple[Source, ...] = ("gateway", "chain")  # served traffic
Mode = Literal["enforce", "monitor"]
MAX_ENTRIES = 20  # scanners per stage
MAX_SOURCE = 100_000  # characters of a policy's YAML or JSON
CLOSED_BY_DEFAULT = frozenset({"pii", "secrets", "prompt_injection"})  # on input: a failure blocks


class ScannerEntry(BaseModel):
    """One scanner of a stage: its type, settings, action (default: the scanner's own), `on_error` (default
    closed for input `pii`, `secrets` and `prompt_injection`, open otherwise) and `timeout_ms` (default: the
    policy's)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100)
    settings: dict[str, Any] = Field(default_factory=dict)
    action: Action | None = None
    on_error: OnError | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=120_000)


class AppliesTo(BaseModel):
    """Where a policy applies: `route: NAME`, `key: KEY` (its id `key_…` or its prefix `pk-…`), or neither (the
    whole project). A route or key that does not exist (yet) is accepted: the policy applies once it does."""

    model_config = ConfigDict(extra="forbid")

    route: str | None = Field(default=None, min_length=1, max_length=200)
    key: str | None = Field(default=None, min_length=1, max_length=40)

    @model_validator(mode="after")
    def _one(self) -> AppliesTo:
        if self.route is not None and self.key is not None:
            raise ValueError("name a route or a key, not both")
        return self

    @property
    def scope(self) -> str:
        """`key`, `route` or `project`."""
        return "key" if self.key is not None else "route" if self.route is not None else "project"

    @property
    def target(self) -> str:
        """The key id or route name ("" for the project)."""
        return self.key or self.route or ""


class PolicySpec(BaseModel):
    """A guardrail policy (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    mode: Mode = "enforce"
    deanonymize: bool = False
    timeout_ms: int = Field(default=1000, ge=1, le=120_000)
    stream_overlap: int = Field(default=200, ge=0, le=20_000)  # characters scanned again with each new piece
    sources: list[Source] = Field(default_factory=lambda: list(DEFAULT_SOURCES), min_length=1, max_length=5)
    input: list[ScannerEntry] = Field(default_factory=list, max_length=MAX_ENTRIES)
    output: list[ScannerEntry] = Field(default_factory=list, max_length=MAX_ENTRIES)

    def entries(self, stage: Stage) -> list[ScannerEntry]:
        """The scanners of a stage."""
        return self.input if stage == "input" else self.output


def on_error(entry: ScannerEntry, stage: Stage) -> OnError:
    """What a failure of this scanner does: its own `on_error`, else closed for input PII, secrets and
    injection (a failed check must not let personal data or an attack through), open otherwise."""
    if entry.on_error is not None:
        return entry.on_error
    return "closed" if stage == "input" and entry.type in CLOSED_BY_DEFAULT else "open"


def scanner_settings(entry: ScannerEntry) -> dict[str, Any]:
    """The settings a scanner is built with: the entry's, with its `action` when it names one."""
    if entry.action is None:
        return dict(entry.settings)
    return {**entry.settings, "action": entry.action}


def parse_source(source: str) -> Any:
    """A policy's YAML or JSON text as data (JSON is YAML); `InvalidInput` on a syntax error."""
    if len(source) > MAX_SOURCE:
        raise InvalidInput(f"a policy is at most {MAX_SOURCE} characters", details={"field": "source"})
    try:
        return yamlload.load(source)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the policy is not valid YAML or JSON: {exc}", details={"field": "source"}) from None


def check_policy(data: Any) -> PolicySpec:
    """The checked policy; `InvalidInput` naming the first wrong field (`input.2.settings.threshold`)."""
    if not isinstance(data, dict):
        raise InvalidInput("a policy must be a mapping (name, input, output, ...)", details={"field": "policy"})
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "policy"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "literal_error" and where.endswith("action"):
            msg = f"unknown action; choose among {', '.join(('block', 'redact', 'mask', 'hash', 'warn'))}"
        raise InvalidInput(f"policy field {where!r}: {msg}", details={"field": where}) from None
    check_name(spec.name, "policy")
    stages: tuple[Stage, ...] = ("input", "output")
    for stage in stages:
        for i, entry in enumerate(spec.entries(stage)):
            check_entry(entry, stage, f"{stage}.{i}")
    return spec


def check_entry(entry: ScannerEntry, stage: Stage, where: str) -> None:
    """Refuse an unknown scanner, a scanner on a stage it does not run on, and bad settings: by the scanner's
    settings model, and by building the scanner when it needs no collaborator (a JSON schema that does not
    compile, Presidio missing for PERSON); scanners that embed or call a model through the gateway are only
    parsed here (the API process never loads torch), so their constructor's checks run on first use."""
    try:
        cls = registry.scanner_class(entry.type)
    except ScannerError as exc:
        raise InvalidInput(f"policy field '{where}.type': {exc}", details={"field": f"{where}.type"}) from None
    if stage not in cls.stages:
        raise InvalidInput(
            f"policy field '{where}.type': scanner {entry.type!r} runs on {' and '.join(sorted(cls.stages))} only, "
            f"not on {stage}",
            details={"field": f"{where}.type"},
        )
    try:
        cls.parse(scanner_settings(entry))
        if not getattr(cls, "injects", ()):  # built once here too: what only its constructor checks fails now
            from podium.guard.service import get_scanner

            get_scanner(entry.type, scanner_settings(entry))
    except ScannerError as exc:
        field = f"{where}.action" if exc.setting == "action" and entry.action is not None else f"{where}.settings"
        if exc.setting and exc.setting not in ("action", "settings"):
            field = f"{where}.settings.{exc.setting}"
        raise InvalidInput(f"policy field {field!r}: {exc}", details={"field": field}) from None
