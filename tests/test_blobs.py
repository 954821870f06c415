"""The content-addressed artifact store: dedup, verification on read, fsspec backends, the verify job."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from podium.core.blobs import BlobStore
from podium.core.errors import CorruptArtifact, InvalidInput, NotFound


def test_put_get_dedup(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "a"))
    data = b"hello podium" * 1000
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data) == digest
    files = [p for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert len(files) == 1
    assert files[0].name == digest
    assert files[0].relative_to(tmp_path / "a").parts[:2] == (digest[:2], digest[2:4])
    assert store.get(digest) == data
    assert store.get("sha256:" + digest) == data
    assert list(store.list()) == [digest]
    assert store.size(digest) == len(data)


def test_put_file_streams_and_dedups(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "a"))
    src = tmp_path / "big.bin"
    payload = os.urandom(3 * 1024 * 1024 + 7)
    src.write_bytes(payload)
    digest = store.put_file(src)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert store.put_file(io.BytesIO(payload)) == digest
    assert b"".join(store.iter_chunks(digest)) == payload
    assert not list((tmp_path / "a" / ".incoming").iterdir())


def test_corruption_is_an_error_naming_the_hash(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "a"))
    digest = store.put(b"original content")
    Path(store.path(digest)).write_bytes(b"tampered content")
    with pytest.raises(CorruptArtifact) as err:
        store.get(digest)
    assert digest in err.value.message
    with pytest.raises(CorruptArtifact):
        b"".join(store.iter_chunks(digest))
    assert store.verify(digest) is False


def test_missing_and_malformed(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "a"))
    with pytest.raises(NotFound, match="0" * 64):
        store.get("0" * 64)
    with pytest.raises(InvalidInput, match="not a sha256"):
        store.get("../../etc/passwd")


def test_fsspec_memory_backend() -> None:
    store = BlobStore("memory://podium-test-artifacts")
    digest = store.put(b"remote bytes")
    assert store.exists(digest)
    assert store.get(digest) == b"remote bytes"
    d2 = store.put_file(io.BytesIO(b"streamed remote"))
    assert store.get(d2) == b"streamed remote"
    assert sorted(store.list()) == sorted([digest, d2])
    store.fs.pipe_file(store.path(digest), b"bit rot")
    with pytest.raises(CorruptArtifact):
        store.get(digest)
    store.delete(d2)
    assert not store.exists(d2)
