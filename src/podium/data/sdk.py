"""The datasets SDK: `podium.data.get("support-tickets@train-v3").to_pandas()`.

A version is immutable, so its Parquet file is downloaded once into a local cache named by its content
hash (checked on arrival) and read from there afterwards.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.core.blobs import file_sha256
from podium.core.client import Client
from podium.core.errors import CorruptArtifact, InvalidInput


def _cache_dir() -> Path:
    root = os.environ.get("PODIUM_DATA_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "podium" / "datasets"


def _split(ref: str) -> tuple[str, str]:
    name, _, tag = ref.partition("@")
    if not name:
        raise InvalidInput(f"dataset reference {ref!r} is not `name` or `name@version`", details={"field": "ref"})
    return name, tag or "latest"


@dataclass(frozen=True)
class DatasetVersion:
    """One version of a dataset: its description (`info`) and its rows, read from a local Parquet copy."""

    info: dict[str, Any]
    path: Path

    @property
    def ref(self) -> str:
        """`name@version`."""
        return f"{self.info['dataset']}@{self.info['version']}"

    def to_arrow(self) -> Any:
        """The rows as a `pyarrow.Table`."""
        import pyarrow.parquet as pq

        return pq.read_table(self.path)

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs `pandas`, in `podium[data]`)."""
        return self.to_arrow().to_pandas()

    def rows(self, batch_rows: int = 5000) -> Iterator[dict[str, Any]]:
        """The rows as dicts, streamed."""
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()

    def to_hf(self, folder: str | Path) -> Path:
        """Save as a Hugging Face dataset folder (`datasets.load_from_disk`); a `split` column makes a
        `DatasetDict` (needs `datasets`, in `podium[data]`)."""
        from podium.data.formats import write_hf

        return write_hf(self.path, Path(folder))

    def __len__(self) -> int:
        return int(self.info["row_count"])


def get(
    ref: str, *, url: str | None = None, api_key: str | None = None, cache_dir: Path | None = None
) -> DatasetVersion:
    """A dataset version by reference (`name`, `name@3`, `name@label`), its rows cached locally."""
    name, tag = _split(ref)
    with Client(url, api_key, timeout=600.0) as c:
        info = c.get(f"/api/datasets/{name}/versions/{tag}")
        folder = cache_dir or _cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{info['content_hash']}.parquet"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-")
            try:
                with os.fdopen(fd, "wb") as out:
                    c.download(f"/api/datasets/{name}/versions/{info['id']}/download", out, format="parquet")
                if file_sha256(Path(tmp)) != info["content_hash"]:
                    raise CorruptArtifact(f"the download of {ref} does not match its content hash; try again")
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return DatasetVersion(info, path)


def push(
    name: str,
    data: Any,
    *,
    message: str = "",
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Import rows as the next version of `name`: a pandas DataFrame, a `pyarrow.Table`, a list of dicts, or
    the path of a JSONL, CSV or Parquet file. Returns the import result (the version, rows, problems)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from podium.data.formats import guess_format

    with tempfile.TemporaryDirectory(prefix="podium-push-") as tmp:
        if isinstance(data, str | Path):
            path, fmt = Path(data), guess_format(Path(data))
        else:
            if isinstance(data, list):
                table = pa.Table.from_pylist(data)
            elif isinstance(data, pa.Table):
                table = data
            else:
                table = pa.Table.from_pandas(data, preserve_index=False)
            path, fmt = Path(tmp) / "rows.parquet", "parquet"
            pq.write_table(table, path)
        with Client(url, api_key, timeout=3600.0) as c, open(path, "rb") as body:
            result: dict[str, Any] = c.request(
                "POST",
                f"/api/datasets/{name}/import",
                params={"format": fmt, "message": message, "filename": path.name},
                content=body,
            )
    return result


def prep(
    ref: str,
    pipeline: Any,
    *,
    into: str | None = None,
    message: str = "",
    wait: float | None = 3600.0,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Run a preparation pipeline (YAML text, `{"seed": …, "steps": […]}` or a list of steps, e.g.
    `[{"normalize": {}}, {"near_dedup": {"threshold": 0.8}}]`) over a version on the server. Returns the job;
    with `wait` (seconds), the finished job, whose `result` names the new version. A bad pipeline fails at
    once, naming the field."""
    import time

    from podium.core.errors import PodiumError

    name, tag = _split(ref)
    with Client(url, api_key) as c:
        job: dict[str, Any] = c.post(
            f"/api/datasets/{name}/prep", {"pipeline": pipeline, "version": tag, "into": into, "message": message}
        )
        deadline = time.monotonic() + (wait or 0)
        while wait and job["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise PodiumError(
                    f"job {job['id']} is still {job['status']} after {wait} s; follow it with "
                    f"`podium jobs show {job['id']} -f`"
                )
            time.sleep(0.2)
            job = c.get(f"/api/jobs/{job['id']}", log_tail=20)
    if job["status"] == "failed":
        raise PodiumError(f"the pipeline failed: {job.get('error')}", details={"job": job["id"]})
    return job
