"""Online evaluation: evaluators run on a sample of a project's production traces and write their scores to
those traces, so quality can be charted over time next to latency and cost.

A rule names filters (route, model, prompt, trace source), a sampling rate, evaluators (ones that need no
reference answer: the traffic has none) and a judge model. Each server process sweeps the enabled rules every
`SWEEP_SECONDS`: it claims the traces that started since the rule's cursor (moving the cursor first, with a
compare-and-set, so two processes never judge the same batch), keeps a deterministic sample (a hash of the
rule and trace ids), evaluates them through the gateway as the key that wrote the rule, and posts the scores
(source `evaluator`). Traces younger than `SETTLE_SECONDS` wait for the next sweep (the trace writer may not
have stored them yet). The judge's own calls are traced with source `eval` and are never judged themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from podium.auth.service import principal_of_key
from podium.core.db import utcnow
from podium.core.errors import InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.core.runtime import Runtime
from podium.evals import cache
from podium.evals.calls import ORIGIN, GatewayModels
from podium.evals.evaluators.base import Sample, Verdict, build
from podium.evals.store import OnlineRule
from podium.gateway import bridge
from podium.tracing import service as tracing
from podium.tracing.scores.service import ScoreIn, add_scores

log = logging.getLogger("podium.evals.online")
SWEEP_SECONDS = 10.0
SETTLE_SECONDS = 3.0
MAX_PER_SWEEP = 500  # traces one sweep of one rule considers
PAGE = 200


class RuleIn(BaseModel):
    """An online evaluation rule as written."""

    model_config = ConfigDict(extra="forbid")

    route: str | None = Field(None, max_length=200)
    model: str | None = Field(None, max_length=200)
    prompt: str | None = Field(None, max_length=200, description="A prompt name: traces that rendered it.")
    source: str | None = Field("gateway", max_length=20, description="gateway, sdk or otlp traces; null for all.")
    sample_rate: float = Field(0.1, gt=0, le=1)
    evaluators: list[dict[str, Any] | str] = Field(min_length=1, max_length=16)
    judge: str | None = Field(None, max_length=200)
    embedder: str | None = Field(None, max_length=200)
    enabled: bool = True


class RuleInfo(BaseModel):
    """A rule and what it has done."""

    id: str
    name: str
    project_id: str | None
    filters: dict[str, Any]
    sample_rate: float
    evaluators: list[Any]
    judge_model: str | None
    enabled: bool
    cursor: datetime | None
    traces_seen: int
    traces_scored: int
    errors: int
    last_error: str | None
    created_by: str
    created_at: datetime


class Sweep(BaseModel):
    """What one sweep of a rule did."""

    considered: int
    sampled: int
    scored: int
    errors: int


def _info(r: OnlineRule) -> RuleInfo:
    return RuleInfo.model_validate(r, from_attributes=True)


def _check_evaluators(specs: list[Any]) -> None:
    for spec in specs:
        ev = build(spec)
        if "reference" in ev.needs:
            raise InvalidInput(
                f"evaluator {ev.name!r} needs a reference answer, which production traces do not have",
                details={"evaluator": ev.name},
            )


def put_rule(platform: Platform, actor: Actor, name: str, rule: RuleIn) -> RuleInfo:
    """Create or replace the project's rule `name` (its judge calls will act as the caller's key)."""
    actor.require("member", "write online evaluation rules")
    if actor.principal is None:
        raise InvalidInput("online rules act as the key that writes them: use an API key")
    if not name or len(name) > 120 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidInput("a rule name is 1-120 letters, digits, '-', '_' or '.'", details={"field": "name"})
    _check_evaluators(rule.evaluators)
    project = actor.principal.project_id
    filters = {k: v for k in ("route", "model", "prompt", "source", "embedder") if (v := getattr(rule, k)) is not None}
    with platform.db.session() as s:
        row = s.scalar(select(OnlineRule).where(OnlineRule.project_id == project, OnlineRule.name == name))
        if row is None:
            row = OnlineRule(id=new_id("evo"), project_id=project, name=name, created_by=actor.label, cursor=utcnow())
            s.add(row)
        row.filters, row.sample_rate, row.evaluators = filters, rule.sample_rate, rule.evaluators
        row.judge_model, row.enabled, row.key_id = rule.judge, rule.enabled, actor.principal.key_id
        s.flush()
        return _info(row)


def list_rules(platform: Platform, actor: Actor) -> list[RuleInfo]:
    """The rules the actor sees."""
    actor.require("viewer", "read online evaluation rules")
    q = select(OnlineRule).order_by(OnlineRule.name)
    scope = actor.scope()
    if scope is not None:
        q = q.where(OnlineRule.project_id.in_([p for p in scope if p is not None]))
    with platform.db.read_session() as s:
        return [_info(r) for r in s.scalars(q)]


def _rule(platform: Platform, actor: Actor, name: str) -> OnlineRule:
    project = actor.principal.project_id if actor.principal is not None else None
    with platform.db.read_session() as s:
        row = s.scalar(select(OnlineRule).where(OnlineRule.project_id == project, OnlineRule.name == name))
    if row is None:
        raise NotFound(f"online rule {name!r} not found in your project")
    return row


def delete_rule(platform: Platform, actor: Actor, name: str) -> None:
    """Remove a rule."""
    actor.require("member", "delete online evaluation rules")
    row = _rule(platform, actor, name)
    with platform.db.session() as s:
        found = s.get(OnlineRule, row.id)
        if found is not None:
            s.delete(found)


def sweep_now(platform: Platform, actor: Actor, name: str) -> Sweep:
    """Sweep one rule at once (from a request thread), with no settling delay."""
    actor.require("member", "run online evaluation")
    row = _rule(platform, actor, name)
    return bridge.submit(platform, sweep(platform, row.id, settle=0.0)).result(timeout=600)


# --- sweeping -----------------------------------------------------------------------------------------


def _sampled(rule_id: str, trace_id: str, rate: float) -> bool:
    digest = hashlib.sha256(f"{rule_id}:{trace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def _text(stored: str | None, *, want_input: bool) -> str:
    """The user's last message (input) or the answer's text (output) from a stored body."""
    if stored is None:
        return ""
    try:
        body = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return stored
    if want_input and isinstance(body, dict) and isinstance(body.get("messages"), list):
        for m in reversed(body["messages"]):
            if isinstance(m, dict) and m.get("role") == "user":
                c = m.get("content")
                return c if isinstance(c, str) else orjson.dumps(c).decode()
    if not want_input and isinstance(body, dict) and isinstance(body.get("choices"), list):
        parts = []
        for c in body["choices"]:
            msg = c.get("message") if isinstance(c, dict) else None
            text = msg.get("content") if isinstance(msg, dict) else c.get("text") if isinstance(c, dict) else None
            if isinstance(text, str):
                parts.append(text)
        return "\n".join(parts)
    if isinstance(body, dict) and isinstance(body.get("prompt"), str):
        return str(body["prompt"])
    return body if isinstance(body, str) else orjson.dumps(body).decode()


def _claim(platform: Platform, rule_id: str, settle: float) -> tuple[OnlineRule, list[Any], Actor] | None:
    """Read the traces after the rule's cursor and move the cursor past them (compare-and-set)."""
    with platform.db.read_session() as s:
        rule = s.get(OnlineRule, rule_id)
    if rule is None or not rule.enabled or rule.key_id is None:
        return None
    actor = Actor(principal_of_key(platform.db, rule.key_id), request_id=f"online:{rule.name}")
    start = (rule.cursor or utcnow()) + timedelta(microseconds=1)
    end = utcnow() - timedelta(seconds=settle)
    if end <= start:
        return rule, [], actor
    f = rule.filters
    filters = tracing.parse_filters(
        {
            "route": f.get("route"),
            "model": f.get("model"),
            "source": f.get("source"),
            "from": start.isoformat(),
            "to": end.isoformat(),
        }
    )
    traces: list[Any] = []
    cursor: str | None = None
    while len(traces) < MAX_PER_SWEEP:
        page = tracing.list_traces(platform, actor, filters, order="asc", limit=PAGE, cursor=cursor, bodies=True)
        traces.extend(page.traces)
        cursor = page.next_cursor
        if cursor is None:
            break
    traces = traces[:MAX_PER_SWEEP]
    new_cursor = traces[-1].start_time if len(traces) == MAX_PER_SWEEP else end
    with platform.db.session() as s:
        moved = s.execute(
            update(OnlineRule)
            .where(OnlineRule.id == rule_id, OnlineRule.cursor == rule.cursor)
            .values(cursor=new_cursor)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return None  # another process claimed this batch
    prompt = f.get("prompt")
    keep = [
        t
        for t in traces
        if t.source != ORIGIN and (prompt is None or str((t.metadata or {}).get("prompt", "")).split("@")[0] == prompt)
    ]
    return rule, keep, actor


async def sweep(platform: Platform, rule_id: str, *, settle: float = SETTLE_SECONDS) -> Sweep:
    """Evaluate a rule's new traces (on the server's loop)."""
    claimed = await asyncio.to_thread(_claim, platform, rule_id, settle)
    if claimed is None:
        return Sweep(considered=0, sampled=0, scored=0, errors=0)
    rule, traces, actor = claimed
    sampled = [t for t in traces if _sampled(rule.id, t.id, rule.sample_rate)]
    assert actor.principal is not None
    db = platform.db

    models = GatewayModels.over(
        bridge.current(platform).gateway,
        actor.principal,
        db,
        concurrency=4,
        judge_model=rule.judge_model,
        embedding_model=rule.filters.get("embedder"),
    )
    evaluators = [build(spec) for spec in rule.evaluators]
    scores: list[ScoreIn] = []
    errors, last_error = 0, None

    async def judged(t: Any, ev: Any) -> tuple[Any, Any, Verdict]:
        sample = Sample(
            inputs={"input": _text(t.input, want_input=True)},
            output=_text(t.output, want_input=False),
            latency_ms=t.latency_ms,
            cost_micros=t.cost_micros,
            prompt_tokens=t.prompt_tokens,
            completion_tokens=t.completion_tokens,
        )
        try:
            return t, ev, await ev.evaluate(sample, models)
        except Exception as exc:  # one evaluator failing on one trace is counted, not fatal
            return t, ev, Verdict(error=f"{type(exc).__name__}: {exc}")

    # every trace and evaluator at once: the models' semaphore bounds the calls in flight
    for t, ev, verdict in await asyncio.gather(*(judged(t, ev) for t in sampled for ev in evaluators)):
        if verdict.error is not None:
            errors, last_error = errors + 1, f"{ev.name}: {verdict.error}"
            continue
        comment = verdict.label or verdict.explanation
        for name, value in verdict.scores.items():
            scores.append(
                ScoreIn(
                    trace_id=t.id, name=name, value=value, source="evaluator", comment=(comment or "")[:2000] or None
                )
            )
    if models.fresh:
        await asyncio.to_thread(cache.write_now, db, models.fresh)
    if scores:
        await asyncio.to_thread(add_scores, db, actor, scores)
    scored = len({s.trace_id for s in scores})

    def record() -> None:
        with db.session() as s:
            values: dict[str, Any] = {
                "traces_seen": OnlineRule.traces_seen + len(traces),
                "traces_scored": OnlineRule.traces_scored + scored,
                "errors": OnlineRule.errors + errors,
            }
            if last_error is not None:
                values["last_error"] = last_error[:2000]
            s.execute(update(OnlineRule).where(OnlineRule.id == rule.id).values(**values))

    await asyncio.to_thread(record)
    return Sweep(considered=len(traces), sampled=len(sampled), scored=scored, errors=errors)


def _enabled(platform: Platform) -> list[str]:
    with platform.db.read_session() as s:
        return list(s.scalars(select(OnlineRule.id).where(OnlineRule.enabled.is_(True))))


def loop_for(runtime: Runtime) -> Callable[[], Awaitable[None]]:
    """The background loop sweeping every enabled rule."""
    platform = runtime.platform

    async def run() -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                for rule_id in await asyncio.to_thread(_enabled, platform):
                    await sweep(platform, rule_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad rule or a database blip must not end the loop
                log.exception("online evaluation sweep failed")

    return run
