"""The prompt registry: immutable versions, labels that move atomically with history, diffs, rendering.

A version's content (template or messages, variables, model parameters, tools, response schema) is
hashed canonically; creating a version whose content equals the latest one returns that version, so
pushing unchanged files creates nothing. `latest` always means the newest version and cannot be set.
Names, references, numbering, content lookup and label moves are the registry kernel's (`core.registry`,
declared as `store.PROMPTS`); this module adds what is particular to prompts: their content, owners and
rendering.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound, validated
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.prompts import template
from podium.prompts.store import PROMPTS, Prompt, PromptVersion

ROLES = ("system", "developer", "user", "assistant", "tool")
MODEL_PARAMS = (
    "name",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "tool_choice",
)


class Message(BaseModel):
    """One chat message of a template."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str


class PromptSpec(BaseModel):
    """A prompt version as pushed: the body of `POST /api/prompts` and the content of a prompt file."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    description: str = ""
    template: str | None = None
    messages: list[Message] | None = None
    variables: dict[str, Any] = {}
    model: dict[str, Any] = {}
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    message: str = Field("", description="Commit message of this version.")


class VersionInfo(BaseModel):
    """One version of a prompt, with the labels that point at it."""

    id: str
    prompt: str
    version: int
    kind: str
    template: str | None
    messages: list[dict[str, Any]] | None
    variables: dict[str, Any]
    model: dict[str, Any]
    tools: list[dict[str, Any]] | None
    response_format: dict[str, Any] | None
    content_hash: str
    message: str
    created_by: str
    created_at: datetime
    labels: list[str]


class PromptInfo(BaseModel):
    """A prompt in listings."""

    name: str
    description: str
    latest_version: int
    kind: str
    labels: dict[str, int]
    updated_at: datetime


class LabelMoveInfo(BaseModel):
    """One entry in a prompt's label history."""

    label: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime


class PromptDetail(PromptInfo):
    """A prompt with its versions (newest first) and the history of its labels."""

    versions: list[VersionInfo]
    history: list[LabelMoveInfo]


class Created(BaseModel):
    """The result of pushing a version: the version, and whether it is new."""

    created: bool
    version: VersionInfo


class Diff(BaseModel):
    """Two versions compared: the fields that differ and a unified diff of their YAML."""

    prompt: str
    a: int
    b: int
    changed: list[str]
    unified: str


class Rendered(BaseModel):
    """A version rendered with variables: text or messages, plus what the model call needs."""

    prompt: str
    version: int
    version_id: str
    kind: str
    text: str | None = None
    messages: list[dict[str, Any]] | None = None
    model: dict[str, Any] = {}
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    variables: dict[str, Any] = {}


# --- validation ------------------------------------------------------------------------------------


def parse_spec(data: Any) -> PromptSpec:
    """Validate a pushed version; errors name the field."""
    if not isinstance(data, dict):
        raise InvalidInput("a prompt version must be a JSON object with `name` and `template` or `messages`")
    spec = validated(PromptSpec, data, "prompt")
    spec.name = PROMPTS.check_name(spec.name)
    return spec


def check_spec(spec: PromptSpec) -> dict[str, Any]:
    """The version's content as stored: templates checked (syntax, sandbox), variables declared and typed
    (variables a template uses but does not declare become required strings), model parameters known."""
    if (spec.template is None) == (spec.messages is None):
        raise InvalidInput(
            f"prompt {spec.name!r} needs exactly one of `template` (plain text) or `messages` (chat)",
            details={"field": "template"},
        )
    variables = template.normalise_variables(spec.variables)
    used: set[str] = set()
    if spec.template is not None:
        used |= template.check(spec.template, "template")
    else:
        if not spec.messages:
            raise InvalidInput(f"prompt {spec.name!r}: `messages` is empty", details={"field": "messages"})
        for i, m in enumerate(spec.messages):
            used |= template.check(m.content, f"messages[{i}].content")
    for name in sorted(used - set(variables)):
        if name.startswith("_"):
            raise InvalidInput(f"template variable {name!r}: names starting with '_' are not allowed")
        variables[name] = {"type": "string"}
    unknown = set(spec.model) - set(MODEL_PARAMS)
    if unknown:
        raise InvalidInput(
            f"unknown model parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(MODEL_PARAMS)}",
            details={"field": "model"},
        )
    return {
        "kind": "text" if spec.template is not None else "chat",
        "template": spec.template,
        "messages": [m.model_dump() for m in spec.messages] if spec.messages is not None else None,
        "variables": variables,
        "model": dict(spec.model),
        "tools": spec.tools,
        "response_format": spec.response_format,
    }


def content_hash(content: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a version's content."""
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- lookups --------------------------------------------------------------------------------------


def _version_info(
    s: Session, p: Prompt, v: PromptVersion, labels: dict[str, str] | None = None, latest: int | None = None
) -> VersionInfo:
    labels = PROMPTS.labels(s, p) if labels is None else labels
    latest = PROMPTS.latest_number(s, p) if latest is None else latest
    names = sorted(label for label, vid in labels.items() if vid == v.id)
    if v.version == latest:
        names.insert(0, "latest")
    return VersionInfo(
        id=v.id,
        prompt=p.name,
        version=v.version,
        kind=v.kind,
        template=v.template,
        messages=v.messages,
        variables=v.variables,
        model=v.model,
        tools=v.tools,
        response_format=v.response_format,
        content_hash=v.content_hash,
        message=v.message,
        created_by=v.created_by,
        created_at=v.created_at,
        labels=names,
    )


def check_owner(s: Session, actor: Actor, prompt_id: str, not_found: str | None = None) -> None:
    """Writes to a prompt (versions, labels, experiments) belong to its project's members and to server
    admins. For anyone else another project's prompt does not exist: `NotFound` (`not_found` names what the
    caller asked for, as for a missing one; never the prompt, if the caller did not name it)."""
    p = s.get(Prompt, prompt_id)
    if p is not None and not actor.sees(p.project_id):
        raise NotFound(not_found or f"prompt {p.name!r} not found", details={"field": "name"})
    if p is not None and p.project_id is None:
        actor.require_admin("change global prompts")


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`name`, `name@3` or `name@label` split into name and tag."""
    parsed = PROMPTS.parse_ref(ref)
    return parsed.name, parsed.tag


# --- versions -------------------------------------------------------------------------------------


def create_version(db: Database, actor: Actor, data: Any, *, dry_run: bool = False) -> Created:
    """Create a version from a spec, or return the latest one if its content is the same. With `dry_run`,
    validate and say what would happen (the would-be version has an empty id) without writing."""
    actor.require("member", "create prompt versions")
    spec = parse_spec(data)
    content = check_spec(spec)
    digest = content_hash(content)
    if dry_run:
        return _dry_run(db, actor, spec, content, digest)
    return PROMPTS.write(
        db,
        lambda s: _create_in(s, actor, spec, content, digest),
        conflict=f"prompt {spec.name!r} changed concurrently; try again",
    )


def _create_in(s: Session, actor: Actor, spec: PromptSpec, content: dict[str, Any], digest: str) -> Created:
    p = PROMPTS.get(s, spec.name)
    now = utcnow()
    if p is None:
        p = Prompt(
            id=new_id("prm"),
            name=spec.name,
            description=spec.description,
            project_id=actor.project_id,
            created_by=actor.label,
            created_at=now,
        )
        s.add(p)
        s.flush()
        record_audit(s, actor, "prompt.create", "prompt", p.id, details={"name": spec.name})
    elif not actor.sees(p.project_id):  # names are unique on the server: say so, without showing the prompt
        raise Conflict(
            f"the prompt name {spec.name!r} is taken by another project; choose another name",
            details={"field": "name"},
        )
    else:
        check_owner(s, actor, p.id)
    if spec.description and spec.description != p.description:
        p.description = spec.description
    pushed = PROMPTS.push(  # history is linear: going back to older content is a new version
        s,
        p,
        content_hash=digest,
        same="latest",
        message=spec.message,
        created_by=actor.label,
        created_at=now,
        **content,
    )
    v = pushed.version
    if not pushed.created:
        return Created(created=False, version=_version_info(s, p, v))
    record_audit(
        s, actor, "prompt.version.create", "prompt_version", v.id, details={"prompt": p.name, "version": v.version}
    )
    return Created(created=True, version=_version_info(s, p, v))


def _dry_run(db: Database, actor: Actor, spec: PromptSpec, content: dict[str, Any], digest: str) -> Created:
    with db.read_session() as s:
        p = PROMPTS.get(s, spec.name)
        same = PROMPTS.by_hash(s, p, digest, latest_only=True) if p is not None else None
        if p is not None and same is not None:
            return Created(created=False, version=_version_info(s, p, same))
        return Created(
            created=True,
            version=VersionInfo(
                id="",
                prompt=spec.name,
                version=(PROMPTS.latest_number(s, p) if p is not None else 0) + 1,
                content_hash=digest,
                message=spec.message,
                created_by=actor.label,
                created_at=utcnow(),
                labels=[],
                **content,
            ),
        )


def list_prompts(db: Database, actor: Actor) -> list[PromptInfo]:
    """The prompts the actor sees (its project's and global ones; every one for a server admin), by name,
    with their latest version and labels."""
    actor.require("viewer", "read prompts")
    with db.read_session() as s:
        q = PROMPTS.in_scope(select(Prompt).order_by(Prompt.name), actor.scope())
        return [_prompt_info(s, p) for p in s.scalars(q)]


def _prompt_info(s: Session, p: Prompt) -> PromptInfo:
    latest = PROMPTS.latest(s, p)
    return PromptInfo(
        name=p.name,
        description=p.description,
        latest_version=latest.version if latest else 0,
        kind=latest.kind if latest else "",
        labels=PROMPTS.label_numbers(s, p),
        updated_at=latest.created_at if latest else p.created_at,
    )


def get_prompt(db: Database, actor: Actor, name: str) -> PromptDetail:
    """A prompt with every version (newest first) and its label history (newest first)."""
    actor.require("viewer", "read prompts")
    with db.read_session() as s:
        p = PROMPTS.find(s, name, projects=actor.scope())
        labels = PROMPTS.labels(s, p)
        versions = PROMPTS.versions(s, p)
        latest = versions[0].version if versions else 0
        return PromptDetail(
            **_prompt_info(s, p).model_dump(),
            versions=[_version_info(s, p, v, labels, latest) for v in versions],
            history=[
                LabelMoveInfo(
                    label=m.label, from_version=m.from_version, to_version=m.to_version, actor=m.actor, at=m.at
                )
                for m in PROMPTS.history(s, p)
            ],
        )


def get_version(db: Database, actor: Actor, name: str, ref: str | int | None = None) -> VersionInfo:
    """One version by number (`3`, `v3`), label, version id, or `latest` (the default), of a prompt the
    actor sees."""
    actor.require("viewer", "read prompts")
    with db.read_session() as s:
        p = PROMPTS.find(s, name, projects=actor.scope())
        return _version_info(s, p, PROMPTS.resolve(s, p, ref))


def get_version_by_id(db: Database, actor: Actor, version_id: str) -> VersionInfo:
    """One version by its id (`prv_…`), as traces link to it, if the actor sees its prompt."""
    actor.require("viewer", "read prompts")
    with db.read_session() as s:
        v = s.get(PromptVersion, version_id)
        p = s.get(Prompt, v.prompt_id) if v is not None else None
        if v is None or p is None or not actor.sees(p.project_id):
            raise NotFound(f"prompt version {version_id!r} not found")
        return _version_info(s, p, v)


# --- labels ---------------------------------------------------------------------------------------


def set_label(db: Database, actor: Actor, name: str, label: str, version: str | int) -> VersionInfo:
    """Point `label` at a version (a number, `latest`, another label, or a version id that must belong to this
    prompt), atomically, recording the move. Concurrent moves serialise: the last one wins and the history has
    both."""
    actor.require("member", "move prompt labels")
    PROMPTS.check_label(label)

    def once(s: Session) -> VersionInfo:
        p = PROMPTS.find(s, name)
        check_owner(s, actor, p.id)
        moved = PROMPTS.set_label(s, p, label, version, actor.label)
        details = {"label": label, "version": moved.version.version}
        record_audit(s, actor, "prompt.label.set", "prompt", p.id, details=details)
        return _version_info(s, p, moved.version)

    return PROMPTS.write(db, once, conflict=f"label {label!r} of {name!r} is being moved concurrently; try again")


def remove_label(db: Database, actor: Actor, name: str, label: str) -> None:
    """Delete a label (recorded in its history)."""
    actor.require("member", "move prompt labels")
    with db.session() as s:
        p = PROMPTS.find(s, name)
        check_owner(s, actor, p.id)
        PROMPTS.remove_label(s, p, label, actor.label)
        record_audit(s, actor, "prompt.label.remove", "prompt", p.id, details={"label": label})


# --- diff and render ------------------------------------------------------------------------------


def to_file(v: VersionInfo, description: str = "") -> dict[str, Any]:
    """A version as the content of a prompt file (what `podium prompts pull` writes)."""
    out: dict[str, Any] = {"name": v.prompt}
    if description:
        out["description"] = description
    if v.kind == "text":
        out["template"] = v.template
    else:
        out["messages"] = v.messages
    if v.variables:
        out["variables"] = v.variables
    if v.model:
        out["model"] = v.model
    if v.tools is not None:
        out["tools"] = v.tools
    if v.response_format is not None:
        out["response_format"] = v.response_format
    return out


class _Dumper(yaml.SafeDumper):
    """YAML with multi-line strings as literal blocks and indented lists, so files and diffs read like the
    template and like hand-written prompt files."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def to_yaml(data: dict[str, Any]) -> str:
    """Readable YAML (keys in file order, literal blocks for multi-line text)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def diff(db: Database, actor: Actor, name: str, a: str | int, b: str | int) -> Diff:
    """Compare two versions (numbers or labels)."""
    va, vb = get_version(db, actor, name, a), get_version(db, actor, name, b)
    fields = ("kind", "template", "messages", "variables", "model", "tools", "response_format")
    changed = [f for f in fields if getattr(va, f) != getattr(vb, f)]
    lines = difflib.unified_diff(
        to_yaml(to_file(va)).splitlines(keepends=True),
        to_yaml(to_file(vb)).splitlines(keepends=True),
        fromfile=f"{name}@{va.version}",
        tofile=f"{name}@{vb.version}",
    )
    return Diff(prompt=name, a=va.version, b=vb.version, changed=changed, unified="".join(lines))


class RenderableVersion(Protocol):
    """What rendering needs of a version: a `VersionInfo`, or the gateway snapshot's copy of one."""

    @property
    def id(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def template(self) -> str | None: ...
    @property
    def messages(self) -> list[dict[str, Any]] | None: ...
    @property
    def variables(self) -> dict[str, Any]: ...
    @property
    def model(self) -> dict[str, Any]: ...
    @property
    def tools(self) -> list[dict[str, Any]] | None: ...
    @property
    def response_format(self) -> dict[str, Any] | None: ...


def render_version(v: RenderableVersion, values: Mapping[str, Any] | None) -> Rendered:
    """Render a version with variables (typed, defaults applied; every missing name in one 400)."""
    text, messages, bound = template.render_content(v.kind, v.template, v.messages, v.variables, values)
    return Rendered(
        prompt=v.prompt,
        version=v.version,
        version_id=v.id,
        kind=v.kind,
        text=text,
        messages=messages,
        model=v.model,
        tools=v.tools,
        response_format=v.response_format,
        variables=bound,
    )


def render(db: Database, actor: Actor, name: str, ref: str | int | None, values: dict[str, Any] | None) -> Rendered:
    """Render a prompt by name and version/label."""
    return render_version(get_version(db, actor, name, ref), values)
