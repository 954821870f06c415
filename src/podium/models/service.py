"""The model registry: register versions (local files or remote endpoints), move aliases, resolve references.

A version is immutable: its files are copied into the content-addressed artifact store and listed by
sha256, so what was registered is what gets loaded, byte for byte. References are `name` (latest
version), `name@3` / `name@v3` (a version number) or `name@alias`. Names, references, version numbers,
content hashes and aliases follow the registry kernel (`core.registry`, declared as `store.MODELS`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.core.blobs import BlobStore, file_sha256
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.netguard import NetGuard
from podium.core.platform import Platform
from podium.models.formats import Inspected, inspect_source
from podium.models.providers.registry import kind as provider_kind
from podium.models.providers.registry import kinds as provider_kinds
from podium.models.sources import locate
from podium.models.store import MODELS, TASKS, Model, ModelVersion

SECRET_FIELDS = ("api_key",)


# --- views ---------------------------------------------------------------------------------------


class FileInfo(BaseModel):
    """One file of a version."""

    path: str
    sha256: str
    size: int


class VersionInfo(BaseModel):
    """A model version as the API shows it (secrets masked)."""

    id: str
    model: str
    version: int
    task: str
    provider: str
    source_uri: str
    format: str
    files: list[FileInfo]
    sha256: str
    parameters: int | None
    context_length: int | None
    license: str | None
    config: dict[str, Any]
    lineage: dict[str, Any]
    base_version_id: str | None
    base_ref: str | None = None
    message: str
    created_by: str
    created_at: datetime
    aliases: list[str]


class ModelInfo(BaseModel):
    """A model as the API lists it."""

    id: str
    name: str
    task: str
    provider: str
    description: str
    builtin: bool
    project_id: str | None  # the owning project; None for a global model (the built-in ones)
    created_at: datetime
    archived: bool
    latest_version: int | None
    aliases: dict[str, int]


class AliasMoveInfo(BaseModel):
    """One move of an alias."""

    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime


class AliasRollback(BaseModel):
    """An alias moved back: from which version to which, and the version it points at now."""

    model: str
    alias: str
    from_version: int
    to_version: int
    version: VersionInfo


class ModelDetail(ModelInfo):
    """A model with all its versions and its alias history."""

    versions: list[VersionInfo]
    history: list[AliasMoveInfo]


@dataclass(frozen=True)
class ResolvedModel:
    """A reference resolved to one version, with the decrypted config providers need."""

    model: ModelInfo
    version: VersionInfo
    config: dict[str, Any]

    @property
    def ref(self) -> str:
        """`name@version`."""
        return f"{self.model.name}@{self.version.version}"


# --- helpers ---------------------------------------------------------------------------------------


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split `name@tag` into its parts."""
    parsed = MODELS.parse_ref(ref)
    return parsed.name, parsed.tag


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    return {k: ("********" if k in SECRET_FIELDS and v else v) for k, v in config.items()}


def _model_info(s: Session, m: Model) -> ModelInfo:
    return ModelInfo(
        id=m.id,
        name=m.name,
        task=m.task,
        provider=m.provider,
        description=m.description,
        builtin=m.builtin,
        project_id=m.project_id,
        created_at=m.created_at,
        archived=m.archived_at is not None,
        latest_version=MODELS.latest_number(s, m) or None,
        aliases=MODELS.label_numbers(s, m),
    )


def _version_info(s: Session, m: Model, v: ModelVersion) -> VersionInfo:
    base_ref = None
    if v.base_version_id:
        row = s.execute(
            select(Model.name, ModelVersion.version)
            .join(ModelVersion, ModelVersion.model_id == Model.id)
            .where(ModelVersion.id == v.base_version_id)
        ).first()
        base_ref = f"{row[0]}@{row[1]}" if row else None
    return VersionInfo(
        id=v.id,
        model=m.name,
        version=v.version,
        task=m.task,
        provider=m.provider,
        source_uri=v.source_uri,
        format=v.format,
        files=[FileInfo(**f) for f in v.files],
        sha256=v.sha256,
        parameters=v.parameters,
        context_length=v.context_length,
        license=v.license,
        config=_masked(v.config),
        lineage=v.lineage,
        base_version_id=v.base_version_id,
        base_ref=base_ref,
        message=v.message,
        created_by=v.created_by,
        created_at=v.created_at,
        aliases=MODELS.labels_of(s, m, v),
    )


def manifest_sha256(files: list[dict[str, Any]]) -> str:
    """A folder version's hash: sha256 over its sorted `path sha256` lines (one file: that file's hash)."""
    if len(files) == 1:
        return str(files[0]["sha256"])
    lines = "".join(f"{f['path']}\0{f['sha256']}\n" for f in sorted(files, key=lambda f: f["path"]))
    return hashlib.sha256(lines.encode()).hexdigest()


# --- registration ----------------------------------------------------------------------------------


def upstream_guard(platform: Platform) -> NetGuard:
    """Where this server may send requests for registered upstreams (settings `upstream_allow_private`)."""
    return NetGuard(allow_private=platform.settings.upstream_allow_private)


def check_local_source(platform: Platform, path: Path) -> None:
    """A path on the server (server admins only, see `register_local`) must be inside `model_source_roots`
    when that setting names folders."""
    roots = [Path(r).expanduser().resolve() for r in platform.settings.model_source_roots]
    if not roots:
        return
    resolved = path.expanduser().resolve()
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise Forbidden(
            f"{path} is outside the folders models may be registered from (setting model_source_roots:"
            f" {', '.join(str(r) for r in roots)})",
            details={"field": "source"},
        )


def hashed_files(inspected: Inspected) -> tuple[dict[str, Path], list[dict[str, Any]], str]:
    """An inspected source's files by relative path, their rows (path, sha256, size) and the version's hash."""
    local_paths = {inspected.relpath(p): p for p in inspected.files}
    files: list[dict[str, Any]] = [
        {"path": rel, "sha256": file_sha256(p), "size": p.stat().st_size} for rel, p in local_paths.items()
    ]
    return local_paths, files, manifest_sha256(files)


def store_files(platform: Platform, local_paths: dict[str, Path], files: list[dict[str, Any]]) -> None:
    """Put the files in the content-addressed store (idempotent); one that changed since it was hashed fails
    the registration before any row is written."""
    for f in files:
        if platform.blobs.put_file(local_paths[f["path"]]) != f["sha256"]:
            raise InvalidInput(f"{f['path']} changed while it was being registered; nothing was registered")


def format_config(inspected: Inspected) -> dict[str, Any]:
    """The config a local version records of its files: format details and architecture."""
    cfg: dict[str, Any] = {"format_details": {k: v for k, v in inspected.extra.items() if v is not None}}
    if inspected.architecture:
        cfg["architecture"] = inspected.architecture
    return cfg


def register_local(
    platform: Platform,
    actor: Actor,
    name: str,
    source: str,
    *,
    task: str | None = None,
    description: str = "",
    sha256: str | None = None,
    base: str | None = None,
    lineage: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    message: str = "",
    builtin: bool = False,
) -> VersionInfo:
    """Register a new version of a local model from a path, `pip:PACKAGE` or a hub id.

    Files are inspected and hashed first; a wrong `sha256` or an unreadable file fails before anything
    is recorded. Registering content identical to an existing version of the model returns that version.
    """
    actor.require("member", "register models")
    name = MODELS.check_name(name)
    if task is not None and task not in TASKS:
        raise InvalidInput(f"task {task!r} is not one of {', '.join(TASKS)}", details={"field": "task"})
    located = locate(
        source,
        download_dir=platform.settings.home_dir / "cache" / "hub",
        paths=(lambda path: check_local_source(platform, path)) if actor.is_admin else None,
    )
    inspected = inspect_source(located.path)
    local_paths, files, digest = hashed_files(inspected)
    if sha256 is not None and sha256.removeprefix("sha256:").lower() != digest:
        raise InvalidInput(
            f"hash mismatch for {located.uri}: expected sha256 {sha256}, the files hash to {digest};"
            " nothing was registered",
            details={"expected": sha256, "actual": digest},
        )
    base_version_id = None
    with platform.db.session() as s:
        if inspected.format == "peft" and base is None:
            raise InvalidInput(
                f"{located.uri} is a LoRA/PEFT adapter: give the base model it applies to (base=name@version)",
                details={"field": "base"},
            )
        if base is not None:
            ref = MODELS.parse_ref(base)
            base_version_id = MODELS.resolve(s, MODELS.find(s, ref.name), ref.tag).id
    store_files(platform, local_paths, files)  # content first (idempotent), then the rows in one transaction
    task = task or inspected.task
    full_lineage = dict(lineage or {})
    if base_version_id:
        full_lineage.setdefault("adapter_of", base_version_id)
    cfg = format_config(inspected)
    cfg.update(config or {})
    return _insert_version(
        platform.db,
        actor,
        name=name,
        task=task,
        provider="local",
        description=description,
        builtin=builtin,
        source_uri=located.uri,
        fmt=inspected.format,
        files=files,
        digest=digest,
        parameters=inspected.parameters,
        context_length=inspected.context_length,
        license=inspected.license,
        config=cfg,
        lineage=full_lineage,
        base_version_id=base_version_id,
        message=message,
    )


def register_remote(
    platform: Platform,
    actor: Actor,
    name: str,
    *,
    provider: str,
    base_url: str | None,
    upstream_model: str,
    api_key: str | None = None,
    task: str = "chat",
    context_length: int | None = None,
    description: str = "",
    message: str = "",
    lineage: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> VersionInfo:
    """Register a model served by an OpenAI-compatible or Anthropic endpoint (a project admin; the URL must be
    one this server may reach); the key is stored encrypted."""
    actor.require("admin", "register remote models (they make this server connect where they say)")
    name = MODELS.check_name(name)
    remote = sorted(k for k in provider_kinds() if k != "local")
    if provider not in remote:
        raise InvalidInput(f"provider {provider!r} is not one of {', '.join(remote)}", details={"field": "provider"})
    if task not in TASKS:
        raise InvalidInput(f"task {task!r} is not one of {', '.join(TASKS)}", details={"field": "task"})
    if provider_kind(provider).needs_base_url and not base_url:
        raise InvalidInput(
            f"an {provider} model needs base_url (e.g. http://host:8000/v1)", details={"field": "base_url"}
        )
    if base_url and not base_url.startswith(("http://", "https://")):
        raise InvalidInput(f"base_url {base_url!r} must start with http:// or https://", details={"field": "base_url"})
    if base_url:
        upstream_guard(platform).check_url(base_url)
    if not upstream_model:
        raise InvalidInput("upstream_model must name the model at the provider", details={"field": "upstream_model"})
    public = {
        "base_url": base_url.rstrip("/") if base_url else None,
        "model": upstream_model,
        **(extra or {}),
    }
    digest = hashlib.sha256(json.dumps(public, sort_keys=True).encode()).hexdigest()
    config = dict(public)
    if api_key:
        config["api_key"] = platform.box.encrypt(api_key)
    return _insert_version(
        platform.db,
        actor,
        name=name,
        task=task,
        provider=provider,
        description=description,
        builtin=False,
        source_uri=f"{provider}:{public['base_url'] or 'default'}#{upstream_model}",
        fmt="remote",
        files=[],
        digest=digest,
        parameters=None,
        context_length=context_length,
        license=None,
        config=config,
        lineage=dict(lineage or {}),
        base_version_id=None,
        message=message,
    )


def _insert_version(
    db: Database,
    actor: Actor,
    *,
    name: str,
    task: str,
    provider: str,
    description: str,
    builtin: bool,
    source_uri: str,
    fmt: str,
    files: list[dict[str, Any]],
    digest: str,
    parameters: int | None,
    context_length: int | None,
    license: str | None,
    config: dict[str, Any],
    lineage: dict[str, Any],
    base_version_id: str | None,
    message: str,
) -> VersionInfo:
    def once(s: Session) -> VersionInfo:
        m = MODELS.get(s, name)
        if m is not None and not actor.sees(m.project_id):
            raise Conflict(f"model name {name!r} is taken; pick another name", details={"field": "name"})
        if m is not None:
            actor.require_in(m.project_id, "member", f"add versions to model {name!r}")
        if m is None:
            m = Model(
                id=new_id("mdl"),
                name=name,
                task=task,
                provider=provider,
                description=description,
                builtin=builtin,
                project_id=actor.project_id,
                created_by=actor.label,
                created_at=utcnow(),
            )
            s.add(m)
            s.flush()
            record_audit(s, actor, "model.create", "model", m.id, details={"name": name})
        else:
            if m.archived_at is not None:
                m.archived_at = None
            if m.task != task or m.provider != provider:
                raise Conflict(
                    f"model {name!r} is a model of provider {m.provider!r} and task {m.task!r}; a new version must be"
                    f" the same (got {provider!r} and {task!r}); register it under another name"
                )
        pushed = MODELS.push(
            s,
            m,
            content_hash=digest,
            same=None if fmt == "remote" else "any",  # a remote version's key is not in its hash
            source_uri=source_uri,
            format=fmt,
            files=files,
            parameters=parameters,
            context_length=context_length,
            license=license,
            config=config,
            lineage=lineage,
            base_version_id=base_version_id,
            message=message,
            created_by=actor.label,
            created_at=utcnow(),
        )
        v = pushed.version
        if not pushed.created:
            return _version_info(s, m, v)
        if description:
            m.description = description
        record_audit(
            s,
            actor,
            "model.version.create",
            "model_version",
            v.id,
            details={"model": name, "version": v.version, "sha256": digest, "source": source_uri},
        )
        return _version_info(s, m, v)

    return MODELS.write(db, once, conflict=f"model {name!r} changed concurrently; try again")


# --- queries ---------------------------------------------------------------------------------------


def list_models(
    platform: Platform, actor: Actor, *, include_archived: bool = False, task: str | None = None
) -> list[ModelInfo]:
    """The models the actor sees (its project's and the global ones; every one for a server admin), by name."""
    with platform.db.read_session() as s:
        q = select(Model).order_by(Model.name)
        if not include_archived:
            q = q.where(Model.archived_at.is_(None))
        if task:
            q = q.where(Model.task == task)
        return [_model_info(s, m) for m in s.scalars(MODELS.in_scope(q, actor.scope()))]


def is_registered(platform: Platform, name: str) -> bool:
    """True if a model (archived or not, of any project) has this name; routes may not take it."""
    with platform.db.read_session() as s:
        return s.scalar(select(Model.id).where(Model.name == name)) is not None


def referenced_blobs(s: Session, digests: set[str]) -> set[str]:
    """Which of `digests` are files of a registered model version (the models domain's answer to the
    artifact store's "is this blob still needed?")."""
    found: set[str] = set()
    for files in s.scalars(select(ModelVersion.files)):
        found |= {str(f.get("sha256")) for f in files or [] if isinstance(f, dict)} & digests
    return found


def get_model(platform: Platform, actor: Actor, name: str) -> ModelDetail:
    """A model the actor sees, with its versions (newest first) and alias history."""
    with platform.db.read_session() as s:
        m = MODELS.find(s, name, include_archived=True, projects=actor.scope())
        return ModelDetail(
            **_model_info(s, m).model_dump(),
            versions=[_version_info(s, m, v) for v in MODELS.versions(s, m)],
            history=[
                AliasMoveInfo(
                    alias=mv.label, from_version=mv.from_version, to_version=mv.to_version, actor=mv.actor, at=mv.at
                )
                for mv in MODELS.history(s, m)
            ],
        )


def resolve(platform: Platform, ref: str) -> ResolvedModel:
    """`name`, `name@3` or `name@alias` to a version, with secrets decrypted for the provider. For the
    platform itself (the gateway's model directory, the model workers): the caller checks that the
    model's `project_id` is one its requester sees."""
    parsed = MODELS.parse_ref(ref)
    with platform.db.read_session() as s:
        m = MODELS.find(s, parsed.name)
        v = MODELS.resolve(s, m, parsed.tag)
        config = dict(v.config)
        for key in SECRET_FIELDS:
            if config.get(key):
                config[key] = platform.box.decrypt(config[key])
        return ResolvedModel(_model_info(s, m), _version_info(s, m, v), config)


def rotate_secrets(platform: Platform) -> int:
    """Re-encrypt the stored secrets of remote model versions under the current secret key (after a
    rotation; `podium serve` calls it when `secret_key_previous` is set). Returns how many changed."""
    changed = 0
    with platform.db.session() as s:
        for v in s.scalars(select(ModelVersion)):
            config = dict(v.config or {})
            for key in SECRET_FIELDS:
                if config.get(key):
                    config[key] = platform.box.rotate(config[key])
            if config != v.config:
                v.config = config
                changed += 1
    return changed


def get_version_by_id(platform: Platform, actor: Actor, version_id: str) -> VersionInfo:
    """One version by its id (`mdv_…`), if the actor sees its model."""
    with platform.db.read_session() as s:
        v = s.get(ModelVersion, version_id)
        m = s.get(Model, v.model_id) if v is not None else None
        if v is None or m is None or not actor.sees(m.project_id):
            raise NotFound(f"model version {version_id!r} not found")
        return _version_info(s, m, v)


def get_version(platform: Platform, actor: Actor, ref: str) -> VersionInfo:
    """One version by reference, of a model the actor sees."""
    parsed = MODELS.parse_ref(ref)
    with platform.db.read_session() as s:
        m = MODELS.find(s, parsed.name, include_archived=True, projects=actor.scope())
        return _version_info(s, m, MODELS.resolve(s, m, parsed.tag))


# --- aliases ---------------------------------------------------------------------------------------


def _writable(s: Session, actor: Actor, name: str, action: str, *, include_archived: bool = False) -> Model:
    """A model the actor may change: one it sees, in its own project (a global one: server admins)."""
    m = MODELS.find(s, name, include_archived=include_archived, projects=actor.scope())
    actor.require_in(m.project_id, "member", f"{action} of model {name!r}")
    return m


def set_alias(platform: Platform, actor: Actor, name: str, alias: str, version: str | int) -> VersionInfo:
    """Point `alias` at a version (a number, `latest`, another alias or a version id of this model),
    atomically, recording the move; concurrent moves serialise, and the history has each of them."""
    actor.require("member", "move model aliases")
    MODELS.check_label(alias)

    def once(s: Session) -> VersionInfo:
        m = _writable(s, actor, name, "move the aliases")
        moved = MODELS.set_label(s, m, alias, version, actor.label)
        details = {"alias": alias, "version": moved.version.version}
        record_audit(s, actor, "model.alias.set", "model", m.id, details=details)
        return _version_info(s, m, moved.version)

    return MODELS.write(
        platform.db, once, conflict=f"alias {alias!r} of {name!r} is being moved concurrently; try again"
    )


def rollback_alias(platform: Platform, actor: Actor, name: str, alias: str) -> AliasRollback:
    """Move `alias` back to the version it pointed at before its latest move, atomically, recording the move
    in its history and the audit log. A second rollback undoes the first (like `cd -`)."""
    actor.require("member", "move model aliases")
    MODELS.check_label(alias)

    def once(s: Session) -> AliasRollback:
        m = _writable(s, actor, name, "move the aliases")
        current_id, current = MODELS.labels(s, m).get(alias), MODELS.label_numbers(s, m).get(alias)
        if current_id is None or current is None:
            known = ", ".join(MODELS.labels(s, m)) or "none"
            raise NotFound(
                f"model {name!r} has no alias {alias!r} to roll back (its aliases: {known}); point it at a version"
                f" with `podium models alias {name} {alias} VERSION`",
                details={"model": name, "alias": alias},
            )
        # the latest move that changed the version (moving an alias onto its own version changes nothing)
        last = next((mv for mv in MODELS.history(s, m) if mv.label == alias and mv.from_version != mv.to_version), None)
        if last is None or last.from_version is None:
            raise InvalidInput(
                f"alias {alias!r} of {name!r} has no earlier version to roll back to (it has pointed at version"
                f" {current} since it was made); move it with `podium models alias {name} {alias} VERSION`",
                details={"model": name, "alias": alias, "version": current},
            )
        moved = MODELS.set_label(s, m, alias, last.from_version, actor.label)
        if moved.previous_id != current_id:  # a move landed between the reads and the lock: undo, try again
            raise Conflict(f"alias {alias!r} of {name!r} is being moved concurrently; try again")
        details = {"alias": alias, "from_version": current, "to_version": last.from_version}
        record_audit(s, actor, "model.alias.rollback", "model", m.id, details=details)
        return AliasRollback(
            model=name,
            alias=alias,
            from_version=current,
            to_version=last.from_version,
            version=_version_info(s, m, moved.version),
        )

    return MODELS.write(
        platform.db, once, conflict=f"alias {alias!r} of {name!r} is being moved concurrently; try again"
    )


def remove_alias(platform: Platform, actor: Actor, name: str, alias: str) -> None:
    """Delete an alias (recorded in its history)."""
    actor.require("member", "move model aliases")
    with platform.db.session() as s:
        m = _writable(s, actor, name, "move the aliases")
        MODELS.remove_label(s, m, alias, actor.label)
        record_audit(s, actor, "model.alias.remove", "model", m.id, details={"alias": alias})


def archive_model(platform: Platform, actor: Actor, name: str) -> ModelInfo:
    """Hide a model from listings and routing; its versions stay for lineage. Re-registering restores it."""
    actor.require("member", "remove models")
    with platform.db.session() as s:
        m = _writable(s, actor, name, "remove")
        if m.builtin:
            actor.require_admin("remove built-in models")
        m.archived_at = utcnow()
        record_audit(s, actor, "model.archive", "model", m.id, details={"name": name})
        return _model_info(s, m)


# --- files on disk for loading -------------------------------------------------------------------


def materialize(blobs: BlobStore, version: VersionInfo, root: Path) -> Path:
    """A folder (or single file) holding the version's files, verified once, for loaders that want paths.

    With a local artifact store the files are symlinks to the blobs; otherwise they are copied.
    """
    if not version.files:
        raise InvalidInput(f"{version.model}@{version.version} is a remote model and has no files")
    folder = root / version.id
    marker = folder / ".podium-verified"
    if not marker.exists():
        tmp = root / f".{version.id}.tmp-{os.getpid()}"
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        for f in version.files:
            if not blobs.verify(f.sha256):
                from podium.core.errors import CorruptArtifact

                raise CorruptArtifact(
                    f"artifact sha256:{f.sha256} ({f.path}) of {version.model}@{version.version} is corrupt"
                )
            target = tmp / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if blobs.local:
                target.symlink_to(blobs.path(f.sha256))
            else:
                with open(target, "wb") as out:
                    for chunk in blobs.iter_chunks(f.sha256):
                        out.write(chunk)
        (tmp / ".podium-verified").write_text(version.sha256)
        try:
            os.replace(tmp, folder)
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    if version.format == "gguf":
        return folder / version.files[0].path
    return folder


def model_names(platform: Platform) -> dict[str, str | None]:
    """Every registered, unarchived model's name and owning project (None: global), for the gateway's
    snapshot: it answers unknown names without a database read and lists only what a caller may use."""
    with platform.db.read_session() as s:
        rows = s.execute(select(Model.name, Model.project_id).where(Model.archived_at.is_(None)))
        return {name: project for name, project in rows}
