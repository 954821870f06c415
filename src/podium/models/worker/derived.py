"""A per-user cache of files derived from model weights (GGUF converted to safetensors, int8 weights),
shared by every Podium home of the user, so a new home or a CI run does not redo minutes of work.

Layout: `<root>/<kind>/<key>/` where the key is content-derived (the source file's sha256, or a hash of
everything the result depends on). An entry appears whole or not at all: it is built in a temporary
folder beside it, under an exclusive lock (so two workers deriving the same thing at once do the work
once), and renamed into place. Each entry carries `podium-manifest.json` listing its files with size,
sha256 and mtime. Reuse checks that every listed file is there with its size, and re-hashes any file
whose mtime changed since it was written (a copy, an edit); a missing or unreadable manifest, a missing
file, a size or hash mismatch makes the entry damaged, and it is rebuilt. If the root cannot be written
(read-only, full, not a folder), the cache falls back to the home's own cache folder with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from podium.core.blobs import file_sha256

log = logging.getLogger("podium.worker.derived")

MANIFEST = "podium-manifest.json"
FORMAT = 1
# errors while building that mean "this disk cannot take the files", not a failure of the work itself
_UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_NAME = re.compile(r"[A-Za-z0-9][\w-]*")  # kinds and keys: one plain path component each


class CacheUnwritable(Exception):
    """The cache root cannot hold a new entry (read-only, full, not a folder)."""


@dataclass(frozen=True)
class Entry:
    """A verified cache entry and how it was obtained: `built` here, or reused (`waited`: another process
    built it while this one waited for the lock)."""

    path: Path
    built: bool
    waited: bool = False


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, kind: str, key: str) -> None:
    """Record every file of a finished entry (size, sha256, mtime), flushing them to disk first."""
    files: dict[str, dict[str, Any]] = {}
    for path in _files(folder):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        st = path.stat()
        files[str(path.relative_to(folder))] = {
            "size": st.st_size,
            "sha256": file_sha256(path),
            "mtime_ns": st.st_mtime_ns,
        }
    body = {"format": FORMAT, "kind": kind, "key": key, "created": datetime.now(UTC).isoformat(), "files": files}
    _write_json(folder / MANIFEST, body)


def _write_json(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(body, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check(folder: Path, kind: str, key: str) -> str | None:
    """Why the entry is not usable (a short reason), or None if it is complete and intact."""
    if not folder.is_dir():
        return "absent"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT or manifest.get("kind") != kind or manifest.get("key") != key:
            return "its manifest is for another entry or format"
        if not isinstance(files, dict) or not files:
            return "its manifest lists no files"
    except FileNotFoundError:
        return "no manifest (an interrupted or foreign write)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest ({exc})"
    refreshed = False
    for name, info in files.items():
        if not isinstance(info, dict) or not {"size", "sha256", "mtime_ns"} <= info.keys():
            return f"unreadable manifest (entry {name!r})"
        path = folder / name
        try:
            st = path.stat()
        except OSError:
            return f"{name} is missing"
        if st.st_size != info["size"]:
            return f"{name} has {st.st_size} bytes, {info['size']} were written"
        if st.st_mtime_ns != info["mtime_ns"]:  # touched since it was written: trust only its hash
            if file_sha256(path) != info["sha256"]:
                return f"{name} does not match its sha256"
            info["mtime_ns"] = st.st_mtime_ns
            refreshed = True
    if refreshed:  # a copied cache: remember the new mtimes so the next start does not hash again
        with contextlib.suppress(OSError):
            _write_json(folder / MANIFEST, manifest)
    return None


def _lock(fd: IO[bytes], what: str) -> bool:
    """Take an exclusive lock on an open file (the kernel drops it when the file closes or the process
    dies, so a crash leaves no stale lock); returns whether another process held it first."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        log.info("another process is building %s; waiting for it", what)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True


class DerivedCache:
    """Content-keyed folders of derived model files, with a fallback root for when the first is unwritable."""

    def __init__(self, root: Path, fallback: Path | None = None):
        self.root = root
        self.fallback = fallback if fallback is not None and fallback != root else None

    def __repr__(self) -> str:
        return f"DerivedCache({str(self.root)!r}, fallback={str(self.fallback) if self.fallback else None!r})"

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], None], what: str = "") -> Entry:
        """The entry `<kind>/<key>`: reused if complete, else made by `build(empty_folder)` once.

        `build` fills the folder it is given; the folder is renamed into place only after it returns and
        its manifest is written. If the root cannot take it, the same happens in the fallback root.
        """
        for part in (kind, key):
            if not _NAME.fullmatch(part):
                raise ValueError(f"not a cache entry name: {part!r}")
        what = what or f"{kind} {key[:12]}"
        roots = self._roots()
        for root in roots:  # a complete entry anywhere wins, before any lock or write
            folder = root / kind / key
            if check(folder, kind, key) is None:
                log.info("reusing %s from %s", what, folder)
                return Entry(folder, built=False)
        failure: CacheUnwritable | None = None
        for root in roots:
            try:
                return self._build_in(root, kind, key, build, what)
            except CacheUnwritable as exc:
                failure = exc
                if root is not roots[-1]:
                    log.warning(
                        "%s; deriving %s into %s instead (point model_cache_dir at a writable folder to share it"
                        " between homes)",
                        exc,
                        what,
                        roots[-1] / kind,
                    )
        assert failure is not None
        raise failure

    def _roots(self) -> list[Path]:
        return [self.root] + ([self.fallback] if self.fallback else [])

    def _build_in(self, root: Path, kind: str, key: str, build: Callable[[Path], None], what: str) -> Entry:
        parent = root / kind
        try:
            parent.mkdir(parents=True, exist_ok=True)
            lock_file = open(parent / f".{key}.lock", "ab")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise CacheUnwritable(f"cannot write the model cache {root} ({exc.strerror or exc})") from exc
        with lock_file:
            waited = _lock(lock_file, what)
            folder = parent / key
            problem = check(folder, kind, key)
            if problem is None:
                log.info("reusing %s from %s (built by another process)", what, folder)
                return Entry(folder, built=False, waited=waited)
            if problem != "absent":
                log.warning("the cached %s in %s is damaged: %s; rebuilding it", what, folder, problem)
                self._discard(folder)
            for stale in parent.glob(f".{key}.tmp-*"):  # left by a build that died; the lock says none is running
                shutil.rmtree(stale, ignore_errors=True)
            tmp = parent / f".{key}.tmp-{os.getpid()}"
            try:
                tmp.mkdir()
                build(tmp)
                write_manifest(tmp, kind, key)
                os.rename(tmp, folder)
                _fsync_dir(parent)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                code = _disk_errno(exc)
                if code is not None:
                    raise CacheUnwritable(f"cannot write the model cache {root} ({os.strerror(code)})") from exc
                raise
            return Entry(folder, built=True, waited=waited)

    @staticmethod
    def _discard(folder: Path) -> None:
        """Move a damaged entry out of the way (a rename, so no reader sees it half deleted), then delete it."""
        trash = folder.with_name(f".{folder.name}.trash-{os.getpid()}")
        shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(folder, trash)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            return
        shutil.rmtree(trash, ignore_errors=True)


_RUST_IO_ERROR = re.compile(r"\(os error (\d+)\)")


def _disk_errno(exc: BaseException) -> int | None:
    """The errno if `exc` (or what caused it) says the disk cannot take the files. Writers in Rust
    (safetensors, tokenizers) report I/O errors as their own exceptions ending in `(os error 28)`."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in _UNWRITABLE:
            return seen.errno
        m = _RUST_IO_ERROR.search(str(seen))
        if m and int(m.group(1)) in _UNWRITABLE:
            return int(m.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
