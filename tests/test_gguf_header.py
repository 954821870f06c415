"""The GGUF header reader registration uses: the same answers as the `gguf` package's reader, in a fraction
of the time, and clear errors for files that are not GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.core.errors import InvalidInput
from podium.models.formats import inspect_source
from podium.models.gguf_header import ArrayInfo, GGUFError, read_header

from .models_fixtures import smollm_gguf


def test_the_header_matches_the_gguf_packages_reader(tiny_gguf: Path) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(str(tiny_gguf))
    header = read_header(tiny_gguf)
    assert set(header.fields) == set(reader.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        mine = header.fields[name]
        if isinstance(mine, ArrayInfo):
            assert mine.count == len(field.data), name
        elif isinstance(mine, float):
            assert mine == pytest.approx(float(field.contents()), rel=1e-6), name
        else:
            assert mine == field.contents(), name
    assert header.shapes == [tuple(int(d) for d in t.shape) for t in reader.tensors]
    inspected = inspect_source(tiny_gguf)
    assert inspected.format == "gguf" and inspected.task == "chat" and inspected.context_length == 256
    assert inspected.architecture == "llama" and inspected.extra["name"] == "tiny-llama"
    assert inspected.parameters == header.parameters > 0


def test_the_shipped_smollm2_file() -> None:
    inspected = inspect_source(smollm_gguf())
    assert (inspected.parameters, inspected.context_length, inspected.license) == (134_515_008, 8192, "apache-2.0")
    assert inspected.task == "chat" and inspected.extra["file_type"] == 3


def test_broken_files_are_clear_errors(tiny_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:200])
    with pytest.raises(GGUFError, match="ends early"):
        read_header(cut)
    with pytest.raises(InvalidInput, match="not a readable GGUF file"):
        inspect_source(cut)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGML" + b"\0" * 64)
    with pytest.raises(InvalidInput, match=r"is named \.gguf but is not a GGUF file"):
        inspect_source(fake)
    future = tmp_path / "future.gguf"
    future.write_bytes(b"GGUF" + (99).to_bytes(4, "little") + b"\0" * 16)
    with pytest.raises(GGUFError, match="version 99"):
        read_header(future)
