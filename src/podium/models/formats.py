"""Recognise model files on disk and read their shape: format, parameters, context length, license, task.

Supported: a GGUF file; a Hugging Face transformers folder (config.json + *.safetensors); a
sentence-transformers folder (modules.json); a PEFT adapter folder (adapter_config.json). Headers are
parsed and checked against file sizes, so a truncated or mislabelled file fails registration.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium.core.errors import InvalidInput
from podium.models.gguf_header import GGUFError, read_header

GGUF_MAGIC = b"GGUF"
_SKIP_NAMES = {".gitattributes", ".gitignore"}


@dataclass
class Inspected:
    """What a model source holds."""

    format: str  # gguf | hf | sentence-transformers | peft
    root: Path
    files: list[Path]
    task: str
    parameters: int | None = None
    context_length: int | None = None
    license: str | None = None
    architecture: str | None = None
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def relpath(self, path: Path) -> str:
        """A file's name inside the version."""
        return path.name if self.root.is_file() else str(path.relative_to(self.root))


def inspect_source(path: Path) -> Inspected:
    """Identify the model at `path` or raise `InvalidInput` saying what was expected."""
    if not path.exists():
        raise InvalidInput(f"model source {path} does not exist")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return _inspect_gguf(path, path)
        raise InvalidInput(f"{path} is not a model file Podium understands: expected a .gguf file or a model folder")
    if (path / "adapter_config.json").exists():
        return _inspect_peft(path)
    if (path / "modules.json").exists():
        return _inspect_sentence_transformers(path)
    if (path / "config.json").exists() and list(path.glob("*.safetensors")):
        return _inspect_hf(path)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return _inspect_gguf(ggufs[0], ggufs[0])
    raise InvalidInput(
        f"cannot tell the format of {path}: expected a .gguf file, or a folder with config.json and"
        " *.safetensors (transformers), modules.json (sentence-transformers) or adapter_config.json (PEFT)"
    )


def _folder_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name not in _SKIP_NAMES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and "__pycache__" not in p.parts
    )


def _inspect_gguf(path: Path, root: Path) -> Inspected:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise InvalidInput(f"{path} is named .gguf but is not a GGUF file (bad magic bytes {magic!r})")
    try:
        header = read_header(path)
    except GGUFError as exc:
        raise InvalidInput(f"{path} is not a readable GGUF file: {exc}") from None
    except OSError as exc:
        raise InvalidInput(f"{path} cannot be read: {exc.strerror}") from None
    fields = header.fields

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    arch = text("general.architecture")
    return Inspected(
        format="gguf",
        root=root,
        files=[path],
        task="chat" if "tokenizer.chat_template" in fields else "completion",
        parameters=header.parameters,
        context_length=_int(fields.get(f"{arch}.context_length")) if arch else None,
        license=text("general.license"),
        architecture=arch,
        extra={"name": text("general.name"), "file_type": _int(fields.get("general.file_type"))},
    )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def safetensors_parameters(path: Path) -> int:
    """Parameters in a safetensors file, from its header; raises if the header or sizes are wrong."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise InvalidInput(f"{path} is not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len <= 0 or header_len > min(size - 8, 100 * 1024 * 1024):
            raise InvalidInput(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(header_len))
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"{path} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise InvalidInput(f"{path} is not a safetensors file (header is not an object)")
    total = 0
    data_len = size - 8 - header_len
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            shape = info["shape"]
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"{path}: tensor {name!r} has no shape/offsets in its header") from None
        if end > data_len or start > end:
            raise InvalidInput(f"{path} is truncated: tensor {name!r} ends past the end of the file")
        n = 1
        for dim in shape:
            n *= int(dim)
        total += n
    return total


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} does not hold a JSON object")
    return data


def _license_from_readme(root: Path) -> str | None:
    readme = root / "README.md"
    if not readme.exists():
        return None
    text = readme.read_text(errors="replace")
    if text.startswith("---"):
        for line in text.split("---", 2)[1].splitlines():
            if line.strip().startswith("license:"):
                return line.split(":", 1)[1].strip() or None
    return None


def _inspect_hf(root: Path) -> Inspected:
    config = _read_json(root / "config.json")
    params = sum(safetensors_parameters(p) for p in root.glob("*.safetensors"))
    tok_cfg = root / "tokenizer_config.json"
    has_template = (root / "chat_template.jinja").exists() or (
        tok_cfg.exists() and "chat_template" in _read_json(tok_cfg)
    )
    archs = config.get("architectures") or []
    return Inspected(
        format="hf",
        root=root,
        files=_folder_files(root),
        task="chat" if has_template else "completion",
        parameters=params,
        context_length=_int(config.get("max_position_embeddings")),
        license=_license_from_readme(root),
        architecture=archs[0] if archs else config.get("model_type"),
    )


def _inspect_sentence_transformers(root: Path) -> Inspected:
    modules = json.loads((root / "modules.json").read_text())
    if not isinstance(modules, list):
        raise InvalidInput(f"{root / 'modules.json'} is not a sentence-transformers module list")
    params = sum(safetensors_parameters(p) for p in root.rglob("*.safetensors"))
    if params == 0:
        raise InvalidInput(f"{root} has no *.safetensors weights")
    st_cfg = root / "sentence_bert_config.json"
    ctx = _int(_read_json(st_cfg).get("max_seq_length")) if st_cfg.exists() else None
    dims = None
    pooling = root / "1_Pooling" / "config.json"
    if pooling.exists():
        dims = _int(_read_json(pooling).get("word_embedding_dimension"))
    return Inspected(
        format="sentence-transformers",
        root=root,
        files=_folder_files(root),
        task="embedding",
        parameters=params,
        context_length=ctx,
        license=_license_from_readme(root),
        architecture="sentence-transformers",
        extra={"dimensions": dims},
    )


def _inspect_peft(root: Path) -> Inspected:
    cfg = _read_json(root / "adapter_config.json")
    weights = list(root.glob("*.safetensors"))
    if not weights:
        raise InvalidInput(f"{root} has adapter_config.json but no adapter *.safetensors")
    return Inspected(
        format="peft",
        root=root,
        files=_folder_files(root),
        task="chat",
        parameters=sum(safetensors_parameters(p) for p in weights),
        base_model=cfg.get("base_model_name_or_path"),
        architecture=cfg.get("peft_type"),
        extra={"r": cfg.get("r"), "target_modules": cfg.get("target_modules")},
    )
