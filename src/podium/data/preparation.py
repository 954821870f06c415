"""Running a preparation pipeline over a dataset version into a new version, with its lineage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import formats, pipeline, service
from podium.data.service import VersionInfo
from podium.data.steps.base import StepContext
from podium.data.tokenizers import loader
from podium.data.writer import write_all

Progress = Callable[[float, str], None]


def check(platform: Platform, actor: Actor, ref: str, spec: Any, *, into: str | None = None) -> dict[str, Any]:
    """Everything `prepare` checks before reading a row (steps, settings, columns, the source, the right to
    write the target), without running it; returns the pipeline in its canonical form."""
    parsed = pipeline.parse(spec)
    source = service.get_version(platform, actor, ref)
    service.check_writable(platform, actor, into or source.dataset)
    with service.open_rows(platform, actor, f"{source.dataset}@{source.id}") as (_, pf):
        schema = pf.schema_arrow
    pipeline.Pipeline(parsed, StepContext(tokenizer=loader(platform, actor), seed=parsed.seed), schema)
    return parsed.as_dict()


def prepare(
    platform: Platform,
    actor: Actor,
    ref: str,
    spec: Any,
    *,
    into: str | None = None,
    message: str = "",
    progress: Progress | None = None,
) -> VersionInfo:
    """Run the pipeline `spec` (YAML text, a dict or a list of steps) over the version `ref`; the rows it
    keeps become the next version of `into` (default: the same dataset), whose lineage records the source
    version, the pipeline, and each step's settings and report. Everything is checked before any row is
    read; a failure leaves no version."""
    parsed = pipeline.parse(spec)
    source = service.get_version(platform, actor, ref)
    target = service.check_writable(platform, actor, into or source.dataset)
    ctx = StepContext(tokenizer=loader(platform, actor), seed=parsed.seed)
    with (
        service.open_rows(platform, actor, f"{source.dataset}@{source.id}") as (info, pf),
        service.workspace(platform) as folder,
    ):
        runner = pipeline.Pipeline(parsed, ctx, pf.schema_arrow)
        total = max(1, info.row_count)

        def seen(rows: int) -> None:
            if progress is not None:
                progress(min(0.99, rows / total), f"{rows:,} of {info.row_count:,} rows read")

        batches = (pa.Table.from_batches([b]) for b in pf.iter_batches(batch_size=formats.BATCH_ROWS))
        written = write_all(folder, runner.schema, runner.run(batches, seen))
        lineage = {
            "kind": "pipeline",
            "source": info.id,
            "source_ref": info.ref,
            "pipeline": parsed.as_dict(),
            "steps": runner.lineage(),
        }
        version, _ = service.commit(
            platform, actor, target, written, lineage=lineage, parents=[info.id], message=message
        )
    return version
