"""Guardrail policies: create, replace (apply), list, show, remove and try them, and list the decisions the
gateway recorded under them. Viewers read; members (the project's editors) write. Every policy belongs to the
caller's project; a change is one transaction (a bad policy is refused before anything is written, so an update
either replaces the policy whole or changes nothing) and bumps its `version`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.auth.service import key_ref, record_audit
from podium.core.db import utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.guard import actions
from podium.guard.base import ScanContext, Stage
from podium.guard.enforce import Compiled, Runner, scan_stage
from podium.guard.policy import MAX_SOURCE, PolicySpec, check_policy, parse_source
from podium.guard.store import GuardPolicy, GuardPolicyVersion
from podium.tracing.filters import TraceFilters
from podium.tracing.queries import list_traces

_changed: dict[int, list[Callable[[], None]]] = {}  # by platform: its policy books, refreshed after a change


def on_change(platform: Platform, refresh: Callable[[], None]) -> Callable[[], None]:
    """Call `refresh` (a `PolicyBook.refresh`) after every change this process makes to `platform`'s policies;
    returns what stops it."""
    _changed.setdefault(id(platform), []).append(refresh)

    def stop() -> None:
        hooks = _changed.get(id(platform), [])
        if refresh in hooks:
            hooks.remove(refresh)
        if not hooks:
            _changed.pop(id(platform), None)

    return stop


def _notify(platform: Platform) -> None:
    for refresh in list(_changed.get(id(platform), ())):
        refresh()


class PolicyWrite(BaseModel):
    """A policy to create or replace: its YAML or JSON text (`source`, kept as written), or the policy itself."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, max_length=MAX_SOURCE, description="The policy as YAML or JSON text.")
    policy: dict[str, Any] | None = Field(None, description="The policy as an object.")


class PolicyInfo(BaseModel):
    """A stored policy."""

    id: str
    name: str
    project_id: str
    scope: Literal["key", "route", "project"]
    target: str
    mode: str
    version: int
    input: list[str]
    output: list[str]
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


class PolicyDetail(PolicyInfo):
    """A stored policy with its checked spec and the text it was written as."""

    spec: dict[str, Any]
    source: str


class PolicyVersion(BaseModel):
    """One version of a policy, as written then."""

    version: int
    mode: str
    input: list[str]
    output: list[str]
    created_by: str
    created_at: datetime
    spec: dict[str, Any] | None = None
    source: str | None = None


class PolicyTest(BaseModel):
    """`POST /api/guard/policies/{name}/test`: a dry run of one stage of a policy on a text."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=100_000)
    stage: Stage = "input"
    prompt: str | None = Field(None, max_length=100_000, description="For the output stage: the prompt answered.")


class PolicyTestResult(BaseModel):
    """What the policy would decide: blocked (and why), the text after its actions, each scanner's decision."""

    policy: str
    stage: Stage
    blocked: bool
    reason: str | None
    text: str
    decisions: list[dict[str, Any]]
    redactions: int


class FindingView(BaseModel):
    """One scanner decision the gateway recorded on a call's trace."""

    trace_id: str
    time: datetime
    route: str | None
    policy: str
    stage: str
    scanner: str
    action: str
    findings: list[dict[str, Any]]
    latency_ms: float
    error: str | None


def _info_fields(row: GuardPolicy) -> dict[str, Any]:
    spec = row.spec
    return {
        "id": row.id,
        "name": row.name,
        "project_id": row.project_id,
        "scope": row.scope,
        "target": row.target,
        "mode": spec.get("mode", "enforce"),
        "version": row.version,
        "input": [e["type"] for e in spec.get("input") or []],
        "output": [e["type"] for e in spec.get("output") or []],
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_by": row.updated_by,
        "updated_at": row.updated_at,
    }


def _detail(row: GuardPolicy) -> PolicyDetail:
    return PolicyDetail(**_info_fields(row), spec=row.spec, source=row.source)


def _checked(write: PolicyWrite, name: str | None = None) -> tuple[PolicySpec, str]:
    """The checked spec and the text to keep (the given YAML, or the policy dumped as YAML)."""
    if (write.source is None) == (write.policy is None):
        raise InvalidInput(
            "send the policy as 'source' (YAML or JSON text) or as 'policy'", details={"field": "source"}
        )
    data = parse_source(write.source) if write.source is not None else write.policy
    if name is not None and isinstance(data, dict) and "name" not in data:
        data = {**data, "name": name}
    spec = check_policy(data)
    if name is not None and spec.name != name:
        raise InvalidInput(
            f"the policy is named {spec.name!r}, not {name!r} as the address says", details={"field": "name"}
        )
    source = write.source if write.source is not None else yaml.safe_dump(write.policy, sort_keys=False)
    return spec, source


def _project(actor: Actor) -> str:
    project = actor.project_id
    if project is None:
        raise InvalidInput("a policy belongs to a project: use a key of that project", details={"field": "project"})
    return project


def _find(s: Session, actor: Actor, name: str) -> GuardPolicy:
    row = s.scalar(select(GuardPolicy).where(GuardPolicy.project_id == _project(actor), GuardPolicy.name == name))
    if row is None:
        known = s.scalars(select(GuardPolicy.name).where(GuardPolicy.project_id == actor.project_id)).all()
        hint = f"; policies of this project: {', '.join(sorted(known)[:20])}" if known else ""
        raise NotFound(f"no guard policy named {name!r}{hint}", details={"field": "name"})
    return row


def _check_key(s: Session, spec: PolicySpec, project: str) -> None:
    """A key policy must name a key of its project (by id or prefix): a typo would otherwise apply to nothing."""
    key = spec.applies_to.key
    if key is None:
        return
    try:
        found = key_ref(s, key)
    except (NotFound, Conflict):
        found = None
    if found is None or found.project_id != project:
        raise InvalidInput(
            f"policy field 'applies_to.key': {key!r} is not a key of this project (give its id or prefix, as "
            "`podium keys ls` shows)",
            details={"field": "applies_to.key"},
        )


def _keep_version(s: Session, row: GuardPolicy) -> None:
    """Record the row's current version in its history (in the caller's transaction)."""
    s.add(
        GuardPolicyVersion(
            id=new_id("gpv"),
            policy_id=row.id,
            project_id=row.project_id,
            version=row.version,
            spec=row.spec,
            source=row.source,
            created_by=row.updated_by,
            created_at=row.updated_at,
        )
    )


def _version(v: GuardPolicyVersion, full: bool) -> PolicyVersion:
    return PolicyVersion(
        version=v.version,
        mode=v.spec.get("mode", "enforce"),
        input=[e["type"] for e in v.spec.get("input") or []],
        output=[e["type"] for e in v.spec.get("output") or []],
        created_by=v.created_by,
        created_at=v.created_at,
        spec=v.spec if full else None,
        source=v.source if full else None,
    )


def policy_versions(platform: Platform, actor: Actor, name: str) -> list[PolicyVersion]:
    """A policy's versions, newest first (viewer)."""
    actor.require("viewer", "read guard policies")
    with platform.db.read_session() as s:
        row = _find(s, actor, name)
        q = select(GuardPolicyVersion).where(GuardPolicyVersion.policy_id == row.id)
        return [_version(v, False) for v in s.scalars(q.order_by(GuardPolicyVersion.version.desc()))]


def policy_version(platform: Platform, actor: Actor, name: str, version: int) -> PolicyVersion:
    """One version of a policy with its spec and source (viewer); re-apply its source to go back to it."""
    actor.require("viewer", "read guard policies")
    with platform.db.read_session() as s:
        row = _find(s, actor, name)
        q = select(GuardPolicyVersion).where(
            GuardPolicyVersion.policy_id == row.id, GuardPolicyVersion.version == version
        )
        found = s.scalar(q)
        if found is None:
            raise NotFound(
                f"policy {name!r} has no version {version}; its versions are 1 to {row.version}",
                details={"field": "version"},
            )
        return _version(found, True)


def _stored(spec: PolicySpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def _conflict(spec: PolicySpec) -> Conflict:
    place = spec.applies_to.scope
    where = "the project" if place == "project" else f"{place} {spec.applies_to.target!r}"
    return Conflict(
        f"another policy of this project already applies to {where}; one policy per key, route or project",
        details={"field": "applies_to"},
    )


def create_policy(platform: Platform, actor: Actor, write: PolicyWrite, *, name: str | None = None) -> PolicyDetail:
    """Store a new policy in the caller's project (member); `Conflict` if the name or the place is taken. With
    `name` (the address of a PUT), the policy may leave its name out, and must not name another."""
    project = _project(actor)
    actor.require_in(project, "member", "write guard policies")
    spec, source = _checked(write, name)
    now = utcnow()
    try:
        with platform.db.session() as s:
            _check_key(s, spec, project)
            if s.scalar(select(GuardPolicy.id).where(GuardPolicy.project_id == project, GuardPolicy.name == spec.name)):
                raise Conflict(
                    f"a guard policy named {spec.name!r} exists; update it instead", details={"field": "name"}
                )
            row = GuardPolicy(
                id=new_id("gpol"),
                project_id=project,
                name=spec.name,
                scope=spec.applies_to.scope,
                target=spec.applies_to.target,
                version=1,
                spec=_stored(spec),
                source=source,
                created_by=actor.label,
                created_at=now,
                updated_by=actor.label,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            _keep_version(s, row)
            record_audit(s, actor, "create", "guard_policy", row.id, project_id=project, details={"name": spec.name})
            detail = _detail(row)
    except IntegrityError:
        raise _conflict(spec) from None
    _notify(platform)
    return detail


def update_policy(
    platform: Platform, actor: Actor, name: str, write: PolicyWrite, *, create: bool = False
) -> PolicyDetail:
    """Replace a policy whole (member), bumping its version; with `create`, make it if it does not exist
    (`podium guard policies apply`). A bad policy changes nothing."""
    project = _project(actor)
    actor.require_in(project, "member", "write guard policies")
    spec, source = _checked(write, name)
    detail: PolicyDetail | None = None
    try:
        with platform.db.session() as s:
            row = s.scalar(select(GuardPolicy).where(GuardPolicy.project_id == project, GuardPolicy.name == name))
            if row is None and not create:
                _find(s, actor, name)  # NotFound, listing the project's policies
            if row is not None:
                _check_key(s, spec, project)
                row.scope = spec.applies_to.scope
                row.target = spec.applies_to.target
                row.spec = _stored(spec)
                row.source = source
                row.version += 1
                row.updated_by = actor.label
                row.updated_at = utcnow()
                s.flush()
                _keep_version(s, row)
                record_audit(s, actor, "update", "guard_policy", row.id, project_id=project, details={"name": name})
                detail = _detail(row)
    except IntegrityError:
        raise _conflict(spec) from None
    if detail is None:  # `create` and no such policy yet
        return create_policy(platform, actor, write, name=name)
    _notify(platform)
    return detail


def delete_policy(platform: Platform, actor: Actor, name: str) -> None:
    """Remove a policy (member); calls it applied to fall back to the next most specific one."""
    project = _project(actor)
    actor.require_in(project, "member", "remove guard policies")
    with platform.db.session() as s:
        row = _find(s, actor, name)
        record_audit(s, actor, "delete", "guard_policy", row.id, project_id=project, details={"name": name})
        s.execute(delete(GuardPolicyVersion).where(GuardPolicyVersion.policy_id == row.id))
        s.delete(row)
    _notify(platform)


def list_policies(platform: Platform, actor: Actor) -> list[PolicyInfo]:
    """The policies of the caller's project (viewer)."""
    actor.require("viewer", "read guard policies")
    project = _project(actor)
    with platform.db.read_session() as s:
        rows = s.scalars(select(GuardPolicy).where(GuardPolicy.project_id == project).order_by(GuardPolicy.name))
        return [PolicyInfo(**_info_fields(r)) for r in rows]


def get_policy(platform: Platform, actor: Actor, name: str) -> PolicyDetail:
    """One policy of the caller's project (viewer)."""
    actor.require("viewer", "read guard policies")
    with platform.db.read_session() as s:
        return _detail(_find(s, actor, name))


def test_policy(platform: Platform, actor: Actor, name: str, req: PolicyTest) -> PolicyTestResult:
    """What a policy's stage would decide on a text, as the gateway would (member: scanners may call models).
    Runs on this worker thread's own loop; nothing is recorded."""
    actor.require("member", "try guard policies")
    if "\x00" in req.text:
        raise InvalidInput("text must not contain NUL characters", details={"field": "text"})
    with platform.db.read_session() as s:
        compiled = Compiled.of(_find(s, actor, name))
    runner = Runner(platform, actor.principal)
    verdict = asyncio.run(scan_stage(compiled, runner, req.stage, req.text, ScanContext(req.stage, req.prompt)))
    text = req.text
    vault = actions.Vault()
    if verdict.reason is None and verdict.findings:
        text = actions.apply(req.text, verdict.findings, vault=vault).text
    return PolicyTestResult(
        policy=name,
        stage=req.stage,
        blocked=verdict.reason is not None,
        reason=verdict.reason,
        text=text,
        decisions=verdict.decisions,
        redactions=len(vault.values),
    )


MAX_FINDINGS = 500
MAX_PAGES = 5  # pages of flagged traces read at most for one listing (each holds up to 100 traces' bodies)


def list_findings(
    platform: Platform,
    actor: Actor,
    *,
    policy: str | None = None,
    scanner: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[FindingView]:
    """Recent scanner decisions with findings or errors, newest first, from the traces of calls a policy flagged
    (tagged `guard`), filtered by policy, scanner or action (viewer)."""
    actor.require("viewer", "read guardrail findings")
    if not 1 <= limit <= MAX_FINDINGS:
        raise InvalidInput(f"limit must be between 1 and {MAX_FINDINGS}", details={"field": "limit"})
    out: list[FindingView] = []
    cursor = None
    pages = 0
    while len(out) < limit and pages < MAX_PAGES:
        page = list_traces(platform, actor, TraceFilters(tag="guard"), limit=100, cursor=cursor, bodies=True)
        pages += 1
        for t in page.traces:
            meta = (getattr(t, "metadata", None) or {}).get("guard")
            if not isinstance(meta, dict) or (policy is not None and meta.get("policy") != policy):
                continue
            for d in meta.get("decisions") or []:
                if not (d.get("findings") or d.get("error")):
                    continue
                if (scanner is not None and d.get("scanner") != scanner) or (
                    action is not None and d.get("action") != action
                ):
                    continue
                out.append(
                    FindingView(
                        trace_id=t.id,
                        time=t.start_time,
                        route=t.route,
                        policy=str(meta.get("policy")),
                        stage=str(d.get("stage")),
                        scanner=str(d.get("scanner")),
                        action=str(d.get("action")),
                        findings=list(d.get("findings") or []),
                        latency_ms=float(d.get("latency_ms") or 0),
                        error=d.get("error"),
                    )
                )
        cursor = page.next_cursor
        if cursor is None:
            break
    return out[:limit]
