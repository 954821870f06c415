"""Load local models for the worker: transformers folders, GGUF files (converted once), LoRA adapters,
and sentence-transformers folders for embeddings."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("podium.worker.loader")


@dataclass
class LoadedLM:
    """A causal language model ready to generate."""

    model: Any
    tokenizer: Any
    context_length: int
    eos_ids: list[int]
    dtype: str
    load_seconds: float


def _torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)


def convert_gguf(gguf_path: Path, cache_root: Path, sha256: str) -> Path:
    """Dequantize a GGUF file once into a safetensors folder keyed by its hash; later loads take a second."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = cache_root / sha256
    if (target / "config.json").exists() and list(target.glob("*.safetensors")):
        return target
    folder, name = str(gguf_path.parent), gguf_path.name
    log.info("converting %s to safetensors (once; about half a minute for a small model)", gguf_path.name)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    missing, unexpected = fresh.load_state_dict(gguf_model.state_dict(), strict=False)
    if [m for m in missing if "lm_head" not in m] or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing[:5]} unexpected={unexpected[:5]}")
    fresh.tie_weights()
    tmp = cache_root / f".{sha256}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if gguf_model.generation_config is not None:
        gguf_model.generation_config.save_pretrained(tmp)
    os.replace(tmp, target)
    log.info("converted in %.1fs", time.monotonic() - started)
    return target


def load_causal_lm(
    path: Path,
    *,
    fmt: str,
    sha256: str,
    cache_root: Path,
    dtype: str = "float32",
    adapter: Path | None = None,
    threads: int | None = None,
) -> LoadedLM:
    """Load a transformers model (from a folder, or a GGUF file via its converted cache), LoRA merged in."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    folder = convert_gguf(path, cache_root, sha256) if fmt == "gguf" else path
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=_torch_dtype(dtype))
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()  # type: ignore[no-untyped-call]  # int8 is applied by the engine (batch-invariant, calibrated), on fp32 weights
    eos: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    for candidate in (getattr(gen_cfg, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(candidate, int):
            eos.append(candidate)
        elif isinstance(candidate, list):
            eos.extend(int(c) for c in candidate)
    ctx = int(getattr(model.config, "max_position_embeddings", 0) or tokenizer.model_max_length or 2048)
    return LoadedLM(
        model=model,
        tokenizer=tokenizer,
        context_length=ctx,
        eos_ids=sorted(set(eos)),
        dtype=dtype,
        load_seconds=time.monotonic() - started,
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
