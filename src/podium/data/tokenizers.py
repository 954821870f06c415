"""Tokenizers of registered models, for the steps that count, filter or chunk by tokens.

A model reference (`minilm`, `smollm2@prod`) resolves through the models service (so the caller must see
the model), its files are materialised from the artifact store, and the tokenizer loads from them: the fast
`tokenizers` library when the folder carries `tokenizer.json`, transformers otherwise (a GGUF file carries
its tokenizer too).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data.steps.base import Tokenizer
from podium.models import service as models


class FastTokenizer:
    """A `tokenizers.Tokenizer` as the steps use it."""

    def __init__(self, path: Path):
        import tokenizers

        self._tok = tokenizers.Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """Text of some token ids."""
        return str(self._tok.decode(ids))


class HFTokenizer:
    """A transformers tokenizer as the steps use it."""

    def __init__(self, tok: Any):
        self._tok = tok

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        return [list(ids) for ids in self._tok(texts, add_special_tokens=False)["input_ids"]]

    def decode(self, ids: list[int]) -> str:
        """Text of some token ids."""
        return str(self._tok.decode(ids))


def loader(platform: Platform, actor: Actor) -> Callable[[str], Tokenizer]:
    """A function loading (once each) the tokenizer of a model reference the actor may read."""
    cache: dict[str, Tokenizer] = {}

    def load(ref: str) -> Tokenizer:
        if ref in cache:
            return cache[ref]
        version = models.get_version(platform, actor, ref)
        if not version.files:
            raise InvalidInput(
                f"model {ref!r} is a remote model: its tokenizer is not here; name a local model",
                details={"field": "tokenizer"},
            )
        path = models.materialize(platform.blobs, version, platform.settings.effective_cache_dir / "materialized")
        tok: Tokenizer
        if path.is_dir() and (path / "tokenizer.json").exists():
            tok = FastTokenizer(path / "tokenizer.json")
        else:
            from transformers import AutoTokenizer

            if path.is_file():
                folder, gguf = str(path.parent), path.name
                loaded = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)  # nosec B615  # a local folder (no hub download)
            else:
                loaded = AutoTokenizer.from_pretrained(str(path), local_files_only=True)  # nosec B615  # a local folder (no hub download)
            tok = HFTokenizer(loaded)
        cache[ref] = tok
        return tok

    return load
