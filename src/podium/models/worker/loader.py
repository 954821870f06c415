"""Load local models for the worker: transformers folders, GGUF files (converted once per user, see
`derived`), LoRA adapters, and sentence-transformers folders for embeddings.

For serving, a model the fast path runs (`fastllama`) is not built as a transformers module at all: its
config is read from config.json and its weights are mapped from the safetensors files, read only where
used (with int8 weights from the cache, the fp32 projections are never read). That skips importing the
transformers modelling code and constructing the module, about half of a warm start.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.models.worker.derived import DerivedCache

log = logging.getLogger("podium.worker.loader")
CONVERTED = "converted"  # the derived-cache kind of GGUF files converted to safetensors


@dataclass
class LoadedLM:
    """A causal language model ready to generate."""

    model: Any
    tokenizer: Any
    context_length: int
    eos_ids: list[int]
    dtype: str
    load_seconds: float
    weights_key: str = ""  # what the weights are, by content (keys derived files such as int8 weights); "" unknown


class ModelConfig:
    """A model folder's config.json as attributes (what the fast path and the worker read), without
    transformers; a key the file lacks is an AttributeError, so `getattr(cfg, key, default)` works."""

    def __init__(self, data: dict[str, Any]):
        self.__dict__.update(data)

    def __repr__(self) -> str:
        return f"ModelConfig({self.__dict__!r})"


class SafetensorsWeights(Mapping[str, Any]):
    """Tensors by name from a folder's safetensors files, memory-mapped: a tensor's bytes are read from
    disk only when touched. Floating tensors come in `dtype`, as transformers would load them."""

    def __init__(self, files: list[Path], dtype: Any):
        from safetensors import safe_open

        self.dtype = dtype
        self._where: dict[str, Any] = {}
        self._handles = [safe_open(str(f), framework="pt") for f in files]  # kept open: tensors map into them
        for handle in self._handles:
            for key in handle.keys():  # type: ignore[no-untyped-call]  # noqa: SIM118 - a safetensors handle, not a dict
                self._where[key] = handle

    def __getitem__(self, key: str) -> Any:
        tensor = self._where[key].get_tensor(key)
        if tensor.is_floating_point() and tensor.dtype != self.dtype:
            tensor = tensor.to(self.dtype)
        return tensor

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


class SafetensorsModel:
    """A model folder for the fast path only: config and lazily read weights, no transformers module.
    `module()` builds the transformers module (the fallback engine, `generate`) if it is ever needed."""

    def __init__(self, folder: Path, config: ModelConfig, weights: SafetensorsWeights, dtype: str):
        self.name_or_path = str(folder)
        self.config = config
        self.weights = weights
        self.dtype = dtype

    def module(self) -> Any:
        """The transformers module for the same folder and dtype."""
        from transformers import AutoModelForCausalLM

        folder, dtype = self.name_or_path, _torch_dtype(self.dtype)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)  # nosec B615  # a local folder (no hub download)
        return model.eval()  # type: ignore[no-untyped-call]


def _safetensors_model(folder: Path, dtype: str, max_len_hint: int | None = None) -> SafetensorsModel | None:
    """The folder as a `SafetensorsModel` if the fast path can run it from its safetensors, else None."""
    from podium.models.worker.fastllama import unsupported

    try:
        config = ModelConfig(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        log.info("loading %s through transformers: config.json unreadable (%s)", folder, exc)
        return None
    index = folder / "model.safetensors.index.json"
    try:
        if index.exists():
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            files = [folder / n for n in names]
        else:
            files = [folder / "model.safetensors"] if (folder / "model.safetensors").exists() else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("loading %s through transformers: unreadable safetensors index (%s)", folder, exc)
        return None
    if not files or not all(f.exists() for f in files):
        return None
    reason = unsupported(config, max_len_hint or int(getattr(config, "max_position_embeddings", 0) or 2048))
    if reason is not None:
        log.info("loading %s through transformers: %s", folder, reason)
        return None
    weights = SafetensorsWeights(files, _torch_dtype(dtype))
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if "model.embed_tokens.weight" not in weights or ("lm_head.weight" not in weights and not tied):
        log.info("loading %s through transformers: its tensors are not named as the fast path expects", folder)
        return None
    return SafetensorsModel(folder, config, weights, dtype)


def _load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer. A tokenizer saved as `TokenizersBackend` (as every converted GGUF is) loads
    through that class directly, which is what AutoTokenizer picks for it after reading the model's
    config through transformers' model registry (seconds of imports); anything else through AutoTokenizer."""
    try:
        declared = json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        declared = None
    if declared == "TokenizersBackend" and (folder / "tokenizer.json").exists():
        from transformers import TokenizersBackend

        return TokenizersBackend.from_pretrained(str(folder), local_files_only=True)  # nosec B615  # a local folder (no hub download)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)  # nosec B615  # a local folder (no hub download)


def _generation_eos(folder: Path, config: ModelConfig) -> Any:
    """The end-of-sequence ids transformers' generation config would hold for this folder."""
    try:
        return json.loads((folder / "generation_config.json").read_text()).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return getattr(config, "eos_token_id", None)


def _torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)


def _as_cache(cache: DerivedCache | Path) -> DerivedCache:
    return cache if isinstance(cache, DerivedCache) else DerivedCache(cache)


def convert_gguf(gguf_path: Path, cache: DerivedCache | Path, sha256: str) -> Path:
    """The GGUF file dequantized into a transformers safetensors folder, made once per user and file.

    The folder lives in the per-user cache under `converted/<sha256 of the GGUF>` (see `derived`), so every
    home of the user and every later start reuses it: loading it takes about a second, converting half a
    minute or more. `cache` may also be a plain folder to keep the entry in.
    """
    made: list[Any] = []  # the dequantized model, kept if the first cache root cannot take it

    def build(folder: Path) -> None:
        if not made:
            made.extend(_dequantize(gguf_path))
        model, tokenizer, generation_config = made
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if generation_config is not None:
            generation_config.save_pretrained(folder)

    entry = _as_cache(cache).get_or_build(CONVERTED, sha256, build, what=f"converted {gguf_path.name}")
    return entry.path


def _dequantize(gguf_path: Path) -> tuple[Any, Any, Any]:
    """(fp32 transformers model, tokenizer, generation config) from a GGUF file, ready to save."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    log.info("converting %s to safetensors (once per user; about half a minute for a small model)", name)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)  # nosec B615  # a local folder (no hub download)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, local_files_only=True
    )  # nosec B615  # a local folder (no hub download)
    config = copy.deepcopy(gguf_model.config)  # the file's config, without parsing the GGUF a third time
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    # a model loaded from GGUF refuses save_pretrained ("quantized with gguf"): move its weights into a fresh one
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    missing, unexpected = fresh.load_state_dict(gguf_model.state_dict(), strict=False)
    if [m for m in missing if "lm_head" not in m] or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing[:5]} unexpected={unexpected[:5]}")
    fresh.tie_weights()
    log.info("converted in %.1fs", time.monotonic() - started)
    return fresh, tokenizer, gguf_model.generation_config


def load_causal_lm(
    path: Path,
    *,
    fmt: str,
    sha256: str,
    cache_root: DerivedCache | Path,
    dtype: str = "float32",
    adapter: Path | None = None,
    adapter_sha256: str | None = None,
    threads: int | None = None,
    module: bool = True,
) -> LoadedLM:
    """Load a transformers model (from a folder, or a GGUF file via its converted cache), LoRA merged in.

    `cache_root` is the derived-files cache (or a folder for one); `sha256` and `adapter_sha256` name the
    weights by content, so derived files are shared by every home that loads the same weights. With
    `module=False` (serving), a model the fast path runs without an adapter is loaded as a
    `SafetensorsModel` (no transformers module; its weights read lazily); others are loaded as modules.
    """
    import torch

    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    folder = convert_gguf(path, cache_root, sha256) if fmt == "gguf" else path
    loading = time.monotonic()
    model: Any = None
    tokenizer: Any = None
    if not module and adapter is None:
        model = _safetensors_model(folder, dtype)
        if model is not None:
            tokenizer = _load_tokenizer(folder)
    if model is None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)  # nosec B615  # a local folder (no hub download)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=_torch_dtype(dtype), local_files_only=True)  # nosec B615  # a local folder (no hub download)
    weights_key = sha256
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        weights_key = hashlib.sha256(f"{sha256}+{adapter_sha256}".encode()).hexdigest() if adapter_sha256 else ""
    eos: list[int] = []
    if isinstance(model, SafetensorsModel):
        generation_eos = _generation_eos(folder, model.config)
    else:
        model.eval()  # int8 is applied by the engine (batch-invariant, calibrated), on fp32 weights
        generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for candidate in (generation_eos, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            eos.append(candidate)
        elif isinstance(candidate, list):
            eos.extend(int(c) for c in candidate)
    ctx = int(getattr(model.config, "max_position_embeddings", 0) or tokenizer.model_max_length or 2048)
    how = "mapped" if isinstance(model, SafetensorsModel) else "loaded"
    log.info("loaded %s in %.1fs (%s)", folder, time.monotonic() - loading, how)
    return LoadedLM(
        model=model,
        tokenizer=tokenizer,
        context_length=ctx,
        eos_ids=sorted(set(eos)),
        dtype=dtype,
        load_seconds=time.monotonic() - started,
        weights_key=weights_key,
    )


@dataclass
class LoadedEmbedder:
    """A sentence-transformers model."""

    model: Any
    dimensions: int
    max_tokens: int
    load_seconds: float


def load_embedder(path: Path, threads: int | None = None) -> LoadedEmbedder:
    """Load a sentence-transformers folder on the CPU (or the GPU if there is one)."""
    import torch
    from sentence_transformers import SentenceTransformer

    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(str(path), device=device)
    dims = int(model.get_sentence_embedding_dimension() or 0)
    return LoadedEmbedder(
        model=model,
        dimensions=dims,
        max_tokens=int(model.max_seq_length or 512),
        load_seconds=time.monotonic() - started,
    )
