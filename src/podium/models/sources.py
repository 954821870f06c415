"""Where model files come from: a local path, an installed pip package, or the Hugging Face hub."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from podium.core.errors import InvalidInput, NotFound

_HUB_ID = re.compile(r"^(hf:|hf://)?[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass(frozen=True)
class LocatedSource:
    """A source resolved to files on this machine, and the URI recorded for lineage."""

    path: Path
    uri: str


def locate(
    source: str, *, download_dir: Path | None = None, paths: Callable[[Path], None] | None = None
) -> LocatedSource:
    """Resolve `source`: `pip:PACKAGE[#path]`, a path on this machine, or a hub id (`org/name[@revision]`).

    Paths are taken only with `paths`, which is called with the path before anything looks at it (it
    raises if the caller may not use it): without it, nothing about the server's files is revealed."""
    source = source.strip()
    if source.startswith("pip:"):
        return locate_pip(source[4:])
    if paths is None:
        if _HUB_ID.match(source) and not source.startswith(("/", ".", "~", "file:")):
            return download_from_hub(source, download_dir)
        raise InvalidInput(
            f"model source {source!r} is neither `pip:PACKAGE` nor a Hugging Face id (org/name); paths on the"
            " server are for server admins",
            details={"field": "source"},
        )
    if source.startswith("file://"):
        source = source[7:]
    path = Path(source).expanduser()
    paths(path)
    if path.exists():
        return LocatedSource(path.resolve(), f"file://{path.resolve()}")
    if _HUB_ID.match(source):
        return download_from_hub(source, download_dir)
    raise InvalidInput(
        f"model source {source!r} is neither an existing path, `pip:PACKAGE`, nor a Hugging Face id (org/name)"
    )


def locate_pip(spec: str) -> LocatedSource:
    """A model shipped inside an installed distribution: the single GGUF file or model folder it carries."""
    name, _, inner = spec.partition("#")
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise NotFound(f"package {name!r} is not installed; `pip install {name}` first") from None
    files = [str(f) for f in (dist.files or [])]
    base = Path(str(dist.locate_file("")))
    uri_base = f"pip:{dist.metadata['Name']}=={dist.version}"
    if inner:
        target = base / inner
        if not target.exists():
            raise NotFound(f"{inner} is not inside package {name}")
        return LocatedSource(target, f"{uri_base}#{inner}")
    ggufs = [f for f in files if f.endswith(".gguf")]
    if len(ggufs) == 1:
        return LocatedSource(base / ggufs[0], f"{uri_base}#{ggufs[0]}")
    markers = ("modules.json", "config.json", "adapter_config.json")
    folders = sorted({os.path.dirname(f) for f in files if os.path.basename(f) in markers})
    # the outermost folder holding a marker is the model's root
    roots = [f for f in folders if not any(f != o and f.startswith(o + "/") for o in folders)]
    if len(roots) == 1:
        return LocatedSource(base / roots[0], f"{uri_base}#{roots[0]}")
    raise InvalidInput(
        f"package {name} carries {len(ggufs)} GGUF files and {len(roots)} model folders;"
        " name one with pip:{name}#path/inside/package"
    )


def download_from_hub(source: str, download_dir: Path | None) -> LocatedSource:
    """Download a snapshot from the Hugging Face hub (needs internet; honours HF_ENDPOINT and HF_TOKEN)."""
    repo = source.removeprefix("hf://").removeprefix("hf:")
    repo_id, _, revision = repo.partition("@")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover
        raise InvalidInput("pulling from the hub needs huggingface_hub: pip install 'podium[local]'") from None
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision or None,
            cache_dir=str(download_dir) if download_dir else None,
            allow_patterns=[
                "*.json",
                "*.safetensors",
                "*.gguf",
                "*.txt",
                "*.model",
                "*.jinja",
                "*.md",
                "1_Pooling/*",
            ],
        )
    except RepositoryNotFoundError:
        raise NotFound(f"Hugging Face repository {repo_id!r} not found (or private: set HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise InvalidInput(
            f"cannot download {repo_id} from the Hugging Face hub: no network access (HF_HUB_OFFLINE or offline)"
        ) from None
    except HfHubHTTPError as exc:
        raise InvalidInput(f"Hugging Face hub refused {repo_id}: {exc}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot download {repo_id} from the Hugging Face hub: {exc}") from None
    uri = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    return LocatedSource(Path(folder), uri)
