"""Datasets: named, project-owned, with immutable versions whose rows are a Parquet file in the artifact store.

A version's content hash is the sha256 of its Parquet file (written deterministically: the same rows make
the same bytes), and its id derives from that hash and the dataset, so the same rows pushed twice are one
version. Rows are written to a temporary file first and the version row is added in one transaction after
the file is stored whole: a failed import or pipeline leaves no version behind. Names, references
(`tickets@golden`, `tickets@3`), numbering and label moves are the registry kernel's (`store.DATASETS`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.core.db import utcnow
from podium.core.errors import Conflict, CorruptArtifact, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.data import formats
from podium.data.store import DATASETS, Dataset, DatasetVersion
from podium.data.writer import Spool, Written, is_text, write_all

MAX_HEAD_ROWS = 1000
MAX_QUERY_CHARS = 1000


class ColumnInfo(BaseModel):
    """A column of a version: its name and Arrow type."""

    name: str
    type: str


class ParentInfo(BaseModel):
    """A version another was made from."""

    id: str
    dataset: str | None
    version: int | None


class VersionInfo(BaseModel):
    """One immutable version of a dataset, with the labels that point at it."""

    id: str
    dataset: str
    version: int
    content_hash: str
    size_bytes: int
    row_count: int
    columns: list[ColumnInfo]
    stats: dict[str, Any]
    parents: list[ParentInfo]
    lineage: dict[str, Any]
    message: str
    created_by: str
    created_at: datetime
    labels: list[str]

    @property
    def ref(self) -> str:
        """`name@version`."""
        return f"{self.dataset}@{self.version}"


class DatasetInfo(BaseModel):
    """A dataset in listings."""

    name: str
    description: str
    latest_version: int
    rows: int
    labels: dict[str, int]
    updated_at: datetime


class LabelMoveInfo(BaseModel):
    """One entry in a dataset's label history."""

    label: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime


class DatasetDetail(DatasetInfo):
    """A dataset with its versions (newest first) and the history of its labels."""

    versions: list[VersionInfo]
    history: list[LabelMoveInfo]


class ImportResult(BaseModel):
    """What an import made: the version (an existing one when the rows were there already) and what was left
    out."""

    created: bool
    version: VersionInfo
    rows: int
    bad_rows: int
    problems: list[dict[str, Any]]


class RowsPage(BaseModel):
    """A page of a version's rows (matching `q`, when given); `next_offset` is None on the last page."""

    dataset: str
    version: int
    columns: list[ColumnInfo]
    offset: int
    rows: list[dict[str, Any]]
    matched: int | None
    next_offset: int | None


# --- helpers ---------------------------------------------------------------------------------------


def _columns(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def _version_info(
    s: Session, d: Dataset, v: DatasetVersion, labels: dict[str, str] | None = None, latest: int | None = None
) -> VersionInfo:
    labels = DATASETS.labels(s, d) if labels is None else labels
    latest = DATASETS.latest_number(s, d) if latest is None else latest
    names = sorted(label for label, vid in labels.items() if vid == v.id)
    if v.version == latest:
        names.insert(0, "latest")
    parents = []
    for pid in v.parents:
        pv = s.get(DatasetVersion, pid)
        pd = s.get(Dataset, pv.dataset_id) if pv is not None else None
        parents.append(ParentInfo(id=pid, dataset=pd.name if pd else None, version=pv.version if pv else None))
    return VersionInfo(
        id=v.id,
        dataset=d.name,
        version=v.version,
        content_hash=v.content_hash,
        size_bytes=v.size_bytes,
        row_count=v.row_count,
        columns=[ColumnInfo(**c) for c in v.columns],
        stats=v.stats,
        parents=parents,
        lineage=v.lineage,
        message=v.message,
        created_by=v.created_by,
        created_at=v.created_at,
        labels=names,
    )


def check_owner(actor: Actor, d: Dataset, action: str) -> None:
    """Writes to a dataset belong to its project's members and to server admins; for anyone else another
    project's dataset does not exist."""
    if not actor.sees(d.project_id):
        raise NotFound(f"dataset {d.name!r} not found", details={"field": "name"})
    actor.require_in(d.project_id, "member", action)


def _find(s: Session, actor: Actor, ref: str) -> tuple[Dataset, DatasetVersion]:
    parsed = DATASETS.parse_ref(ref)
    d = DATASETS.find(s, parsed.name, projects=actor.scope())
    if parsed.tag is not None and parsed.tag.startswith("dsv_"):
        v = s.get(DatasetVersion, parsed.tag)
        if v is None or v.dataset_id != d.id:  # never say which dataset another version id belongs to
            raise NotFound(f"dataset {d.name!r} has no version {parsed.tag!r}", details={"field": "ref"})
    return d, DATASETS.resolve(s, d, parsed.tag)


def version_id_for(dataset_id: str, digest: str) -> str:
    """A version's id: derived from its dataset and content, so it names that content for good."""
    return "dsv_" + hashlib.sha256(f"{dataset_id}:{digest}".encode()).hexdigest()[:26]


@contextmanager
def workspace(platform: Platform) -> Iterator[Path]:
    """A temporary folder for rows on their way to the artifact store (beside it when it is local, so the
    finished file is moved in, not copied), removed afterwards whatever happens."""
    base = None
    if platform.blobs.local:
        base = Path(platform.blobs.base) / ".incoming"
        base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="data-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- writing versions --------------------------------------------------------------------------------


def commit(
    platform: Platform,
    actor: Actor,
    name: str,
    written: Written,
    *,
    lineage: dict[str, Any],
    parents: list[str],
    message: str = "",
    description: str = "",
) -> tuple[VersionInfo, bool]:
    """Store a complete Parquet file and make it the dataset's next version (creating the dataset in the
    actor's project on first use); the same content as an existing version is that version."""
    name = check_writable(platform, actor, name)  # before storing anything
    digest = platform.blobs.put_file(written.path)
    size = written.path.stat().st_size

    def once(s: Session) -> tuple[VersionInfo, bool]:
        d = DATASETS.get(s, name)
        now = utcnow()
        if d is None:
            d = Dataset(
                id=new_id("dst"),
                name=name,
                description=description,
                project_id=actor.project_id,
                created_by=actor.label,
                created_at=now,
            )
            s.add(d)
            s.flush()
            record_audit(s, actor, "dataset.create", "dataset", d.id, details={"name": name})
        else:
            _check_writable(actor, d)
        if description and description != d.description:
            d.description = description
        pushed = DATASETS.push(
            s,
            d,
            content_hash=digest,
            version_id=version_id_for(d.id, digest),
            blob=digest,
            size_bytes=size,
            row_count=written.rows,
            columns=_columns(written.schema),
            stats=written.stats,
            parents=parents,
            lineage=lineage,
            message=message,
            created_by=actor.label,
            created_at=now,
        )
        v = pushed.version
        if pushed.created:
            details = {"dataset": name, "version": v.version, "rows": written.rows}
            record_audit(s, actor, "dataset.version.create", "dataset_version", v.id, details=details)
        return _version_info(s, d, v), pushed.created

    return DATASETS.write(platform.db, once, conflict=f"dataset {name!r} changed concurrently; try again")


def check_writable(platform: Platform, actor: Actor, name: str) -> str:
    """The name, valid, if the actor may add versions to that dataset (or create it); raises otherwise."""
    actor.require("member", "write datasets")
    name = DATASETS.check_name(name)
    with platform.db.read_session() as s:
        existing = DATASETS.get(s, name)
        if existing is not None:
            _check_writable(actor, existing)
    return name


def _check_writable(actor: Actor, d: Dataset) -> None:
    if not actor.sees(d.project_id):  # names are unique on the server: say so, without showing the dataset
        raise Conflict(
            f"the dataset name {d.name!r} is taken by another project; choose another name", details={"field": "name"}
        )
    actor.require_in(d.project_id, "member", "write this dataset")


def import_batches(
    platform: Platform,
    actor: Actor,
    name: str,
    batches: Iterable[pa.Table],
    *,
    lineage: dict[str, Any],
    problems: formats.Problems | None = None,
    parents: list[str] | None = None,
    message: str = "",
    description: str = "",
    numbers_from_text: bool = False,
) -> ImportResult:
    """Rows of any schema (widened as they come) into a new version; nothing is written if reading fails.
    With `numbers_from_text` (CSV), text columns whose every value is a number are stored as numbers."""
    actor.require("member", "import datasets")
    name = DATASETS.check_name(name)
    problems = problems or formats.Problems()
    with workspace(platform) as folder:
        spool_dir = folder / "spool"
        spool_dir.mkdir()
        spool = Spool(spool_dir, numbers_from_text=numbers_from_text)
        for batch in batches:
            spool.add(batch)
        if spool.rows == 0:
            raise InvalidInput(
                f"no rows to import{f' ({problems.count} malformed rows were left out)' if problems.count else ''}",
                details={"field": "file"},
            )
        written = write_all(folder, spool.final_schema, spool)
        lineage = {**lineage, "problems": problems.as_report()}
        version, created = commit(
            platform,
            actor,
            name,
            written,
            lineage=lineage,
            parents=parents or [],
            message=message,
            description=description,
        )
    return ImportResult(
        created=created,
        version=version,
        rows=written.rows,
        bad_rows=problems.count,
        problems=problems.as_report()["examples"],
    )


def check_import(fmt: str | None, on_error: str, **texts: str | None) -> str:
    """The import format, if it is one; the malformed-row policy, if it is one; and the import's texts
    (`filename` up to 500 characters, `message` and `description` up to 10,000). Checked before an upload is
    received."""
    if not fmt:
        raise InvalidInput(
            "say the file's format: format=jsonl, csv, parquet, folder or hf", details={"field": "format"}
        )
    for field, value in texts.items():
        most = 500 if field == "filename" else 10_000
        if value is not None and len(value) > most:
            raise InvalidInput(f"{field} is longer than {most} characters", details={"field": field})
    if on_error not in ("skip", "fail"):
        raise InvalidInput(f"on_error {on_error!r} is not skip or fail", details={"field": "on_error"})
    if fmt not in formats.IMPORT_FORMATS:
        raise InvalidInput(
            f"unknown import format {fmt!r}; known: {', '.join(formats.IMPORT_FORMATS)}", details={"field": "format"}
        )
    return fmt


def import_file(
    platform: Platform,
    actor: Actor,
    name: str,
    path: Path,
    fmt: str | None = None,
    *,
    on_error: str = "fail",
    message: str = "",
    description: str = "",
    source: str | None = None,
) -> ImportResult:
    """Import a JSONL, CSV or Parquet file, a folder of documents, or a saved Hugging Face dataset. Malformed
    rows are skipped or fail the import (`on_error`), reported with their file and line either way."""
    actor.require("member", "import datasets")
    fmt = check_import(fmt or formats.guess_format(path), on_error)
    problems = formats.Problems(policy="skip" if on_error == "skip" else "fail")
    label = source or path.name
    batches = formats.read(path, fmt, problems, label)
    return import_batches(
        platform,
        actor,
        name,
        batches,
        lineage={"kind": "import", "format": fmt, "source": label},
        problems=problems,
        message=message,
        description=description,
        numbers_from_text=fmt == "csv",
    )


# --- reading -----------------------------------------------------------------------------------------


def list_datasets(platform: Platform, actor: Actor) -> list[DatasetInfo]:
    """The datasets the actor sees, by name, with their latest version and labels."""
    actor.require("viewer", "read datasets")
    with platform.db.read_session() as s:
        q = DATASETS.in_scope(select(Dataset).order_by(Dataset.name), actor.scope())
        return [_dataset_info(s, d) for d in s.scalars(q)]


def _dataset_info(s: Session, d: Dataset) -> DatasetInfo:
    latest = DATASETS.latest(s, d)
    return DatasetInfo(
        name=d.name,
        description=d.description,
        latest_version=latest.version if latest else 0,
        rows=latest.row_count if latest else 0,
        labels=DATASETS.label_numbers(s, d),
        updated_at=latest.created_at if latest else d.created_at,
    )


def get_dataset(platform: Platform, actor: Actor, name: str) -> DatasetDetail:
    """A dataset with every version (newest first) and its label history."""
    actor.require("viewer", "read datasets")
    with platform.db.read_session() as s:
        d = DATASETS.find(s, name, projects=actor.scope())
        labels = DATASETS.labels(s, d)
        versions = DATASETS.versions(s, d)
        latest = versions[0].version if versions else 0
        return DatasetDetail(
            **_dataset_info(s, d).model_dump(),
            versions=[_version_info(s, d, v, labels, latest) for v in versions],
            history=[
                LabelMoveInfo(
                    label=m.label, from_version=m.from_version, to_version=m.to_version, actor=m.actor, at=m.at
                )
                for m in DATASETS.history(s, d)
            ],
        )


def get_version(platform: Platform, actor: Actor, ref: str) -> VersionInfo:
    """One version by reference (`name`, `name@3`, `name@label`, `name@dsv_…`) of a dataset the actor sees."""
    actor.require("viewer", "read datasets")
    with platform.db.read_session() as s:
        d, v = _find(s, actor, ref)
        return _version_info(s, d, v)


def _blob_of(platform: Platform, actor: Actor, ref: str) -> tuple[VersionInfo, str]:
    actor.require("viewer", "read datasets")
    with platform.db.read_session() as s:
        d, v = _find(s, actor, ref)
        return _version_info(s, d, v), v.blob


@contextmanager
def open_rows(platform: Platform, actor: Actor, ref: str) -> Iterator[tuple[VersionInfo, pq.ParquetFile]]:
    """A version's rows as a Parquet file, checked against its content hash first."""
    info, digest = _blob_of(platform, actor, ref)
    with parquet_path(platform, digest) as path:
        yield info, pq.ParquetFile(path)


_VERIFIED: dict[str, tuple[int, int]] = {}  # path -> (size, mtime ns) when its content last matched its hash
MAX_VERIFIED = 4096


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _verified_recently(path: str) -> bool:
    """Whether this local blob was re-hashed in this process and has not changed since (by size and mtime):
    paging through rows must not re-read a whole Parquet file for every page."""
    stamp = _stamp(path)
    return stamp is not None and _VERIFIED.get(path) == stamp


def _remember_verified(path: str) -> None:
    stamp = _stamp(path)
    if stamp is not None:
        if len(_VERIFIED) >= MAX_VERIFIED:
            _VERIFIED.clear()
        _VERIFIED[path] = stamp


@contextmanager
def parquet_path(platform: Platform, digest: str) -> Iterator[Path]:
    """A local path to a stored Parquet blob, verified (a copy when the store is remote)."""
    blobs = platform.blobs
    if blobs.local:
        path = blobs.path(digest)
        if not _verified_recently(path):
            if not blobs.verify(digest):
                raise CorruptArtifact(f"artifact sha256:{digest} is corrupt", details={"sha256": digest})
            _remember_verified(path)
        yield Path(path)
        return
    with workspace(platform) as folder:
        copy = folder / "rows.parquet"
        with open(copy, "wb") as out:
            for chunk in blobs.iter_chunks(digest):
                out.write(chunk)
        yield copy


def version_chunks(platform: Platform, actor: Actor, ref: str, fmt: str) -> tuple[VersionInfo, Iterator[bytes]]:
    """A version's rows as bytes of `fmt` (`parquet`, `jsonl` or `csv`), streamed."""
    if fmt not in ("parquet", "jsonl", "csv"):
        raise InvalidInput(
            f"format {fmt!r} cannot be downloaded; choose parquet, jsonl or csv (the CLI and SDK write `hf` from "
            "Parquet)",
            details={"field": "format"},
        )
    info, digest = _blob_of(platform, actor, ref)
    if fmt == "parquet":
        return info, platform.blobs.iter_chunks(digest)

    def chunks() -> Iterator[bytes]:
        with parquet_path(platform, digest) as path:
            batches = (pa.Table.from_batches([b]) for b in pq.ParquetFile(path).iter_batches(formats.BATCH_ROWS))
            yield from (formats.jsonl_chunks if fmt == "jsonl" else formats.csv_chunks)(batches)

    return info, chunks()


def head(
    platform: Platform,
    actor: Actor,
    ref: str,
    *,
    offset: int = 0,
    limit: int = 20,
    q: str | None = None,
    column: str | None = None,
) -> RowsPage:
    """Rows `offset…offset+limit` of a version; with `q`, of the rows where some text column (or `column`)
    contains `q`, case-insensitively."""
    if offset < 0:
        raise InvalidInput("offset must be 0 or more", details={"field": "offset"})
    if not 1 <= limit <= MAX_HEAD_ROWS:
        raise InvalidInput(f"limit must be between 1 and {MAX_HEAD_ROWS}", details={"field": "limit"})
    if q is not None and len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"q is longer than {MAX_QUERY_CHARS} characters", details={"field": "q"})
    q = q or None
    with open_rows(platform, actor, ref) as (info, pf):
        schema = pf.schema_arrow
        if column is not None and column not in schema.names:
            raise InvalidInput(
                f"column {column!r} is not in {info.ref}; columns: {', '.join(schema.names)}",
                details={"field": "column"},
            )
        if column is not None and not is_text(schema.field(column).type):
            raise InvalidInput(
                f"column {column!r} holds {schema.field(column).type}, not text; search a text column",
                details={"field": "column"},
            )
        searched = [column] if column else [f.name for f in schema if is_text(f.type)]
        if q is not None and not searched:
            raise InvalidInput(f"{info.ref} has no text column to search", details={"field": "q"})
        rows: list[dict[str, Any]] = []
        seen = 0
        for batch in pf.iter_batches(batch_size=formats.BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            if q is not None:
                table = table.filter(_matches(table, searched, q))
            if seen + table.num_rows > offset and len(rows) <= limit:
                start = max(0, offset - seen)
                rows.extend(table.slice(start, limit + 1 - len(rows)).to_pylist())
            seen += table.num_rows
            if len(rows) > limit and q is None:
                break
        more = len(rows) > limit
        return RowsPage(
            dataset=info.dataset,
            version=info.version,
            columns=info.columns,
            offset=offset,
            rows=[_jsonable(r) for r in rows[:limit]],
            matched=seen if q is not None else info.row_count,
            next_offset=offset + limit if more else None,
        )


def _matches(table: pa.Table, columns: list[str], q: str) -> pa.ChunkedArray:
    import pyarrow.compute as pc

    mask = None
    for name in columns:
        hit = pc.fill_null(pc.match_substring(table.column(name), q, ignore_case=True), False)
        mask = hit if mask is None else pc.or_(mask, hit)
    assert mask is not None
    return mask


def _jsonable(value: Any) -> Any:
    """A value JSON can carry, at any depth: times as ISO text, bytes as a note of their size, decimals as
    text."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Decimal | timedelta):
        return str(value)
    return value


def iter_batches(
    platform: Platform, actor: Actor, ref: str, batch_rows: int = formats.BATCH_ROWS
) -> Iterator[pa.Table]:
    """A version's rows, batch by batch (for pipelines and exports)."""
    with open_rows(platform, actor, ref) as (_, pf):
        for batch in pf.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])


# --- labels ------------------------------------------------------------------------------------------


def set_label(platform: Platform, actor: Actor, name: str, label: str, version: str | int) -> VersionInfo:
    """Point `label` at a version (a number, `latest`, another label, or one of its version ids), recording
    the move."""
    actor.require("member", "move dataset labels")
    DATASETS.check_label(label)

    def once(s: Session) -> VersionInfo:
        d = DATASETS.find(s, name, projects=actor.scope())
        check_owner(actor, d, "move dataset labels")
        moved = DATASETS.set_label(s, d, label, version, actor.label)
        record_audit(
            s, actor, "dataset.label.set", "dataset", d.id, details={"label": label, "version": moved.version.version}
        )
        return _version_info(s, d, moved.version)

    return DATASETS.write(
        platform.db, once, conflict=f"label {label!r} of {name!r} is being moved concurrently; try again"
    )


def remove_label(platform: Platform, actor: Actor, name: str, label: str) -> None:
    """Delete a label (recorded in its history)."""
    actor.require("member", "move dataset labels")
    with platform.db.session() as s:
        d = DATASETS.find(s, name, projects=actor.scope())
        check_owner(actor, d, "move dataset labels")
        DATASETS.remove_label(s, d, label, actor.label)
        record_audit(s, actor, "dataset.label.remove", "dataset", d.id, details={"label": label})


# --- blobs -------------------------------------------------------------------------------------------


def referenced_blobs(s: Session, digests: set[str]) -> set[str]:
    """Which of `digests` a dataset version still stores its rows in."""
    found: set[str] = set()
    items = list(digests)
    for i in range(0, len(items), 500):
        found |= set(s.scalars(select(DatasetVersion.blob).where(DatasetVersion.blob.in_(items[i : i + 500]))))
    return found
