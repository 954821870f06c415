"""OpenAI's cl100k_base token ids read back into text, offline, for embeddings sent as token arrays.

Clients that send `input` as token ids to an OpenAI-compatible embeddings endpoint tokenise with tiktoken's
cl100k_base: langchain's `OpenAIEmbeddings` does so by default for any model name tiktoken does not know
(every local model), as the OpenAI cookbook does. Those ids mean nothing to a local model's own vocabulary
(MiniLM has 30,522 WordPiece tokens), so a local embedding model reads them as cl100k_base ids, turns them
back into the text the client had, and embeds that text with its own tokenizer, as LiteLLM's proxy does for
providers without token input. The result is the embedding of the text, whatever the client tokenised.

The vocabulary is tiktoken's own file, found where tiktoken caches it (`TIKTOKEN_CACHE_DIR`,
`DATA_GYM_CACHE_DIR`, or `<tmp>/data-gym-cache`, under tiktoken's cache name or as `cl100k_base.tiktoken`):
a client using tiktoken on the same machine has already put it there. It is never downloaded here (the server
may be air-gapped); it is checked against tiktoken's sha256 before use. Decoding needs no tiktoken package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
import threading
from pathlib import Path

NAME = "cl100k_base"
URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"  # tiktoken's cache key only
SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # tiktoken's expected hash
SPECIAL = {
    100257: b"<|endoftext|>",
    100258: b"<|fim_prefix|>",
    100259: b"<|fim_middle|>",
    100260: b"<|fim_suffix|>",
    100276: b"<|endofprompt|>",
}
SIZE = 100277  # ids 0..100276 (100256 and 100261..100275 are unassigned)
MAX_FILE = 8 * 1024 * 1024  # the real file is 1.7 MB


class VocabularyMissing(Exception):
    """The cl100k_base file is not where tiktoken caches it (or is not the real one)."""


def places() -> list[Path]:
    """Where the vocabulary file is looked for, in order (tiktoken's cache directories)."""
    folders = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR")]
    folders.append(str(Path(tempfile.gettempdir()) / "data-gym-cache"))
    cache_name = hashlib.sha1(URL.encode(), usedforsecurity=False).hexdigest()  # tiktoken's file name
    found: list[Path] = []
    for folder in folders:
        if folder:
            found += [Path(folder) / cache_name, Path(folder) / f"{NAME}.tiktoken"]
    return found


def _parse(data: bytes) -> list[bytes | None]:
    pieces: list[bytes | None] = [None] * SIZE
    for line in data.splitlines():
        if not line:
            continue
        token, rank = line.split()
        pieces[int(rank)] = base64.b64decode(token)
    for special, text in SPECIAL.items():
        pieces[special] = text
    return pieces


class Vocabulary:
    """cl100k_base ids to bytes, loaded once (callers load it off the event loop)."""

    def __init__(self) -> None:
        self._pieces: list[bytes | None] | None = None
        self._lock = threading.Lock()

    def load(self) -> list[bytes | None]:
        """The table of pieces; `VocabularyMissing` (saying where it looked) if no good file is found."""
        with self._lock:
            if self._pieces is None:
                self._pieces = self._read()
            return self._pieces

    @staticmethod
    def _read() -> list[bytes | None]:
        looked = places()
        for path in looked:
            try:
                if not path.is_file() or path.stat().st_size > MAX_FILE:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() != SHA256:
                continue  # a partial download, or not the file at all
            try:
                return _parse(data)
            except (ValueError, IndexError, binascii.Error):
                continue
        where = ", ".join(sorted({str(p.parent) for p in looked}))
        raise VocabularyMissing(
            f"token-id input is read as OpenAI {NAME} ids, and this server has no {NAME} vocabulary file"
            f" (looked in {where}; set TIKTOKEN_CACHE_DIR to a folder holding {NAME}.tiktoken);"
            " send the text instead (langchain: OpenAIEmbeddings(check_embedding_ctx_length=False))"
        )

    def decode(self, ids: list[int]) -> str:
        """The text of `ids` (all checked to be assigned cl100k_base ids), as tiktoken decodes it."""
        pieces = self.load()
        return b"".join(pieces[i] or b"" for i in ids).decode("utf-8", errors="replace")

    def unknown(self, ids: list[int]) -> int | None:
        """The index of the first id that is not a cl100k_base token, or None."""
        pieces = self.load()
        for n, i in enumerate(ids):
            if not 0 <= i < SIZE or pieces[i] is None:
                return n
        return None


VOCABULARY = Vocabulary()
