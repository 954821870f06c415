"""Model versions the platform makes itself: a fine-tune's adapter or merged weights (a folder the server
wrote, so the rules for paths users name do not apply), and a copy of another model's version under a new
name (same files, by content: nothing is stored twice), which is how a tuned model's `stable` alias can start
at its base's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.models import service
from podium.models.formats import inspect_source
from podium.models.store import MODELS


def register_folder(
    platform: Platform,
    actor: Actor,
    name: str,
    folder: Path,
    *,
    base: str | None = None,
    lineage: dict[str, Any] | None = None,
    message: str = "",
    description: str = "",
) -> service.VersionInfo:
    """Register a folder the platform produced (never a path a caller named) as a new version of `name`, in
    the caller's project; the same content again returns the version it already is."""
    actor.require("member", "register models")
    name = MODELS.check_name(name)
    inspected = inspect_source(folder)
    local, files, digest = service.hashed_files(inspected)
    base_version_id = None
    if base is not None:
        base_version_id = service.get_version(platform, actor, base).id
    elif inspected.format == "peft":
        raise InvalidInput(
            "an adapter needs the base model it applies to (base=name@version)", details={"field": "base"}
        )
    service.store_files(platform, local, files)
    full_lineage = dict(lineage or {})
    if base_version_id:
        full_lineage.setdefault("adapter_of" if inspected.format == "peft" else "derived_from", base_version_id)
    config = service.format_config(inspected)
    return service._insert_version(
        platform.db,
        actor,
        name=name,
        task=inspected.task or "chat",
        provider="local",
        description=description,
        builtin=False,
        source_uri=f"podium:{folder.name}",
        fmt=inspected.format,
        files=files,
        digest=digest,
        parameters=inspected.parameters,
        context_length=inspected.context_length,
        license=inspected.license,
        config=config,
        lineage=full_lineage,
        base_version_id=base_version_id,
        message=message,
    )


def register_copy(
    platform: Platform,
    actor: Actor,
    name: str,
    source: str,
    *,
    message: str = "",
    lineage: dict[str, Any] | None = None,
) -> service.VersionInfo:
    """A version of `name` with exactly the files of the version `source` names (a local model the caller
    sees); the same content again returns the version it already is."""
    actor.require("member", "register models")
    name = MODELS.check_name(name)
    original = service.get_version(platform, actor, source)
    if original.provider != "local":
        raise InvalidInput(f"{source} is a {original.provider} model; only local versions are copied")
    resolved = service.resolve(platform, f"{original.model}@{original.version}")
    return service._insert_version(
        platform.db,
        actor,
        name=name,
        task=original.task,
        provider="local",
        description="",
        builtin=False,
        source_uri=original.source_uri,
        fmt=original.format,
        files=[f.model_dump() for f in original.files],
        digest=original.sha256,
        parameters=original.parameters,
        context_length=original.context_length,
        license=original.license,
        config=dict(resolved.config),
        lineage={"copy_of": original.id, **(lineage or {})},
        base_version_id=original.base_version_id,
        message=message,
    )
