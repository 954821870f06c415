"""Load local models for the worker: transformers folders, GGUF files (converted once per user, see
`derived`), LoRA adapters, and sentence-transformers folders for embeddings."""

from __future__ import annotations

import copy
import hashlib
import logging
import time
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
) -> LoadedLM:
    """Load a transformers model (from a folder, or a GGUF file via its converted cache), LoRA merged in.

    `cache_root` is the derived-files cache (or a folder for one); `sha256` and `adapter_sha256` name the
    weights by content, so derived files are shared by every home that loads the same weights.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    folder = convert_gguf(path, cache_root, sha256) if fmt == "gguf" else path
    loading = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)  # nosec B615  # a local folder (no hub download)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=_torch_dtype(dtype), local_files_only=True)  # nosec B615  # a local folder (no hub download)
    weights_key = sha256
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        weights_key = hashlib.sha256(f"{sha256}+{adapter_sha256}".encode()).hexdigest() if adapter_sha256 else ""
    model.eval()  # type: ignore[no-untyped-call]  # int8 is applied by the engine (batch-invariant, calibrated), on fp32 weights
    eos: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    for candidate in (getattr(gen_cfg, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(candidate, int):
            eos.append(candidate)
        elif isinstance(candidate, list):
            eos.extend(int(c) for c in candidate)
    ctx = int(getattr(model.config, "max_position_embeddings", 0) or tokenizer.model_max_length or 2048)
    log.info("loaded %s in %.1fs", folder, time.monotonic() - loading)
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
