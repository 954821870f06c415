"""Reading rows from files and writing them back out, streaming, in bounded memory.

Readers yield `pyarrow.Table` batches of at most `BATCH_ROWS` rows. A malformed row (a line that is not JSON
or not an object, a CSV record with the wrong number of fields, bytes that are not UTF-8) goes to
`Problems` with its file and line: under the `skip` policy the import goes on without it, under `fail` the
first one stops the import before anything is committed.

Formats: `jsonl`, `csv`, `parquet`, `folder` (one document per text/Markdown/HTML file, with its path),
`hf` (a Hugging Face `datasets` dataset saved with `save_to_disk`; a `DatasetDict` gets a `split` column).
Exports: `jsonl`, `csv`, `parquet` and `hf`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from podium.core.errors import InvalidInput

BATCH_ROWS = 5_000
MAX_PROBLEMS_KEPT = 100  # malformed rows listed in a report (all are counted)
MAX_FIELD_CHARS = 64 * 1024 * 1024  # one CSV field
DOCUMENT_SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024

ImportFormat = Literal["jsonl", "csv", "parquet", "folder", "hf"]
IMPORT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet", "folder", "hf")
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet", "hf")
Policy = Literal["skip", "fail"]


@dataclass(frozen=True)
class BadRow:
    """One malformed row: where it is and what is wrong with it."""

    file: str
    line: int
    error: str


@dataclass
class Problems:
    """Malformed rows met during an import, under its policy."""

    policy: Policy = "fail"
    count: int = 0
    rows: list[BadRow] = field(default_factory=list)

    def add(self, file: str, line: int, error: str) -> None:
        """Record a malformed row; under `fail`, stop the import with an error naming it."""
        self.count += 1
        if len(self.rows) < MAX_PROBLEMS_KEPT:
            self.rows.append(BadRow(file, line, error))
        if self.policy == "fail":
            raise InvalidInput(
                f"{file}, line {line}: {error}; nothing was imported (fix the row, or import with "
                "on_error=skip to leave malformed rows out)",
                details={"file": file, "line": line, "field": "file"},
            )

    def as_report(self) -> dict[str, Any]:
        """JSON-able summary for lineage and the import result."""
        return {
            "policy": self.policy,
            "bad_rows": self.count,
            "examples": [{"file": r.file, "line": r.line, "error": r.error} for r in self.rows],
        }


def guess_format(path: Path) -> str:
    """The import format a path suggests (`data.jsonl` → jsonl, a folder → folder or hf)."""
    if path.is_dir():
        return "hf" if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() else "folder"
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    known = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
    if suffix.lower() not in known:
        raise InvalidInput(
            f"cannot tell the format of {path.name!r}; say it with format= (one of {', '.join(IMPORT_FORMATS)})",
            details={"field": "format"},
        )
    return known[suffix.lower()]


def _decode(raw: bytes, file: str, line: int, problems: Problems) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add(file, line, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
        return None


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A batch of row objects as a table: a column per key seen in any row (missing values null), types
    inferred per column; a key whose values disagree in type is kept as JSON text."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            columns[name] = pa.array(
                [None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode() for v in values],
                pa.string(),
            )
    return pa.table(columns)


JSONL_BLOCK = 8 * 1024 * 1024  # bytes of lines parsed at once by pyarrow's reader


def _nested_time(kind: pa.DataType) -> bool:
    """Whether a nested type holds a time pyarrow inferred from a string."""
    if pa.types.is_struct(kind):
        return any(_is_time(kind.field(i).type) or _nested_time(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _is_time(kind.value_type) or _nested_time(kind.value_type)
    return False


def _is_time(kind: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(kind) or pa.types.is_date(kind))


def _fast_jsonl(block: bytes) -> pa.Table | None:
    """A block of lines parsed by pyarrow's JSON reader, or None when any line needs a closer look (not UTF-8,
    not JSON, not an object, types that change between rows): then the lines are read one by one. Strings
    that look like times stay strings, as the line-by-line reader keeps them."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    options = pj.ReadOptions(block_size=len(block) + 1, use_threads=False)
    try:
        table = pj.read_json(io.BytesIO(block), read_options=options)
        if any(_nested_time(f.type) for f in table.schema):
            return None  # read line by line, as strings: the same types whichever path a block takes
        times = [f.name for f in table.schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
        if times:
            schema = pa.schema([(name, pa.string()) for name in times])
            parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
            table = pj.read_json(io.BytesIO(block), read_options=options, parse_options=parse)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table


def _slow_jsonl(lines: list[bytes], first: int, label: str, problems: Problems) -> Iterator[pa.Table]:
    rows: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, first):
        if not raw.strip():
            continue
        text = _decode(raw, label, number, problems)
        if text is None:
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problems.add(label, number, f"not valid JSON ({exc.args[0]})")
            continue
        if not isinstance(value, dict):
            problems.add(label, number, f"a JSON {type(value).__name__}, not an object")
            continue
        rows.append(value)
        if len(rows) >= BATCH_ROWS:
            yield _rows_to_table(rows)
            rows = []
    if rows:
        yield _rows_to_table(rows)


def read_jsonl(path: Path, problems: Problems, name: str | None = None) -> Iterator[pa.Table]:
    """JSON Lines: one object per line; blank lines are skipped. Blocks of whole lines go through pyarrow's
    reader; a block with a malformed line is read line by line, so each bad line is reported by number."""
    label = name or path.name
    first = 1
    with open(path, "rb") as f:
        while block := f.read(JSONL_BLOCK):
            if not block.endswith(b"\n"):
                block += f.readline()
            table = _fast_jsonl(block)
            if table is None:
                yield from _slow_jsonl(block.split(b"\n"), first, label, problems)
            else:
                for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                    yield pa.Table.from_batches([batch])
            first += block.count(b"\n")


def numbers_of(column: pa.Array | pa.ChunkedArray, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """A CSV column of text cast to `kind` (empty values become nulls); raises if a value is not one."""
    cleaned = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    return pc.cast(cleaned, kind)


def _decoded_lines(f: IO[bytes], label: str, problems: Problems, bad: list[int]) -> Iterator[str]:
    for number, raw in enumerate(f, 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a byte-order mark is not part of the first column's name
        text = _decode(raw, label, number, problems)
        if text is None:  # reported; the record holding this line is left out
            bad.append(number)
            yield "\n"
        else:
            yield text


def read_csv(path: Path, problems: Problems, name: str | None = None) -> Iterator[pa.Table]:
    """CSV with a header row; a record with the wrong number of fields, an unterminated quote or a line that
    is not UTF-8 is malformed (reported at the record's first line). Columns stay text here: the import
    decides which are numbers over all rows (`numbers_of`)."""
    label = name or path.name
    csv.field_size_limit(MAX_FIELD_CHARS)
    bad: list[int] = []
    with open(path, "rb") as f:
        reader = csv.reader(_decoded_lines(f, label, problems, bad), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(
                f"{label}, line 1: the header is not valid CSV ({exc})", details={"field": "file"}
            ) from None
        header = [h.strip() for h in header]
        if not any(header) or len(set(header)) != len(header) or "" in header:
            raise InvalidInput(
                f"{label}, line 1: the header needs distinct, non-empty column names; got {header[:20]}",
                details={"field": "file"},
            )
        columns: list[list[str]] = [[] for _ in header]
        last = reader.line_num
        while True:
            first = last + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                problems.add(label, first, f"not valid CSV ({exc})")
                last = reader.line_num
                continue
            last = reader.line_num
            if any(first <= n <= last for n in bad):
                bad[:] = [n for n in bad if n > last]
                continue
            if not record:
                continue
            if len(record) != len(header):
                problems.add(label, first, f"{len(record)} fields where the header has {len(header)}")
                continue
            for i, value in enumerate(record):
                columns[i].append(value)
            if len(columns[0]) >= BATCH_ROWS:
                yield pa.table({h: pa.array(c, pa.string()) for h, c in zip(header, columns, strict=True)})
                columns = [[] for _ in header]
        if columns[0]:
            yield pa.table({h: pa.array(c, pa.string()) for h, c in zip(header, columns, strict=True)})


def read_parquet(path: Path, name: str | None = None) -> Iterator[pa.Table]:
    """Parquet, batch by batch."""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(
            f"{name or path.name} is not a readable Parquet file ({exc})", details={"field": "file"}
        ) from None
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        yield pa.Table.from_batches([batch])


def read_folder(root: Path, problems: Problems) -> Iterator[pa.Table]:
    """One row per text, Markdown or HTML file under `root` (sorted by path): `text`, `path` (relative),
    `format`, `bytes`. Other files are ignored; a file that is not UTF-8 is a malformed row."""
    rows: list[dict[str, Any]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        kind = DOCUMENT_SUFFIXES.get(path.suffix.lower())
        rel = path.relative_to(root).as_posix()
        if kind is None or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            problems.add(rel, 1, f"{size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit for one document")
            continue
        text = _decode(path.read_bytes(), rel, 1, problems)
        if text is None:
            continue
        rows.append({"text": text, "path": rel, "format": kind, "bytes": size})
        if len(rows) >= 256:
            yield pa.Table.from_pylist(rows)
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows)


def _inside(root: Path, name: Any, what: str) -> Path:
    """`root / name` if `name` is a plain relative path that stays inside `root`; else `InvalidInput`."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or "\x00" in name:
        raise InvalidInput(f"the saved dataset names a {what} outside its folder: {name!r}", details={"field": "file"})
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InvalidInput(f"the saved dataset names a {what} outside its folder: {name!r}", details={"field": "file"})
    return path


def _check_hf_folder(root: Path) -> None:
    """Every split folder and data file a saved dataset names stays inside it (its JSON files are the
    uploader's: an absolute or `..` name must not make the server read its own files)."""
    try:
        splits = [root]
        if (root / "dataset_dict.json").exists():
            names = orjson.loads((root / "dataset_dict.json").read_bytes()).get("splits", [])
            splits = [_inside(root, name, "split") for name in names]
        for folder in splits:
            state = orjson.loads((folder / "state.json").read_bytes())
            for item in state.get("_data_files", []):
                _inside(folder, item.get("filename") if isinstance(item, dict) else None, "data file")
    except (OSError, orjson.JSONDecodeError, AttributeError, TypeError) as exc:
        raise InvalidInput(
            f"{root.name} is not a Hugging Face dataset saved with save_to_disk ({type(exc).__name__})",
            details={"field": "file"},
        ) from None


def read_hf(root: Path) -> Iterator[pa.Table]:
    """A dataset saved by Hugging Face `datasets.save_to_disk`; each split of a `DatasetDict` adds a `split`
    column."""
    import datasets

    _check_hf_folder(root)
    try:
        loaded = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError, OSError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"{root.name} is not a Hugging Face dataset saved with save_to_disk ({type(exc).__name__})",
            details={"field": "file"},
        ) from None
    parts = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    for split, ds in parts:
        if ds._indices is not None:  # a selection or a shuffle: materialise the rows it names
            ds = ds.flatten_indices()
        table = ds.data.table
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            out = pa.Table.from_batches([batch])
            if split is not None:
                out = out.append_column("split", pa.array([split] * out.num_rows, pa.string()))
            yield out


def read(path: Path, fmt: str, problems: Problems, name: str | None = None) -> Iterator[pa.Table]:
    """Batches of the rows in `path` read as `fmt`."""
    if fmt == "jsonl":
        return read_jsonl(path, problems, name)
    if fmt == "csv":
        return read_csv(path, problems, name)
    if fmt == "parquet":
        return read_parquet(path, name)
    if fmt == "folder":
        if not path.is_dir():
            raise InvalidInput(f"{name or path.name} is not a folder", details={"field": "format"})
        return read_folder(path, problems)
    if fmt == "hf":
        return read_hf(path)
    raise InvalidInput(
        f"unknown import format {fmt!r}; known: {', '.join(IMPORT_FORMATS)}", details={"field": "format"}
    )


# --- writing -----------------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    """What orjson cannot write itself: bytes as base64 text, anything else (decimals, …) as its text."""
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return str(value)


def _json_cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return orjson.dumps(value, default=_default).decode()


def jsonl_chunks(batches: Iterable[pa.Table]) -> Iterator[bytes]:
    """Rows as JSON Lines, one chunk per batch."""
    for batch in batches:
        yield b"".join(orjson.dumps(row, default=_default) + b"\n" for row in batch.to_pylist())


def csv_chunks(batches: Iterable[pa.Table]) -> Iterator[bytes]:
    """Rows as CSV with a header; nested values as JSON text."""
    header_done = False
    for batch in batches:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if not header_done:
            writer.writerow(batch.column_names)
            header_done = True
        for row in batch.to_pylist():
            writer.writerow([_json_cell(row[c]) for c in batch.column_names])
        yield out.getvalue().encode()


def write_hf(parquet: Path, target: Path, split_column: str = "split") -> Path:
    """A Parquet file saved as a Hugging Face dataset folder (`datasets.load_from_disk` reads it); a `split`
    column makes a `DatasetDict` with one dataset per split."""
    import datasets

    if target.exists() and any(target.iterdir()):
        raise InvalidInput(f"{target} exists and is not empty; choose a new folder", details={"field": "out"})
    cache = target.parent / f".{target.name}.cache-{os.getpid()}"
    ds = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(cache))
    assert isinstance(ds, datasets.Dataset)
    if split_column in ds.column_names:
        splits = sorted(set(ds.unique(split_column)))
        parts = {str(s): ds.filter(lambda b, s=s: [v == s for v in b[split_column]], batched=True) for s in splits}
        datasets.DatasetDict({k: v.remove_columns(split_column) for k, v in parts.items()}).save_to_disk(str(target))
    else:
        ds.save_to_disk(str(target))
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    return target
