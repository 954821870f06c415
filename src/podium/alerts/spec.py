"""The alert rule's shape (what `podium alerts rules add -f rule.yaml` and `POST /api/alerts/rules` take) and its
checks: every refusal names the field (`condition.op`, `channels[1].email`).

```yaml
name: high-error-rate
metric: error_rate            # a monitor metric (podium monitors); not needed by drift rules
filters: {route: chat}        # route, model, prompt (all optional)
group_by: model               # optional: one state and incident per model (route, prompt) seen in the window
condition:                    # threshold | change | drift
  type: threshold
  op: ">"
  value: 0.05
  window: 5m
for: 2m                       # the condition holds this long before the rule fires (pending meanwhile)
cooldown: 1h                  # at least this long between two notifications of the rule
severity: critical            # info | warning | critical
no_data: ok                   # no value in the window: ok (default), keep (the state stays) or alert
channels:
  - webhook: https://hooks.slack.com/services/...
  - email: oncall@example.com
```

A `change` condition compares the window's value with a baseline window of `baseline` length (default: the
window's) ending `offset` before now (default: the window, so the baseline is the window just before): `percent:
50, direction: up` fires when the value rose by more than 50%. A `drift` condition reads the project's latest drift
report (`podium drift`) and fires on its verdict, or on its score against `op`/`value` when given; `max_age`
ignores older reports.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from podium.core import yamlload
from podium.core.durations import parse_duration
from podium.core.errors import InvalidInput, field_path
from podium.core.names import check_name

MAX_YAML_BYTES = 64 * 1024
MAX_CHANNELS = 20
MAX_WINDOW = timedelta(days=31)
MAX_FOR = timedelta(days=7)
MAX_COOLDOWN = timedelta(days=30)
OPS = (">", ">=", "<", "<=", "==", "!=")
SEVERITIES = ("info", "warning", "critical")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$"
)


def _duration(value: Any) -> timedelta:
    """`90s`, `5m`, `1h`, `1d`, `2w`, or a number of seconds; never negative."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("a duration like 90s, 5m, 1h or 1d, not a boolean")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        parsed = parse_duration(value)
        if parsed is None:
            raise ValueError(f"{value!r} is not a duration like 90s, 5m, 1h or 1d")
        seconds = parsed.total_seconds()
    else:
        raise ValueError("a duration like 90s, 5m, 1h or 1d")
    if seconds != seconds or seconds < 0:
        raise ValueError("a duration may not be negative")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """A duration in the shortest unit that writes it whole: `5m`, `1h`, `90s`."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]


def _check_range(value: timedelta, low: timedelta, high: timedelta, what: str) -> timedelta:
    if value < low or value > high:
        raise ValueError(f"{what} must be between {format_duration(low)} and {format_duration(high)}")
    return value


class Filters(BaseModel):
    """Which traffic the metric is computed over: a route, a model, a prompt (each optional)."""

    model_config = ConfigDict(extra="forbid")

    route: str | None = Field(None, min_length=1, max_length=200)
    model: str | None = Field(None, min_length=1, max_length=200)
    prompt: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("route", "model", "prompt")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("a filter is printable text (no control characters)")
        return value


class Threshold(BaseModel):
    """The metric over the last `window` compared with `value` (`error_rate > 0.05 over 5m`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Literal["threshold"]
    op: str = Field(description="One of > >= < <= == !=.")
    value: float
    window: Duration = Field(description="The window the metric is computed over, ending now.")

    @field_validator("op")
    @classmethod
    def _op(cls, value: str) -> str:
        return _check_op(value)

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        return _check_range(value, timedelta(seconds=1), MAX_WINDOW, "the window")


class Change(BaseModel):
    """The metric over the last `window` against a baseline window: a relative change of more than `percent`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Literal["change"]
    percent: float = Field(gt=0, le=1_000_000, description="The relative change (%) that fires the rule.")
    direction: Literal["up", "down", "either"] = "up"
    window: Duration
    baseline: Duration | None = Field(None, description="The baseline window's length; default: the window's.")
    offset: Duration | None = Field(
        None, description="How long before now the baseline window ends; default: the window (the window before)."
    )

    @field_validator("window", "baseline", "offset")
    @classmethod
    def _windows(cls, value: timedelta | None) -> timedelta | None:
        return value if value is None else _check_range(value, timedelta(seconds=1), MAX_WINDOW, "a window")


class Drift(BaseModel):
    """The project's latest drift report: its verdict (drift or not), or its score (the domain classifier's ROC
    AUC) against `op` `value`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Literal["drift"]
    op: str | None = Field(None, description="Compare the score instead of reading the verdict: > >= < <= == !=.")
    value: float | None = None
    max_age: Duration | None = Field(None, description="Reports older than this count as no data.")

    @field_validator("op")
    @classmethod
    def _op(cls, value: str | None) -> str | None:
        return value if value is None else _check_op(value)

    @model_validator(mode="after")
    def _both(self) -> Drift:
        if (self.op is None) != (self.value is None):
            raise ValueError("give both op and value to compare the drift score, or neither to read the verdict")
        return self


Condition = Annotated[Threshold | Change | Drift, Field(discriminator="type")]


def _check_op(value: str) -> str:
    if value not in OPS:
        raise ValueError(f"operator {value!r} is not one of {' '.join(OPS)}")
    return value


def compare(value: float, op: str, bound: float) -> bool:
    """`value op bound` for one of `OPS`."""
    return {
        ">": value > bound,
        ">=": value >= bound,
        "<": value < bound,
        "<=": value <= bound,
        "==": value == bound,
        "!=": value != bound,
    }[op]


class Channel(BaseModel):
    """Where notifications go: exactly one of a webhook URL or an e-mail address."""

    model_config = ConfigDict(extra="forbid")

    webhook: str | None = Field(None, max_length=2000)
    email: str | None = Field(None, max_length=254)

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  # raises on a bad port
        except ValueError:
            raise ValueError(f"{value!r} is not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an http(s) URL with a host")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _EMAIL.match(value) or ".." in value:
            raise ValueError(f"{value!r} is not an e-mail address (name@example.com)")
        return value

    @model_validator(mode="after")
    def _one(self) -> Channel:
        if (self.webhook is None) == (self.email is None):
            raise ValueError("a channel is one of `webhook: URL` or `email: ADDRESS`")
        return self

    @property
    def kind(self) -> str:
        """`webhook` or `email`."""
        return "webhook" if self.webhook is not None else "email"

    @property
    def target(self) -> str:
        """The URL or address."""
        return self.webhook if self.webhook is not None else (self.email or "")


class RuleSpec(BaseModel):
    """An alert rule as written (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=120)
    description: str = Field("", max_length=2000)
    metric: str | None = Field(None, min_length=1, max_length=200, description="The monitor metric.")
    filters: Filters = Field(default_factory=Filters)
    group_by: Literal["route", "model", "prompt"] | None = Field(
        None, description="One state (and incident) per route, model or prompt version seen in the window."
    )
    condition: Condition
    for_: Duration = Field(timedelta(0), alias="for", description="How long the condition holds before firing.")
    cooldown: Duration = Field(timedelta(hours=1), description="At least this long between two notifications.")
    severity: Literal["info", "warning", "critical"] = "warning"
    no_data: Literal["ok", "keep", "alert"] = "ok"
    channels: list[Channel] = Field(default_factory=list, max_length=MAX_CHANNELS)
    enabled: bool = True

    @field_validator("for_")
    @classmethod
    def _for(cls, value: timedelta) -> timedelta:
        return _check_range(value, timedelta(0), MAX_FOR, "for")

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: timedelta) -> timedelta:
        return _check_range(value, timedelta(0), MAX_COOLDOWN, "cooldown")

    def dump(self) -> dict[str, Any]:
        """The spec as stored and shown (durations as `5m`, `for` under its own name, empty parts left out)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["filters"] = {k: v for k, v in data.get("filters", {}).items() if v is not None}
        for key, empty in (("description", ""), ("filters", {}), ("for", "0s")):
            if data.get(key) == empty:
                del data[key]
        return data


def parse(data: Any, *, source: str | None = None) -> RuleSpec:
    """A checked rule from a mapping, or from YAML text in `source`; `InvalidInput` names the bad field."""
    if source is not None:
        if len(source.encode()) > MAX_YAML_BYTES:
            raise InvalidInput(f"the rule is larger than {MAX_YAML_BYTES // 1024} KB", details={"field": "source"})
        try:
            data = yamlload.load(source)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"the rule is not valid YAML: {exc}", details={"field": "source"}) from None
    if not isinstance(data, dict):
        raise InvalidInput("a rule is a mapping (name, metric, condition, …)", details={"field": "body"})
    _check_types(data)
    try:
        rule = RuleSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [p for i, p in enumerate(err["loc"]) if not (i == 1 and err["loc"][0] == "condition")]
        where = field_path(tuple(loc)) or "body"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"rule field {where!r}: {message}", details={"field": where}) from None
    check_name(rule.name, "alert rule")
    kind = rule.condition.type
    if kind in ("threshold", "change") and rule.metric is None:
        raise InvalidInput(f"a {kind} rule names the monitor metric it watches", details={"field": "metric"})
    if kind == "drift" and rule.metric is not None:
        raise InvalidInput(
            "a drift rule reads the project's latest drift report; leave metric out", details={"field": "metric"}
        )
    if kind == "drift" and rule.group_by is not None:
        raise InvalidInput(
            "a drift rule reads one report per project; leave group_by out", details={"field": "group_by"}
        )
    if rule.group_by is not None and getattr(rule.filters, rule.group_by) is not None:
        raise InvalidInput(
            f"the rule is grouped by {rule.group_by} and filters one {rule.group_by}: leave one out",
            details={"field": "group_by"},
        )
    return rule


def _check_types(data: dict[str, Any]) -> None:
    """Friendlier words than pydantic's for the common slips: a condition without its type, channels as a string."""
    condition = data.get("condition")
    if isinstance(condition, dict) and condition.get("type") not in ("threshold", "change", "drift"):
        got = condition.get("type")
        raise InvalidInput(
            f"condition type {got!r} is not threshold, change or drift", details={"field": "condition.type"}
        )
    channels = data.get("channels")
    if channels is not None and not isinstance(channels, list):
        raise InvalidInput("channels is a list of `webhook: URL` or `email: ADDRESS`", details={"field": "channels"})
