"""The chains domain's logic: pushing checked chain versions, labels, diffs, and running a version as one
trace (each run recorded with its step timeline).

Runs happen on the server's loop: a model call of a step goes through the in-process gateway on the
caller's key (routing, limits, budgets, guardrails), recorded as a child span of the step in the run's
trace; retrieval goes through the gateway's retriever (the knowledge-base domain's); tools come from the
process's `ToolRegistry` (installed `podium.tools` entry points and the `tool_modules` setting).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import importlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.chains import http_tools
from podium.chains import spec as chain_spec
from podium.chains.engine import Event, Run, RunResult
from podium.chains.runtime import GatewayRuntime
from podium.chains.store import (
    APPROVED,
    CHAINS,
    ERROR,
    PENDING,
    REJECTED,
    RUNNING,
    Chain,
    ChainApproval,
    ChainRun,
    ChainVersion,
)
from podium.chains.tools import ToolRegistry, tools_in
from podium.core.db import utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor, Principal
from podium.core.ids import new_id
from podium.core.netguard import NetGuard
from podium.core.platform import Platform
from podium.gateway import bridge
from podium.gateway.service import Gateway
from podium.tracing.writer import Record

MAX_MESSAGE = 2000
MAX_RUNS_LISTED = 500
SOURCES = ("api", "gateway", "eval", "sdk")

# --- views -----------------------------------------------------------------------------------------------


class VersionInfo(BaseModel):
    """One chain version."""

    id: str
    chain: str
    version: int
    spec: dict[str, Any]
    source: str
    message: str
    content_hash: str
    labels: list[str]
    created_by: str
    created_at: datetime


class ChainInfo(BaseModel):
    """A chain in a list."""

    name: str
    description: str
    latest_version: int
    labels: dict[str, int]
    steps: int
    updated_at: datetime


class LabelMoveInfo(BaseModel):
    label: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime


class ChainDetail(ChainInfo):
    """A chain with every version, newest first, and its label history."""

    versions: list[VersionInfo]
    history: list[LabelMoveInfo]


class Pushed(BaseModel):
    """The result of a push: the version, and whether it is new (False: the same content was the latest)."""

    created: bool
    version: VersionInfo


class Diff(BaseModel):
    chain: str
    a: int
    b: int
    diff: str


class RunInfo(BaseModel):
    """A run: the version it ran, its inputs, how it ended, its step timeline and its trace."""

    id: str
    chain: str
    ref: str
    version_id: str
    source: str
    status: str
    inputs: dict[str, Any]
    output: Any = None
    error: str | None = None
    failed_step: str | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)
    trace_id: str
    created_by: str
    started_at: datetime
    ended_at: datetime | None = None
    latency_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0


class ApprovalInfo(BaseModel):
    """A tool call waiting for (or decided by) a person."""

    id: str
    run_id: str
    chain: str
    ref: str
    step: str
    tool: str
    arguments: dict[str, Any]
    status: str
    comment: str
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None


# --- versions --------------------------------------------------------------------------------------------


def _spec_of(data: Any) -> tuple[chain_spec.ChainSpec, str]:
    """The checked spec of a push body (YAML text, or the parsed mapping), and its YAML source."""
    if isinstance(data, str | bytes):
        parsed = chain_spec.parse(data)
        return parsed, data.decode() if isinstance(data, bytes) else data
    loaded = chain_spec.load(data)
    return loaded, yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _version_info(s: Session, c: Chain, v: ChainVersion, labels: dict[str, str] | None = None) -> VersionInfo:
    labels = CHAINS.labels(s, c) if labels is None else labels
    names = sorted(label for label, vid in labels.items() if vid == v.id)
    if v.version == CHAINS.latest_number(s, c):
        names.insert(0, "latest")
    return VersionInfo(
        id=v.id,
        chain=c.name,
        version=v.version,
        spec=v.spec,
        source=v.source,
        message=v.message,
        content_hash=v.content_hash,
        labels=names,
        created_by=v.created_by,
        created_at=v.created_at,
    )


def _check_owner(actor: Actor, c: Chain) -> None:
    if not actor.sees(c.project_id):
        raise NotFound(f"chain {c.name!r} not found", details={"field": "name"})
    if c.project_id is None:
        actor.require_admin("change global chains")


def push(
    platform: Platform, actor: Actor, name: str, data: Any, *, message: str = "", description: str | None = None
) -> Pushed:
    """Add a version of chain `name` (made on first push, in the caller's project) from its YAML or parsed
    form, checked whole first; the same content as the latest version returns that version."""
    actor.require("member", "push chains")
    CHAINS.check_name(name)
    if len(message) > MAX_MESSAGE:
        raise InvalidInput(f"a version message may be at most {MAX_MESSAGE} characters", details={"field": "message"})
    parsed, source = _spec_of(data)
    content = parsed.model_dump(mode="json", exclude_defaults=False)
    digest = content_hash(content)

    def once(s: Session) -> Pushed:
        c = CHAINS.get(s, name)
        now = utcnow()
        if c is None:
            c = Chain(
                id=new_id("chn"),
                name=name,
                description=description if description is not None else parsed.description,
                project_id=actor.project_id,
                created_by=actor.label,
                created_at=now,
            )
            s.add(c)
            s.flush()
            record_audit(s, actor, "chain.create", "chain", c.id, details={"name": name})
        elif not actor.sees(c.project_id):
            raise Conflict(
                f"the chain name {name!r} is taken by another project; choose another name", details={"field": "name"}
            )
        else:
            _check_owner(actor, c)
            if description is not None:
                c.description = description
        pushed = CHAINS.push(
            s,
            c,
            content_hash=digest,
            same="latest",
            spec=content,
            source=source,
            message=message,
            created_by=actor.label,
            created_at=now,
        )
        if pushed.created:
            details = {"chain": name, "version": pushed.version.version}
            record_audit(s, actor, "chain.version.create", "chain_version", pushed.version.id, details=details)
        return Pushed(created=pushed.created, version=_version_info(s, c, pushed.version))

    return CHAINS.write(platform.db, once, conflict=f"chain {name!r} changed concurrently; try again")


def _info(s: Session, c: Chain) -> ChainInfo:
    latest = CHAINS.latest(s, c)
    return ChainInfo(
        name=c.name,
        description=c.description,
        latest_version=latest.version if latest else 0,
        labels=CHAINS.label_numbers(s, c),
        steps=len(latest.spec.get("steps", [])) if latest else 0,
        updated_at=latest.created_at if latest else c.created_at,
    )


def list_chains(platform: Platform, actor: Actor) -> list[ChainInfo]:
    """The chains the actor sees, by name."""
    actor.require("viewer", "read chains")
    with platform.db.read_session() as s:
        q = CHAINS.in_scope(select(Chain).order_by(Chain.name), actor.scope())
        return [_info(s, c) for c in s.scalars(q)]


def get_chain(platform: Platform, actor: Actor, name: str) -> ChainDetail:
    """A chain with its versions (newest first) and label history (newest first)."""
    actor.require("viewer", "read chains")
    with platform.db.read_session() as s:
        c = CHAINS.find(s, name, projects=actor.scope())
        labels = CHAINS.labels(s, c)
        return ChainDetail(
            **_info(s, c).model_dump(),
            versions=[_version_info(s, c, v, labels) for v in CHAINS.versions(s, c)],
            history=[
                LabelMoveInfo(
                    label=m.label, from_version=m.from_version, to_version=m.to_version, actor=m.actor, at=m.at
                )
                for m in CHAINS.history(s, c)
            ],
        )


def get_version(platform: Platform, actor: Actor, ref: str) -> VersionInfo:
    """One version by reference: `name`, `name@3`, `name@label` or `name@latest`."""
    actor.require("viewer", "read chains")
    parsed = CHAINS.parse_ref(ref)
    with platform.db.read_session() as s:
        c = CHAINS.find(s, parsed.name, projects=actor.scope())
        return _version_info(s, c, CHAINS.resolve(s, c, parsed.tag))


def set_label(platform: Platform, actor: Actor, name: str, label: str, version: str | int) -> VersionInfo:
    """Point `label` at a version (number, label, `latest` or id), recording the move."""
    actor.require("member", "move chain labels")
    CHAINS.check_label(label)

    def once(s: Session) -> VersionInfo:
        c = CHAINS.find(s, name, projects=actor.scope())
        _check_owner(actor, c)
        moved = CHAINS.set_label(s, c, label, version, actor.label)
        details = {"label": label, "version": moved.version.version}
        record_audit(s, actor, "chain.label.set", "chain", c.id, details=details)
        return _version_info(s, c, moved.version)

    conflict = f"label {label!r} of {name!r} is being moved concurrently; try again"
    return CHAINS.write(platform.db, once, conflict=conflict)


def remove_label(platform: Platform, actor: Actor, name: str, label: str) -> None:
    """Delete a label (recorded in its history)."""
    actor.require("member", "move chain labels")
    with platform.db.session() as s:
        c = CHAINS.find(s, name, projects=actor.scope())
        _check_owner(actor, c)
        CHAINS.remove_label(s, c, label, actor.label)
        record_audit(s, actor, "chain.label.remove", "chain", c.id, details={"label": label})


def diff(platform: Platform, actor: Actor, name: str, a: str | int, b: str | int) -> Diff:
    """A unified diff of two versions' YAML."""
    actor.require("viewer", "read chains")
    with platform.db.read_session() as s:
        c = CHAINS.find(s, name, projects=actor.scope())
        va, vb = CHAINS.resolve(s, c, a), CHAINS.resolve(s, c, b)
        lines = difflib.unified_diff(
            va.source.splitlines(keepends=True),
            vb.source.splitlines(keepends=True),
            f"{name}@{va.version}",
            f"{name}@{vb.version}",
        )
        return Diff(chain=name, a=va.version, b=vb.version, diff="".join(lines))


# --- tools -----------------------------------------------------------------------------------------------

_tools: dict[int, ToolRegistry] = {}
_tools_lock = threading.Lock()


def tools(platform: Platform) -> ToolRegistry:
    """The tools this process's chains may call: installed `podium.tools` entry points and the modules the
    `tool_modules` setting names, loaded once."""
    with _tools_lock:
        found = _tools.get(id(platform))
        if found is None:
            found = ToolRegistry()
            found.load_entry_points()
            for module in platform.settings.tool_modules:
                try:
                    loaded = importlib.import_module(module)
                except ImportError as exc:
                    raise InvalidInput(
                        f"tool module {module!r} (setting tool_modules) cannot be imported: {exc}"
                    ) from None
                for t in tools_in(loaded):
                    found.register(t)
            _tools[id(platform)] = found
        return found


def _run_tools(platform: Platform, chain: chain_spec.ChainSpec) -> ToolRegistry:
    """The server's tools with the chain's own HTTP tools over them."""
    if not chain.tools:
        return tools(platform)
    guard = NetGuard(allow_private=platform.settings.upstream_allow_private)
    return tools(platform).overlay(http_tools.build(name, spec, guard) for name, spec in chain.tools.items())


class ToolInfo(BaseModel):
    """A tool chains may call on this server."""

    name: str
    description: str
    parameters: dict[str, Any]
    requires_approval: bool
    source: str  # python, mcp:<server>


class ToolList(BaseModel):
    tools: list[ToolInfo]
    unavailable: dict[str, str]  # MCP servers that could not be listed, with why


_unavailable: dict[int, dict[str, str]] = {}


def add_tools(platform: Platform, found: list[Any], unavailable: dict[str, str]) -> None:
    """Register tools found at start (an MCP server's), and remember the servers that could not be listed."""
    registry = tools(platform)
    for t in found:
        registry.register(t)
    _unavailable[id(platform)] = dict(unavailable)


def list_tools(platform: Platform, actor: Actor) -> ToolList:
    """The tools the server's chains may call (each chain may declare HTTP tools of its own besides)."""
    actor.require("viewer", "list tools")
    registry = tools(platform)
    out = []
    for name in registry.names():
        t = registry.get(name)
        server = t.meta.get("mcp_server")
        out.append(
            ToolInfo(
                name=name,
                description=t.description,
                parameters=t.parameters,
                requires_approval=t.requires_approval,
                source=f"mcp:{server}" if server else "python",
            )
        )
    return ToolList(tools=out, unavailable=_unavailable.get(id(platform), {}))


# --- runs ------------------------------------------------------------------------------------------------


def _principal(actor: Actor) -> Principal:
    if actor.principal is None:
        raise InvalidInput("a chain runs as a key's calls; act with an API key")
    return actor.principal


InputsOf = Callable[[chain_spec.ChainSpec], dict[str, Any]]


def _start(
    platform: Platform, actor: Actor, ref: str, inputs: dict[str, Any] | InputsOf, source: str
) -> tuple[ChainRun, chain_spec.ChainSpec]:
    """Resolve the version, check it still loads, and write the run's row (status running). `inputs` may be
    a function of the resolved chain (the gateway fills a chain's inputs from a chat request)."""
    actor.require("member", "run chains")
    parsed = CHAINS.parse_ref(ref)
    with platform.db.session() as s:
        c = CHAINS.find(s, parsed.name, projects=actor.scope())
        v = CHAINS.resolve(s, c, parsed.tag)
        loaded = chain_spec.load(v.spec)
        if callable(inputs):
            inputs = inputs(loaded)
        run = ChainRun(
            id=new_id("crn"),
            project_id=c.project_id,
            chain_id=c.id,
            version_id=v.id,
            ref=f"{c.name}@{v.version}",
            source=source,
            status=RUNNING,
            inputs=inputs,
            trace_id=new_id("trc"),
            key_id=actor.principal.key_id if actor.principal else None,
            created_by=actor.label,
            started_at=utcnow(),
        )
        s.add(run)
        s.flush()
        s.expunge(run)
        return run, loaded


def _finish(platform: Platform, run_id: str, result: RunResult, timeline: list[dict[str, Any]]) -> None:
    with platform.db.session() as s:
        row = s.get(ChainRun, run_id)
        if row is None:
            return
        row.status = result.status
        row.output = result.output
        row.error = result.error
        row.failed_step = result.failed_step
        row.steps = timeline
        row.ended_at = result.ended_at
        row.latency_ms = result.latency_ms
        row.prompt_tokens = result.prompt_tokens
        row.completion_tokens = result.completion_tokens
        row.cost_micros = result.cost_micros


def _run_view(run: ChainRun, chain: str) -> RunInfo:
    return RunInfo(
        id=run.id,
        chain=chain,
        ref=run.ref,
        version_id=run.version_id,
        source=run.source,
        status=run.status,
        inputs=run.inputs,
        output=run.output,
        error=run.error,
        failed_step=run.failed_step,
        steps=run.steps,
        trace_id=run.trace_id,
        created_by=run.created_by,
        started_at=run.started_at,
        ended_at=run.ended_at,
        latency_ms=run.latency_ms,
        prompt_tokens=run.prompt_tokens or 0,
        completion_tokens=run.completion_tokens or 0,
        cost_micros=run.cost_micros or 0,
    )


async def run(
    platform: Platform,
    actor: Actor,
    ref: str,
    inputs: dict[str, Any] | InputsOf | None,
    *,
    source: str = "api",
    on_event: Callable[[Event], Awaitable[None]] | None = None,
    gateway: Gateway | None = None,
) -> RunInfo:
    """Run a chain version (by reference) on `inputs`, on the server's loop, as one trace; the run as
    recorded. A step that fails after its retries and fallback ends the run with status `error` (the run is
    still returned, with the error and the step); bad inputs are `InvalidInput` before anything runs.
    `inputs` may be a function of the resolved chain, called once the version is read."""
    if source not in SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(SOURCES)}")
    principal = _principal(actor)
    if inputs is not None and not isinstance(inputs, dict) and not callable(inputs):
        raise InvalidInput("inputs must be an object of name → value")
    row, loaded = await asyncio.to_thread(_start, platform, actor, ref, inputs or {}, source)
    gw = gateway or bridge.current(platform).gateway
    timeline: list[dict[str, Any]] = []
    clock: dict[str, float] = {}

    async def record(event: Event) -> None:
        now = utcnow()
        if event.type == "step_started" and event.step is not None:
            clock[event.step] = now.timestamp()
        elif event.type in ("step_finished", "step_failed", "step_fallback") and event.step is not None:
            began = clock.get(event.step, now.timestamp())
            entry = {
                "step": event.step,
                "status": {"step_finished": "ok", "step_failed": "error", "step_fallback": "fallback"}[event.type],
                "start": began,
                "ms": round((now.timestamp() - began) * 1000, 2),
            }
            if "error" in event.data:
                entry["error"] = event.data["error"]
            timeline.append(entry)
        if on_event is not None:
            await on_event(event)

    engine = Run(
        loaded,
        GatewayRuntime(gw, principal, _run_tools(platform, loaded), Approvals(platform, row.id, row.project_id)),
        name=f"chain {row.ref}",
        trace_id=row.trace_id,
        on_event=record,
        attributes={"chain": row.ref, "run_id": row.id, "version_id": row.version_id},
    )
    try:
        result = await engine.run(row.inputs)
    except InvalidInput as exc:  # the inputs: nothing ran
        await asyncio.to_thread(_finish, platform, row.id, _refused(row, exc.message), timeline)
        raise
    except asyncio.CancelledError:  # the client left a streamed run, or the server is stopping
        ended = _refused(row, "the run was cancelled before it ended (the client left, or the server stopped)")
        await asyncio.shield(asyncio.to_thread(_finish, platform, row.id, ended, timeline))
        raise
    except Exception as exc:  # a bug: the run is recorded as failed rather than left running
        await asyncio.to_thread(_finish, platform, row.id, _refused(row, f"internal error: {exc!r}"), timeline)
        raise
    await _write_trace(gw, principal, row, result, source)
    await asyncio.to_thread(_finish, platform, row.id, result, timeline)
    row.status, row.output, row.error, row.failed_step = result.status, result.output, result.error, result.failed_step
    row.steps, row.ended_at, row.latency_ms = timeline, result.ended_at, result.latency_ms
    row.prompt_tokens, row.completion_tokens = result.prompt_tokens, result.completion_tokens
    row.cost_micros = result.cost_micros
    return _run_view(row, row.ref.partition("@")[0])


def _refused(row: ChainRun, error: str) -> RunResult:
    """A run that ended without the engine's result: refused inputs, a cancellation, or a bug."""
    now = utcnow()
    latency = (now - row.started_at).total_seconds() * 1000
    return RunResult(ERROR, dict(row.inputs), None, error, None, {}, [], row.started_at, now, latency)


async def _write_trace(gw: Gateway, principal: Principal, row: ChainRun, result: RunResult, source: str) -> None:
    """The run's own part of its trace (the chain and step spans; the model calls' parts were recorded by the
    gateway as they ended): merged, so it adds to what those parts counted."""
    trace: dict[str, Any] = {
        "id": row.trace_id,
        "project_id": principal.project_id,
        "name": f"chain {row.ref}",
        "session_id": None,
        "user_id": None,
        "key_id": principal.key_id,
        "source": "chain" if source != "eval" else "eval",
        "status": result.status,
        "start_time": result.started_at,
        "end_time": result.ended_at,
        "latency_ms": result.latency_ms,
        "ttft_ms": None,
        "model": None,
        "route": None,
        "deployment": None,
        "cache_status": "none",
        "attempts": 0,
        "span_count": len(result.spans),
        "http_status": 200 if result.status == "ok" else 422,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_micros": 0,
        "error": result.error,
        "tags": [],
        "meta": {"chain": row.ref, "run_id": row.id},
        "input": orjson.dumps(result.inputs, default=str).decode(),
        "output": None if result.output is None else orjson.dumps(result.output, default=str).decode(),
    }
    record = Record(trace=trace, spans=result.spans, merge=True)
    writer = gw.dispatcher.writer
    if not writer.put_nowait(record):
        await writer.submit(record)


def list_runs(platform: Platform, actor: Actor, name: str | None = None, *, limit: int = 100) -> list[RunInfo]:
    """The newest runs the actor sees (of one chain, with `name`)."""
    actor.require("viewer", "read chain runs")
    limit = max(1, min(limit, MAX_RUNS_LISTED))
    with platform.db.read_session() as s:
        joined: Any = select(ChainRun, Chain.name).join(Chain, Chain.id == ChainRun.chain_id)
        q: Any = CHAINS.in_scope(joined, actor.scope())
        if name is not None:
            c = CHAINS.find(s, name, projects=actor.scope())
            q = q.where(ChainRun.chain_id == c.id)
        q = q.order_by(ChainRun.started_at.desc(), ChainRun.id.desc()).limit(limit)
        rows: Any = s.execute(q)
        return [_run_view(r, str(n)) for r, n in rows]


def get_run(platform: Platform, actor: Actor, run_id: str, *, chain: str | None = None) -> RunInfo:
    """One run, if the actor sees its chain (and, with `chain`, if it is a run of that chain)."""
    actor.require("viewer", "read chain runs")
    with platform.db.read_session() as s:
        r = s.get(ChainRun, run_id)
        c = s.get(Chain, r.chain_id) if r is not None else None
        if r is None or c is None or not actor.sees(c.project_id):
            raise NotFound(f"chain run {run_id!r} not found")
        if chain is not None and c.name != chain:
            raise InvalidInput(f"run {run_id!r} is a run of chain {c.name!r}, not {chain!r}")
        return _run_view(r, c.name)


# --- approvals -------------------------------------------------------------------------------------------

APPROVAL_POLL = 0.25  # seconds between looks at a pending approval (any server process may decide it)
MAX_COMMENT = 2000


@dataclass
class Approvals:
    """The approval gate of one run: a tool call that needs a person is written as a pending approval, and
    the run waits (within its step's timeout) until someone decides it, here or in another server process."""

    platform: Platform
    run_id: str
    project_id: str | None

    async def request(self, step: str, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        approval_id = await asyncio.to_thread(self._write, step, tool, arguments)
        try:
            while True:
                decided = await asyncio.to_thread(self._read, approval_id)
                if decided is not None:
                    return decided
                await asyncio.sleep(APPROVAL_POLL)
        except asyncio.CancelledError:  # the step timed out or the run was stopped: nobody can approve it now
            await asyncio.shield(asyncio.to_thread(self._expire, approval_id))
            raise

    def _write(self, step: str, tool: str, arguments: dict[str, Any]) -> str:
        with self.platform.db.session() as s:
            row = ChainApproval(
                id=new_id("cap"),
                project_id=self.project_id,
                run_id=self.run_id,
                step=step,
                tool=tool,
                arguments=arguments,
                status=PENDING,
                created_at=utcnow(),
            )
            s.add(row)
            return row.id

    def _read(self, approval_id: str) -> tuple[bool, str] | None:
        with self.platform.db.read_session() as s:
            row = s.get(ChainApproval, approval_id)
            if row is None or row.status == PENDING:
                return None
            return row.status == APPROVED, row.comment

    def _expire(self, approval_id: str) -> None:
        with self.platform.db.session() as s:
            row = s.get(ChainApproval, approval_id)
            if row is not None and row.status == PENDING:
                row.status, row.comment, row.decided_at = REJECTED, "expired: the run stopped waiting", utcnow()


def _approval_view(a: ChainApproval, run: ChainRun) -> ApprovalInfo:
    return ApprovalInfo(
        id=a.id,
        run_id=a.run_id,
        chain=run.ref.partition("@")[0],
        ref=run.ref,
        step=a.step,
        tool=a.tool,
        arguments=a.arguments,
        status=a.status,
        comment=a.comment,
        decided_by=a.decided_by,
        created_at=a.created_at,
        decided_at=a.decided_at,
    )


def list_approvals(
    platform: Platform, actor: Actor, *, status: str | None = PENDING, limit: int = 100
) -> list[ApprovalInfo]:
    """The approvals the actor sees (its projects'), newest first; by default the pending ones (the queue)."""
    actor.require("viewer", "read chain approvals")
    if status is not None and status not in (PENDING, APPROVED, REJECTED):
        raise InvalidInput("status must be pending, approved or rejected", details={"field": "status"})
    with platform.db.read_session() as s:
        joined: Any = (
            select(ChainApproval, ChainRun)
            .join(ChainRun, ChainRun.id == ChainApproval.run_id)
            .join(Chain, Chain.id == ChainRun.chain_id)
        )
        q: Any = CHAINS.in_scope(joined, actor.scope())
        if status is not None:
            q = q.where(ChainApproval.status == status)
        q = q.order_by(ChainApproval.created_at.desc()).limit(max(1, min(limit, MAX_RUNS_LISTED)))
        rows: Any = s.execute(q)
        return [_approval_view(a, r) for a, r in rows]


def decide(platform: Platform, actor: Actor, approval_id: str, approve: bool, comment: str = "") -> ApprovalInfo:
    """Approve or reject a pending tool call (a member of the run's project); decided once."""
    actor.require("member", "approve tool calls")
    if len(comment) > MAX_COMMENT:
        raise InvalidInput(f"a comment may be at most {MAX_COMMENT} characters", details={"field": "comment"})
    with platform.db.session() as s:
        a = s.get(ChainApproval, approval_id, with_for_update=True)
        if a is None or not actor.sees(a.project_id):
            raise NotFound(f"approval {approval_id!r} not found")
        if a.status != PENDING:
            raise Conflict(f"approval {approval_id!r} was {a.status} already", details={"status": a.status})
        a.status = APPROVED if approve else REJECTED
        a.comment = comment
        a.decided_by = actor.label
        a.decided_at = utcnow()
        run = s.get(ChainRun, a.run_id)
        assert run is not None
        details = {"tool": a.tool, "run": a.run_id, "status": a.status}
        record_audit(s, actor, "chain.approval.decide", "chain_approval", a.id, details=details)
        return _approval_view(a, run)


__all__ = [
    "ApprovalInfo",
    "Approvals",
    "ChainDetail",
    "ChainInfo",
    "Diff",
    "Pushed",
    "RunInfo",
    "VersionInfo",
    "decide",
    "diff",
    "get_chain",
    "get_run",
    "get_version",
    "list_approvals",
    "list_chains",
    "list_runs",
    "push",
    "remove_label",
    "run",
    "set_label",
    "tools",
]
