"""Which traces a list, an aggregate or an export is about: the filters as query parameters give them
(`from`, `to`, `model`, `min_cost_usd`, …), checked once, and as SQL conditions on the traces; the caller's
project scope (a key that is not an admin's sees its own project only)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import ColumnElement, String, Text, cast, func, or_, type_coerce
from sqlalchemy.orm import Session

from podium.auth.service import key_ref, project_ref
from podium.core.durations import parse_time
from podium.core.errors import Forbidden, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.money import MICROS_PER_USD
from podium.tracing.store import STATUSES, Trace

__all__ = [
    "FILTER_PARAMS",
    "Scope",
    "TraceFilters",
    "Window",
    "conditions",
    "int_param",
    "is_admin",
    "parse_filters",
    "parse_time",
    "project_scope",
    "resolve",
    "resolve_key",
    "started_before",
    "started_from",
]


@dataclass(frozen=True)
class TraceFilters:
    """What a trace list, aggregate or export is restricted to; None means no restriction.

    `start`/`end` bound the trace's start time (`start <= t < end`); `q` is a case-insensitive substring
    of the trace's input or output (for an artifact-stored payload, of its stored preview); `tag` is one
    exact tag; `key` is a key id or `pk-…` prefix; `project` (name or id) narrows an admin's view."""

    start: datetime | None = None
    end: datetime | None = None
    project: str | None = None
    model: str | None = None
    user: str | None = None
    session: str | None = None
    tag: str | None = None
    status: str | None = None
    name: str | None = None
    source: str | None = None
    route: str | None = None
    key: str | None = None
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    min_cost_usd: Decimal | None = None
    max_cost_usd: Decimal | None = None
    q: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):  # PostgreSQL cannot compare text with NUL in it: refused here, not as a 500
            value = getattr(self, f.name)
            if isinstance(value, str) and "\x00" in value:
                name = {"start": "from", "end": "to"}.get(f.name, f.name)
                raise InvalidInput(f"{name} must not contain NUL characters", details={"field": name})
        if self.status is not None and self.status not in STATUSES:
            raise InvalidInput(
                f"status {self.status!r} is not one of: {', '.join(STATUSES)}", details={"field": "status"}
            )
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"{_PARAM[name]} must be timezone-aware", details={"field": _PARAM[name]})
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InvalidInput("'from' must be before 'to'", details={"field": "from"})
        for low, high in (("min_latency_ms", "max_latency_ms"), ("min_cost_usd", "max_cost_usd")):
            lo, hi = getattr(self, low), getattr(self, high)
            for name, value in ((low, lo), (high, hi)):
                if value is not None and (value < 0 or (isinstance(value, float) and not math.isfinite(value))):
                    raise InvalidInput(f"{name} must be a number of at least 0", details={"field": name})
            if lo is not None and hi is not None and lo > hi:
                raise InvalidInput(f"{low} is above {high}", details={"field": low})
        if self.q is not None and len(self.q) > 1000:
            raise InvalidInput("q is longer than 1000 characters", details={"field": "q"})


# query parameter of each filter field (the two times are `from` and `to` over HTTP and in the CLI)
_PARAM = {f.name: f.name for f in fields(TraceFilters)} | {"start": "from", "end": "to"}
FILTER_PARAMS: tuple[str, ...] = tuple(_PARAM.values())


def _number(value: str, field: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(f"{field} {value!r} is not a number", details={"field": field}) from None
    if not math.isfinite(number):
        raise InvalidInput(f"{field} {value!r} is not a finite number", details={"field": field})
    return number


def _amount(value: str, field: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidInput(f"{field} {value!r} is not an amount in USD", details={"field": field}) from None
    if not amount.is_finite():
        raise InvalidInput(f"{field} {value!r} is not an amount in USD", details={"field": field})
    return amount


def parse_filters(params: Mapping[str, str | None]) -> TraceFilters:
    """Filters from query parameters (`from`, `to`, `model`, `min_cost_usd`, …; unknown keys are ignored);
    `InvalidInput` names the first bad one in `details.field`."""
    values: dict[str, Any] = {}
    for attr, param in _PARAM.items():
        raw = params.get(param)
        if raw is None or not raw.strip():
            continue
        if attr in ("start", "end"):
            values[attr] = parse_time(raw, param)
        elif attr in ("min_latency_ms", "max_latency_ms"):
            values[attr] = _number(raw, param)
        elif attr in ("min_cost_usd", "max_cost_usd"):
            values[attr] = _amount(raw, param)
        elif attr == "q":
            values[attr] = raw
        else:
            values[attr] = raw.strip()
    return TraceFilters(**values)


def int_param(name: str, value: str | int | None, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; `InvalidInput` naming it otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not an integer", details={"field": name}) from None
    if not low <= number <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", details={"field": name})
    return number


# --- SQL -------------------------------------------------------------------------------------------


def is_admin(actor: Actor) -> bool:
    """Whether the actor sees every project's traces (a server admin)."""
    return actor.is_admin


def project_scope(s: Session, actor: Actor, project: str | None) -> str | None:
    """The one project (by id) this actor's query covers, or None for every project (an admin without a
    `project` filter). A key that is not an admin's is held to its own project."""
    wanted = None
    if project:
        try:
            wanted = project_ref(s, project).id
        except NotFound as exc:
            raise InvalidInput(exc.message, details={"field": "project"}) from None
    if is_admin(actor):
        return wanted
    if wanted is not None and wanted != actor.project_id:
        raise Forbidden("a key sees only its own project's traces; an admin key sees every project")
    return actor.project_id or ""


def resolve_key(s: Session, key: str) -> str:
    """A key filter (id or `pk-…` prefix) as a key id; a deleted key's traces stay findable by its id."""
    try:
        return key_ref(s, key).id
    except NotFound:
        return key


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(s: Session, column: Any, needle: str) -> ColumnElement[bool]:
    """Case-sensitive substring test, no pattern characters (SQLite `instr`, PostgreSQL `strpos`)."""
    fn = func.instr if s.get_bind().dialect.name == "sqlite" else func.strpos
    result: ColumnElement[bool] = fn(column, needle) > 0
    return result


@dataclass(frozen=True)
class Scope:
    """A query's filters resolved against the database once: the project it covers (None: every project)
    and the key filter as a key id."""

    project_id: str | None
    key_id: str | None


def resolve(s: Session, actor: Actor, f: TraceFilters) -> Scope:
    """The scope of these filters for this actor (`Forbidden` for another project's traces)."""
    return Scope(project_scope(s, actor, f.project), resolve_key(s, f.key) if f.key is not None else None)


Window = tuple[datetime | None, datetime | None]


def conditions(
    s: Session, actor: Actor, f: TraceFilters, *, scope: Scope | None = None, window: Window | None = None
) -> list[ColumnElement[bool]]:
    """SQL conditions on the traces for the filters within the actor's scope (resolved here unless given);
    `window` (start, end) replaces the filters' time range."""
    scope = scope or resolve(s, actor, f)
    conds: list[ColumnElement[bool]] = [] if scope.project_id is None else [Trace.project_id == scope.project_id]
    backend = s.get_bind().dialect.name
    start, end = window if window is not None else (f.start, f.end)
    if start is not None:
        conds.append(started_from(backend, start))
    if end is not None:
        conds.append(started_before(backend, end))
    for column, value in (
        (Trace.model, f.model),
        (Trace.user_id, f.user),
        (Trace.session_id, f.session),
        (Trace.status, f.status),
        (Trace.name, f.name),
        (Trace.source, f.source),
        (Trace.route, f.route),
    ):
        if value is not None:
            conds.append(column == value)
    if scope.key_id is not None:
        conds.append(Trace.key_id == scope.key_id)
    if f.tag is not None:
        # tags is a JSON array; its text holds each tag as a JSON string (escaped or not, by who wrote it)
        text = cast(Trace.tags, Text)
        needles = {orjson.dumps(f.tag).decode(), json.dumps(f.tag)}
        conds.append(or_(*(_contains(s, text, n) for n in needles)))
    if f.min_latency_ms is not None:
        conds.append(Trace.latency_ms >= f.min_latency_ms)
    if f.max_latency_ms is not None:
        conds.append(Trace.latency_ms <= f.max_latency_ms)
    if f.min_cost_usd is not None:
        conds.append(Trace.cost_micros >= math.ceil(f.min_cost_usd * MICROS_PER_USD))
    if f.max_cost_usd is not None:
        conds.append(Trace.cost_micros <= math.floor(f.max_cost_usd * MICROS_PER_USD))
    if f.q:
        pattern = f"%{_like_escape(f.q)}%"
        conds.append(or_(Trace.input.ilike(pattern, escape="\\"), Trace.output.ilike(pattern, escape="\\")))
    return conds


def _time_text(when: datetime) -> str:
    """A time as the trace writer and SQLAlchemy store it on SQLite (`2026-01-31 12:00:00.000000`), so text
    comparisons against the indexed column order right."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def start_key(backend: str) -> Any:
    """The start time as the database orders it: on SQLite its stored text (index-friendly, see `_time_text`)."""
    return type_coerce(Trace.start_time, String) if backend == "sqlite" else Trace.start_time


def started_from(backend: str, when: datetime) -> ColumnElement[bool]:
    """Traces that started at or after `when`."""
    result: ColumnElement[bool] = start_key(backend) >= (_time_text(when) if backend == "sqlite" else when)
    return result


def started_before(backend: str, when: datetime) -> ColumnElement[bool]:
    """Traces that started before `when`."""
    result: ColumnElement[bool] = start_key(backend) < (_time_text(when) if backend == "sqlite" else when)
    return result
