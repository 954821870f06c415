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


async def drain(chunks: AsyncIterator[bytes], limit: int) -> None:
    """Read and drop up to `limit` bytes of a refused upload, so that the answer is the last thing on the
    connection (a fuzzer saw uvicorn answer "Invalid HTTP request" when an early refusal left body bytes
    unread). A larger body is left unread and the client sees the connection close."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            return


def unpack(archive: Path, folder: Path) -> Path:
    """Extract a tar archive (plain or compressed) into `folder` entry by entry, refusing links out, device
    files, paths out of the folder (the `data` filter) and archives over the entry or size limits (counted as
    they are read, so a small archive of a million empty entries stops early); returns the root of its
    content (the single top folder, if it has one)."""
    entries = size = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                entries += 1
                size += member.size
                if entries > MAX_ARCHIVE_MEMBERS:
                    raise InvalidInput(f"the archive has over {MAX_ARCHIVE_MEMBERS} entries", details={"field": "file"})
                if size > MAX_UNPACKED_BYTES:
                    raise InvalidInput(
                        f"the archive unpacks to over {MAX_UNPACKED_BYTES} bytes", details={"field": "file"}
                    )
                tar.extract(member, folder, filter="data")  # nosec B202  # the `data` filter refuses links out, devices, absolute paths
                tar.members.clear()  # type: ignore[attr-defined]  # keep no list of every entry read
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise InvalidInput(
            f"a folder import takes a tar archive of the folder (tar -czf - DIR); this body is not one "
            f"({type(exc).__name__})",
            details={"field": "file"},
        ) from None
    tops = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.exists() else []
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else folder
