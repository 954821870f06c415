"""Content-addressed artifact store: blobs named by their sha256, on local disk or any fsspec URL.

Identical content is stored once. Writes go to a temporary name and are renamed into place, so a
blob appears whole or not at all. Every read re-hashes the content; a mismatch raises
`CorruptArtifact` naming the hash instead of returning bad data.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec

from podium.core.errors import CorruptArtifact, InvalidInput, NotFound

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


def _check_hash(digest: str) -> str:
    digest = digest.removeprefix("sha256:")
    if not _HASH_RE.match(digest):
        raise InvalidInput(f"{digest!r} is not a sha256 hex digest", details={"field": "sha256"})
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's content, read in chunks (the name a blob of it has in the store)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class BlobStore:
    """Blobs under `root` (a path or fsspec URL), laid out as `ab/cd/abcd…`."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)
        self.local = type(self.fs).__name__ == "LocalFileSystem"
        if self.local:
            Path(self.base).mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> str:
        """Where the blob with this hash lives inside the store's filesystem."""
        digest = _check_hash(digest)
        return f"{self.base}/{digest[:2]}/{digest[2:4]}/{digest}"

    def exists(self, digest: str) -> bool:
        """True if a blob with this hash is stored."""
        return bool(self.fs.exists(self.path(digest)))

    def put(self, data: bytes) -> str:
        """Store bytes; returns their sha256 (nothing written if already stored)."""
        digest = hashlib.sha256(data).hexdigest()
        if self.exists(digest):
            return digest
        target = self.path(digest)
        if self.local:
            self._write_local(target, [data])
        else:
            self.fs.pipe_file(target, data)
        return digest

    def put_file(self, source: str | os.PathLike[str] | IO[bytes]) -> str:
        """Store a file (path or binary stream) without holding it whole in memory."""
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as stream:
                return self._put_stream(stream)
        return self._put_stream(source)

    def _put_stream(self, stream: IO[bytes]) -> str:
        incoming = Path(self.base) / ".incoming" if self.local else None
        if incoming is not None:
            incoming.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=incoming, prefix="blob-")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as f:
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            digest = h.hexdigest()
            if not self.exists(digest):
                target = self.path(digest)
                if self.local:
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, target)
                else:
                    self.fs.put_file(tmp, target)
            return digest
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _write_local(self, target: str, chunks: Any) -> None:
        folder = Path(target).parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get(self, digest: str) -> bytes:
        """The blob's bytes, verified against its hash."""
        digest = _check_hash(digest)
        try:
            data: bytes = self.fs.cat_file(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"artifact sha256:{digest} not found in {self.root}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptArtifact(
                f"artifact sha256:{digest} is corrupt: its content no longer matches its hash",
                details={"sha256": digest},
            )
        return data

    def iter_chunks(self, digest: str) -> Iterator[bytes]:
        """Stream a blob; raises `CorruptArtifact` after the last chunk if the hash does not match."""
        digest = _check_hash(digest)
        h = hashlib.sha256()
        try:
            f = self.fs.open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"artifact sha256:{digest} not found in {self.root}") from None
        with f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                yield chunk
        if h.hexdigest() != digest:
            raise CorruptArtifact(f"artifact sha256:{digest} is corrupt", details={"sha256": digest})

    def verify(self, digest: str) -> bool:
        """True if the stored blob matches its hash."""
        try:
            for _ in self.iter_chunks(digest):
                pass
        except CorruptArtifact:
            return False
        return True

    def size(self, digest: str) -> int:
        """Stored size in bytes."""
        try:
            return int(self.fs.size(self.path(digest)))
        except FileNotFoundError:
            raise NotFound(f"artifact sha256:{digest} not found") from None

    def delete(self, digest: str) -> None:
        """Remove a blob (callers make sure nothing refers to it)."""
        path = self.path(digest)
        if self.fs.exists(path):
            self.fs.rm_file(path)

    def list(self) -> Iterator[str]:
        """Every stored hash."""
        if not self.fs.exists(self.base):
            return
        for path in self.fs.find(self.base):
            name = str(path).rsplit("/", 1)[-1]
            if _HASH_RE.match(name):
                yield name
