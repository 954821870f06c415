"""The prompt registry: immutable versions, labels that move atomically with history, diffs, rendering.

A version's content (template or messages, variables, model parameters, tools, response schema) is
hashed canonically; creating a version whose content equals the latest one returns that version, so
pushing unchanged files creates nothing. `latest` always means the newest version and cannot be set.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, Forbidden, InvalidInput, NotFound, validated
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.prompts import template
from podium.prompts.store import Prompt, PromptLabel, PromptLabelMove, PromptVersion

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,119}$")
LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,59}$")
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


def check_name(value: str) -> str:
    """A prompt or experiment name (a pydantic validator's check)."""
    if not NAME_RE.match(value):
        raise ValueError("1-120 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


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

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)


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
    return validated(PromptSpec, data, "prompt")


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


def check_label(label: str) -> str:
    """A label name: a lowercase word, and not `latest` (which always means the newest version)."""
    if label == "latest" or not LABEL_RE.match(label):
        raise InvalidInput(
            f"label {label!r} is not valid: a lowercase word starting with a letter (and not `latest`,"
            " which always means the newest version)",
            details={"field": "label"},
        )
    return label


# --- lookups --------------------------------------------------------------------------------------


def _labels(s: Session, prompt_id: str) -> dict[str, str]:
    rows = s.execute(select(PromptLabel.label, PromptLabel.version_id).where(PromptLabel.prompt_id == prompt_id))
    return {label: vid for label, vid in rows}


def _version_info(s: Session, p: Prompt, v: PromptVersion, labels: dict[str, str] | None = None) -> VersionInfo:
    labels = _labels(s, p.id) if labels is None else labels
    latest = s.scalar(select(func.max(PromptVersion.version)).where(PromptVersion.prompt_id == p.id))
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


def check_owner(s: Session, actor: Actor, prompt_id: str) -> None:
    """Writes to a prompt (versions, labels, experiments) belong to its project's members and to admins:
    a member of another project cannot move the label that serves this project's traffic."""
    if actor.principal is None or actor.principal.has_role("admin"):
        return
    p = s.get(Prompt, prompt_id)
    if p is not None and p.project_id is not None and p.project_id != actor.project_id:
        raise Forbidden(
            f"prompt {p.name!r} belongs to another project; only its project's members or an admin may change it",
            details={"prompt": p.name},
        )


def _latest(s: Session, prompt_id: str) -> PromptVersion | None:
    q = select(PromptVersion).where(PromptVersion.prompt_id == prompt_id).order_by(PromptVersion.version.desc())
    return s.scalar(q.limit(1))


def _find_prompt(s: Session, name: str) -> Prompt:
    p = s.scalar(select(Prompt).where(Prompt.name == name))
    if p is None:
        known = s.scalars(select(Prompt.name).order_by(Prompt.name).limit(30)).all()
        raise NotFound(
            f"prompt {name!r} not found; known prompts: {', '.join(known) or 'none'}",
            details={"prompt": name, "known": list(known)},
        )
    return p


def _find_version(s: Session, p: Prompt, ref: str | int | None) -> PromptVersion:
    tag = str(ref) if ref is not None else "latest"
    if tag == "latest":
        v = _latest(s, p.id)
        if v is None:
            raise NotFound(f"prompt {p.name!r} has no versions yet")
        return v
    number = tag[1:] if tag.startswith("v") and tag[1:].isdigit() else tag
    if number.isdigit():
        v = s.scalar(select(PromptVersion).where(PromptVersion.prompt_id == p.id, PromptVersion.version == int(number)))
        if v is None:
            raise NotFound(f"prompt {p.name!r} has no version {number}")
        return v
    label = s.get(PromptLabel, (p.id, tag))
    if label is None:
        known = sorted(_labels(s, p.id))
        raise NotFound(
            f"prompt {p.name!r} has no label {tag!r}; its labels: {', '.join(known) or 'none'} (and `latest`)",
            details={"prompt": p.name, "label": tag, "known": known},
        )
    v = s.get(PromptVersion, label.version_id)
    assert v is not None
    return v


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`name`, `name@3` or `name@label` split into name and tag."""
    name, _, tag = ref.strip().partition("@")
    if not name or "@" in tag:
        raise InvalidInput(f"prompt reference {ref!r} is not `name`, `name@version` or `name@label`")
    return name, tag or None


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
    for attempt in range(5):
        try:
            return _create_once(db, actor, spec, content, digest)
        except IntegrityError:  # two pushes of a new version raced; the loser retries on top of the winner
            if attempt == 4:
                raise Conflict(f"prompt {spec.name!r} changed concurrently; try again") from None
    raise AssertionError("unreachable")


def _create_once(db: Database, actor: Actor, spec: PromptSpec, content: dict[str, Any], digest: str) -> Created:
    with db.session() as s:
        p = s.scalar(select(Prompt).where(Prompt.name == spec.name))
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
        else:
            check_owner(s, actor, p.id)
        latest = _latest(s, p.id)
        if latest is not None and latest.content_hash == digest:
            if spec.description and spec.description != p.description:
                p.description = spec.description
            return Created(created=False, version=_version_info(s, p, latest))
        if spec.description:
            p.description = spec.description
        v = PromptVersion(
            id=new_id("prv"),
            prompt_id=p.id,
            version=(latest.version if latest else 0) + 1,
            content_hash=digest,
            message=spec.message,
            created_by=actor.label,
            created_at=now,
            **content,
        )
        s.add(v)
        s.flush()
        record_audit(
            s, actor, "prompt.version.create", "prompt_version", v.id, details={"prompt": p.name, "version": v.version}
        )
        return Created(created=True, version=_version_info(s, p, v))


def _dry_run(db: Database, actor: Actor, spec: PromptSpec, content: dict[str, Any], digest: str) -> Created:
    with db.read_session() as s:
        p = s.scalar(select(Prompt).where(Prompt.name == spec.name))
        latest = _latest(s, p.id) if p is not None else None
        if p is not None and latest is not None and latest.content_hash == digest:
            return Created(created=False, version=_version_info(s, p, latest))
        return Created(
            created=True,
            version=VersionInfo(
                id="",
                prompt=spec.name,
                version=(latest.version if latest else 0) + 1,
                content_hash=digest,
                message=spec.message,
                created_by=actor.label,
                created_at=utcnow(),
                labels=[],
                **content,
            ),
        )


def list_prompts(db: Database) -> list[PromptInfo]:
    """Every prompt, by name, with its latest version and labels."""
    with db.read_session() as s:
        return [_prompt_info(s, p) for p in s.scalars(select(Prompt).order_by(Prompt.name))]


def _prompt_info(s: Session, p: Prompt) -> PromptInfo:
    rows = s.execute(select(PromptVersion.id, PromptVersion.version).where(PromptVersion.prompt_id == p.id))
    versions = {vid: number for vid, number in rows}
    latest = _latest(s, p.id)
    return PromptInfo(
        name=p.name,
        description=p.description,
        latest_version=latest.version if latest else 0,
        kind=latest.kind if latest else "",
        labels={label: versions[vid] for label, vid in sorted(_labels(s, p.id).items())},
        updated_at=latest.created_at if latest else p.created_at,
    )


def get_prompt(db: Database, name: str) -> PromptDetail:
    """A prompt with every version (newest first) and its label history (newest first)."""
    with db.read_session() as s:
        p = _find_prompt(s, name)
        labels = _labels(s, p.id)
        versions = s.scalars(
            select(PromptVersion).where(PromptVersion.prompt_id == p.id).order_by(PromptVersion.version.desc())
        ).all()
        numbers = {v.id: v.version for v in versions}
        moves = s.scalars(
            select(PromptLabelMove).where(PromptLabelMove.prompt_id == p.id).order_by(PromptLabelMove.id.desc())
        ).all()
        return PromptDetail(
            **_prompt_info(s, p).model_dump(),
            versions=[_version_info(s, p, v, labels) for v in versions],
            history=[
                LabelMoveInfo(
                    label=m.label,
                    from_version=numbers.get(m.from_version_id or ""),
                    to_version=numbers.get(m.to_version_id or ""),
                    actor=m.actor,
                    at=m.at,
                )
                for m in moves
            ],
        )


def get_version(db: Database, name: str, ref: str | int | None = None) -> VersionInfo:
    """One version by number (`3`, `v3`), label, or `latest` (the default)."""
    with db.read_session() as s:
        p = _find_prompt(s, name)
        return _version_info(s, p, _find_version(s, p, ref))


def get_version_by_id(db: Database, version_id: str) -> VersionInfo:
    """One version by its id (`prv_…`), as traces link to it."""
    with db.read_session() as s:
        v = s.get(PromptVersion, version_id)
        if v is None:
            raise NotFound(f"prompt version {version_id!r} not found")
        p = s.get(Prompt, v.prompt_id)
        assert p is not None
        return _version_info(s, p, v)


# --- labels ---------------------------------------------------------------------------------------


def set_label(db: Database, actor: Actor, name: str, label: str, version: str | int) -> VersionInfo:
    """Point `label` at a version (a number, or a version id that must belong to this prompt), atomically,
    recording the move. Concurrent moves serialise: the last one wins and the history has both."""
    actor.require("member", "move prompt labels")
    check_label(label)
    for attempt in range(5):
        try:
            return _set_label_once(db, actor, name, label, version)
        except IntegrityError:  # two first-time creations of the same label raced; the loser retries
            if attempt == 4:
                raise Conflict(f"label {label!r} of {name!r} is being moved concurrently; try again") from None
    raise AssertionError("unreachable")


def _set_label_once(db: Database, actor: Actor, name: str, label: str, version: str | int) -> VersionInfo:
    with db.session() as s:
        p = _find_prompt(s, name)
        check_owner(s, actor, p.id)
        if isinstance(version, str) and version.startswith("prv_"):
            target = s.get(PromptVersion, version)
            if target is None:
                raise NotFound(f"prompt version {version!r} not found")
            if target.prompt_id != p.id:
                owner = s.get(Prompt, target.prompt_id)
                raise InvalidInput(
                    f"version {version} belongs to prompt {owner.name if owner else '?'!r}, not {name!r};"
                    " a label can only point at a version of its own prompt",
                    details={"field": "version"},
                )
        else:
            tag = str(version)
            if not (tag.isdigit() or (tag.startswith("v") and tag[1:].isdigit()) or tag == "latest"):
                raise InvalidInput(f"version {version!r} is not a version number, `latest` or a version id")
            target = _find_version(s, p, tag)
        current = s.scalar(
            select(PromptLabel).where(PromptLabel.prompt_id == p.id, PromptLabel.label == label).with_for_update()
        )
        previous = current.version_id if current else None
        now = utcnow()
        if current is None:
            row = PromptLabel(prompt_id=p.id, label=label, version_id=target.id, updated_by=actor.label, updated_at=now)
            s.add(row)
            s.flush()
        else:
            current.version_id = target.id
            current.updated_by = actor.label
            current.updated_at = now
        s.add(
            PromptLabelMove(
                id=new_id("plm"),
                prompt_id=p.id,
                label=label,
                from_version_id=previous,
                to_version_id=target.id,
                actor=actor.label,
                at=now,
            )
        )
        record_audit(s, actor, "prompt.label.set", "prompt", p.id, details={"label": label, "version": target.version})
        s.flush()
        return _version_info(s, p, target)


def remove_label(db: Database, actor: Actor, name: str, label: str) -> None:
    """Delete a label (recorded in its history)."""
    actor.require("member", "move prompt labels")
    with db.session() as s:
        p = _find_prompt(s, name)
        check_owner(s, actor, p.id)
        current = s.get(PromptLabel, (p.id, label))
        if current is None:
            raise NotFound(f"prompt {name!r} has no label {label!r}")
        s.add(
            PromptLabelMove(
                id=new_id("plm"),
                prompt_id=p.id,
                label=label,
                from_version_id=current.version_id,
                to_version_id=None,
                actor=actor.label,
                at=utcnow(),
            )
        )
        s.delete(current)
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


def diff(db: Database, name: str, a: str | int, b: str | int) -> Diff:
    """Compare two versions (numbers or labels)."""
    va, vb = get_version(db, name, a), get_version(db, name, b)
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


def render(db: Database, name: str, ref: str | int | None, values: dict[str, Any] | None) -> Rendered:
    """Render a prompt by name and version/label."""
    return render_version(get_version(db, name, ref), values)
