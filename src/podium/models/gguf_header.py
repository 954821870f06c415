"""Read a GGUF file's header: its metadata fields and its tensors' shapes, without its weights.

`gguf.GGUFReader` maps every field (SmolLM2's tokenizer alone is ~100k array entries) into numpy objects
and took 11 s on this machine to answer what registration needs; this reader walks the header once with
buffered reads, decoding only scalar fields and skipping arrays (their elements are not needed: a
fixed-size array is one seek, an array of strings one length read per element), in about 0.1 s.
Layout (GGUF v2/v3, little-endian): magic, version (u32), tensor count (u64), field count (u64), the
fields (key string, value type u32, value), then per tensor its name, dims (u32), shape (u64 each),
type (u32) and data offset (u64).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_STRING = 64 * 1024 * 1024  # a longer string length is a broken file, not a field
MAX_COUNT = 1 << 40


class GGUFError(ValueError):
    """The file is not a readable GGUF header."""


@dataclass(frozen=True)
class Header:
    """A GGUF file's metadata (scalars and strings; arrays as their length) and its tensors' shapes."""

    version: int
    fields: dict[str, Any]
    shapes: list[tuple[int, ...]]

    @property
    def parameters(self) -> int:
        """Elements in every tensor."""
        total = 0
        for shape in self.shapes:
            n = 1
            for dim in shape:
                n *= dim
            total += n
        return total


def _read(f: IO[bytes], fmt: str) -> Any:
    size = struct.calcsize(fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise GGUFError("the header ends early")
    return struct.unpack(fmt, raw)[0]


def _string(f: IO[bytes]) -> str:
    n = _read(f, "<Q")
    if n > MAX_STRING:
        raise GGUFError(f"a string of {n} bytes")
    raw = f.read(n)
    if len(raw) != n:
        raise GGUFError("the header ends early")
    return raw.decode("utf-8", "replace")


def _skip_string(f: IO[bytes]) -> None:
    n = _read(f, "<Q")
    if n > MAX_STRING:
        raise GGUFError(f"a string of {n} bytes")
    f.seek(n, 1)


def _value(f: IO[bytes], kind: int) -> Any:
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = _read(f, "<I"), _read(f, "<Q")
        if count > MAX_COUNT:
            raise GGUFError(f"an array of {count} items")
        if item in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[item]) * count, 1)
        elif item == _STRING:
            for _ in range(count):
                _skip_string(f)
        elif item == _ARRAY:
            for _ in range(count):
                _value(f, _ARRAY)
        else:
            raise GGUFError(f"an array of unknown type {item}")
        return ArrayInfo(item, count)
    raise GGUFError(f"a field of unknown type {kind}")


@dataclass(frozen=True)
class ArrayInfo:
    """An array field, read as its element type and length only."""

    item_type: int
    count: int


def read_header(path: Path) -> Header:
    """The header of the GGUF file at `path`; `GGUFError` saying what is wrong otherwise."""
    with open(path, "rb", buffering=1 << 20) as f:
        if f.read(4) != MAGIC:
            raise GGUFError("bad magic bytes")
        version = _read(f, "<I")
        if version not in (2, 3):
            raise GGUFError(f"GGUF version {version} (2 and 3 are read)")
        tensors, count = _read(f, "<Q"), _read(f, "<Q")
        if tensors > MAX_COUNT or count > MAX_COUNT:
            raise GGUFError("impossible tensor or field counts")
        fields: dict[str, Any] = {}
        for _ in range(count):
            key = _string(f)
            fields[key] = _value(f, _read(f, "<I"))
        shapes: list[tuple[int, ...]] = []
        for _ in range(tensors):
            _skip_string(f)
            dims = _read(f, "<I")
            if dims > 8:
                raise GGUFError(f"a tensor with {dims} dimensions")
            shapes.append(tuple(_read(f, "<Q") for _ in range(dims)))
            f.seek(12, 1)  # type (u32) and data offset (u64)
    return Header(version, fields, shapes)
