"""Files arriving over HTTP for an import: spooled to disk as they stream in (never held in memory), and
archives (a folder of documents, a saved Hugging Face dataset) unpacked safely."""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from podium.core.errors import InvalidInput

MAX_ARCHIVE_MEMBERS = 200_000
MAX_UNPACKED_BYTES = 16 * 1024 * 1024 * 1024


async def receive(chunks: AsyncIterator[bytes], target: Path) -> int:
    """Write a request body to `target` chunk by chunk; its size in bytes."""
    size = 0
    with open(target, "wb") as out:
        async for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
    if size == 0:
        raise InvalidInput("the request body is empty: send the file's bytes as the body", details={"field": "file"})
    return size


def unpack(archive: Path, folder: Path) -> Path:
    """Extract a tar archive (plain or compressed) into `folder`, refusing links, device files, paths out of
    the folder and archives over the size limits; returns the root of its content (the single top folder, if
    it has one)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            if len(members) > MAX_ARCHIVE_MEMBERS:
                raise InvalidInput(f"the archive has over {MAX_ARCHIVE_MEMBERS} entries", details={"field": "file"})
            if sum(m.size for m in members) > MAX_UNPACKED_BYTES:
                raise InvalidInput(f"the archive unpacks to over {MAX_UNPACKED_BYTES} bytes", details={"field": "file"})
            tar.extractall(folder, filter="data")  # nosec B202  # the `data` filter refuses links out, devices, absolute paths
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(
            f"a folder import takes a tar archive of the folder (tar -czf - DIR); this body is not one ({exc})",
            details={"field": "file"},
        ) from None
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder
