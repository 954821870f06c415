"""Drift reports: run one (check the question, sample both sides' texts through the tracing and data services,
analyse each field, store the report), start one as a job, and read them (a project's list, one, the latest).

Roles: a member (editor) runs reports, a viewer reads them; reports belong to one project. Sampling: at most
`max_samples` texts per side (2,000 by default): a random sample of a window holding more (see
`podium.tracing.texts`), a seeded reservoir sample of a dataset column. The work is CPU-bound (embedding,
training): the API runs it on a worker thread, or as a `drift.report` job for large windows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from podium.auth.service import project_ref, record_audit
from podium.core.db import utcnow
from podium.core.errors import InvalidInput, NotFound, PodiumError
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.data import service as data
from podium.drift.analysis import analyse
from podium.drift.report import (
    MIN_SAMPLES,
    DriftReport,
    DriftReportInfo,
    DriftSpec,
    Field_,
    FieldReport,
)
from podium.drift.store import DriftReportRow
from podium.jobs import service as jobs
from podium.jobs.service import JobInfo
from podium.tracing import service as tracing

__all__ = [
    "MIN_SAMPLES",
    "DriftReport",
    "DriftReportInfo",
    "DriftSpec",
    "check_spec",
    "delete_report",
    "get_report",
    "get_report_job",
    "latest",
    "list_reports",
    "run_report",
    "start_report",
]

MAX_LISTED = 500
MAX_DATASET_ROWS = 1_000_000  # rows of a dataset column read to sample from
Progress = Callable[[str], None]
Texts = list[tuple[str | None, str]]


def _project(platform: Platform, actor: Actor, project: str | None) -> tuple[str, str]:
    """The report's project (id, name): the one named, or the caller's key's."""
    ref = project or actor.project_id
    if not ref:
        raise InvalidInput("name the project whose traces to compare", details={"field": "project"})
    with platform.db.read_session() as s:
        try:
            p = project_ref(s, ref)
        except NotFound:
            raise NotFound(f"project {ref!r} not found", details={"field": "project"}) from None
    if not actor.sees(p.id):
        raise NotFound(f"project {ref!r} not found", details={"field": "project"})
    return p.id, p.name


def _fields(spec: DriftSpec) -> tuple[list[Field_], bool]:
    """The fields to compare and whether the caller chose them (then too few texts is an error)."""
    if spec.fields:
        return list(dict.fromkeys(spec.fields)), True
    if spec.reference_dataset is not None:
        chosen: list[Field_] = []
        if spec.reference_input_column:
            chosen.append("input")
        if spec.reference_output_column:
            chosen.append("output")
        return chosen, False
    return ["input", "output"], False


def check_spec(platform: Platform, actor: Actor, spec: DriftSpec) -> tuple[str, str]:
    """Everything about a report's question that needs no sampling: the caller may run it in the project, the
    windows make sense, the reference is one window or one dataset version with text columns for the fields.
    Returns the project (id, name)."""
    actor.require("member", "run drift reports")
    project_id, name = _project(platform, actor, spec.project)
    actor.require_in(project_id, "member", "run drift reports")
    if spec.current_from >= spec.current_to:
        raise InvalidInput("current_from must be before current_to", details={"field": "current_to"})
    window = spec.reference_from is not None or spec.reference_to is not None
    if window and spec.reference_dataset is not None:
        raise InvalidInput(
            "the reference is a window (reference_from, reference_to) or a dataset version (reference_dataset),"
            " not both",
            details={"field": "reference_dataset"},
        )
    if spec.reference_dataset is None:
        if spec.reference_from is None or spec.reference_to is None:
            missing = "reference_from" if spec.reference_from is None else "reference_to"
            raise InvalidInput(
                f"{missing} is missing: the reference is a window (reference_from and reference_to) or a dataset"
                " version (reference_dataset)",
                details={"field": missing},
            )
        if spec.reference_from >= spec.reference_to:
            raise InvalidInput("reference_from must be before reference_to", details={"field": "reference_to"})
        if spec.reference_from < spec.current_to and spec.current_from < spec.reference_to:
            raise InvalidInput(
                "the reference window overlaps the current window: the same traces would be on both sides",
                details={"field": "reference_to"},
            )
        if spec.reference_input_column or spec.reference_output_column:
            raise InvalidInput(
                "reference columns go with a reference_dataset", details={"field": "reference_input_column"}
            )
    else:
        _check_columns(platform, actor, spec)
    return project_id, name


def _check_columns(platform: Platform, actor: Actor, spec: DriftSpec) -> None:
    assert spec.reference_dataset is not None
    try:
        version = data.get_version(platform, actor, spec.reference_dataset)
    except NotFound as exc:
        raise NotFound(exc.message, details={"field": "reference_dataset"}) from None
    types = {c.name: c.type for c in version.columns}
    fields, _ = _fields(spec)
    if not fields:
        raise InvalidInput(
            f"name the text column of {version.ref} to compare with the traces' inputs (reference_input_column)"
            " or outputs (reference_output_column); its columns: " + ", ".join(types),
            details={"field": "reference_input_column", "columns": list(types)},
        )
    for f in fields:
        key = f"reference_{f}_column"
        column = getattr(spec, key)
        if column is None:
            raise InvalidInput(
                f"fields include {f}, so name the column of {version.ref} to compare it with ({key})",
                details={"field": key},
            )
        if column not in types:
            raise InvalidInput(
                f"dataset {version.ref} has no column {column!r} ({key}); its columns: {', '.join(types)}",
                details={"field": key, "columns": list(types)},
            )
        if types[column] not in ("string", "large_string"):
            raise InvalidInput(
                f"column {column!r} of {version.ref} holds {types[column]}, not text ({key})", details={"field": key}
            )


def _trace_texts(
    platform: Platform, actor: Actor, spec: DriftSpec, project_id: str, field: Field_, start: datetime, end: datetime
) -> tuple[int, Texts, bool]:
    filters = tracing.TraceFilters(start=start, end=end, project=project_id, model=spec.model, route=spec.route)
    got = tracing.sample_texts(platform, actor, filters, field, spec.max_samples, prompt_version=spec.prompt_version)
    return got.total, [(i, t) for i, t in got.texts], got.sampled


def _dataset_texts(platform: Platform, actor: Actor, spec: DriftSpec, field: Field_) -> tuple[int, Texts, bool]:
    """A seeded reservoir sample of a dataset column's non-empty texts (Algorithm R)."""
    assert spec.reference_dataset is not None
    column = getattr(spec, f"reference_{field}_column")
    rng = random.Random(spec.seed)  # nosec B311  # sampling, not security
    kept: Texts = []
    seen = 0
    with data.open_rows(platform, actor, spec.reference_dataset) as (_, parquet):
        for batch in parquet.iter_batches(batch_size=4096, columns=[column]):
            for value in batch.column(0).to_pylist():
                if not isinstance(value, str) or not value.strip():
                    continue
                seen += 1
                if len(kept) < spec.max_samples:
                    kept.append((None, value.strip()[:8000]))
                else:
                    j = rng.randrange(seen)
                    if j < spec.max_samples:
                        kept[j] = (None, value.strip()[:8000])
            if seen >= MAX_DATASET_ROWS:
                break
    return seen, kept, seen > spec.max_samples


def _order(item: tuple[str | None, str]) -> tuple[str, str]:
    """Texts in a fixed order (by text, then trace id), so the same texts give the same folds and report."""
    return item[1], item[0] or ""


def _reference_words(spec: DriftSpec) -> str:
    if spec.reference_dataset is not None:
        cols = [
            f"{f} ← {getattr(spec, f'reference_{f}_column')}"
            for f in ("input", "output")
            if getattr(spec, f"reference_{f}_column")
        ]
        return f"dataset {spec.reference_dataset} ({', '.join(cols)})"[:400]
    assert spec.reference_from is not None and spec.reference_to is not None
    return f"traces {spec.reference_from.isoformat()} → {spec.reference_to.isoformat()}"


def _embedder() -> Callable[[list[str]], Any]:
    from podium.guard.base import ScannerError
    from podium.guard.embedding import default_embedder

    try:
        return default_embedder().embed
    except ScannerError as exc:
        raise PodiumError(f"drift embeds texts with the built-in MiniLM: {exc}", code="unavailable") from None


def run_report(platform: Platform, actor: Actor, spec: DriftSpec, progress: Progress | None = None) -> DriftReport:
    """Compare the current window with the reference, field by field, and store the report (CPU-bound: run it
    off the event loop). `InvalidInput` names the field when a side has no texts or too few (fewer than
    `MIN_SAMPLES`); when the fields were not chosen, a field with too few is marked insufficient instead, as
    long as one field can be judged."""
    said = progress or (lambda _m: None)
    t0 = time.perf_counter()
    project_id, _ = check_spec(platform, actor, spec)
    fields, chosen = _fields(spec)
    embed = _embedder()
    reports: list[FieldReport] = []
    refused: list[InvalidInput] = []
    samples: list[tuple[FieldReport, Texts, Texts]] = []
    for f in fields:  # every side is sampled and counted before any analysis, so refusals come early
        said(f"{f}: sampling texts")
        if spec.reference_dataset is not None:
            ref_total, ref, ref_sampled = _dataset_texts(platform, actor, spec, f)
            ref_field = "reference_dataset"
        else:
            assert spec.reference_from is not None and spec.reference_to is not None
            ref_total, ref, ref_sampled = _trace_texts(
                platform, actor, spec, project_id, f, spec.reference_from, spec.reference_to
            )
            ref_field = "reference_from"
        cur_total, cur, cur_sampled = _trace_texts(
            platform, actor, spec, project_id, f, spec.current_from, spec.current_to
        )
        report = FieldReport(
            field=f,
            status="ok",
            reference_total=ref_total,
            current_total=cur_total,
            reference_used=len(ref),
            current_used=len(cur),
            sampled=ref_sampled or cur_sampled,
        )
        reports.append(report)
        sides = (("reference", ref_field, len(ref)), ("current", "current_from", len(cur)))
        short = [(side, name, n) for side, name, n in sides if n < MIN_SAMPLES]
        if not short:
            samples.append((report, sorted(ref, key=_order), sorted(cur, key=_order)))
            continue
        side, name, n = short[0]
        why = (
            f"the {side} side has {'no' if n == 0 else f'only {n}'} {f} text{'s' if n != 1 else ''}; a drift test"
            f" needs at least {MIN_SAMPLES} per side"
        )
        refused.append(InvalidInput(why, details={"field": name, "side": side, "texts": n, "minimum": MIN_SAMPLES}))
        report.status, report.detail = "insufficient", why
    if refused and (chosen or len(refused) == len(fields)):
        raise refused[0]
    for report, ref, cur in samples:
        analyse(
            report.field,
            ref,
            cur,
            auc_threshold=spec.auc_threshold,
            psi_threshold=spec.psi_threshold,
            seed=spec.seed,
            embed=embed,
            progress=said,
            report=report,
        )
    scores = [t.score for r in reports for t in r.tests if t.name == "embedding" and t.score is not None]
    now = utcnow()
    report_id = new_id("drr")
    result = DriftReport(
        id=report_id,
        project_id=project_id,
        drift=any(r.drift for r in reports),
        score=max(scores) if scores else None,
        reference=_reference_words(spec),
        current_from=spec.current_from,
        current_to=spec.current_to,
        created_by=actor.label,
        created_at=now,
        spec=spec,
        fields=reports,
        seconds=round(time.perf_counter() - t0, 3),
    )
    with platform.db.session() as s:
        s.add(
            DriftReportRow(
                id=report_id,
                project_id=project_id,
                drift=result.drift,
                score=result.score,
                current_from=spec.current_from,
                current_to=spec.current_to,
                reference=result.reference,
                spec=spec.model_dump(mode="json"),
                report=result.model_dump(mode="json", exclude={"spec"}),
                created_by=actor.label,
                created_at=now,
            )
        )
        record_audit(s, actor, "drift.report", "drift_report", report_id, project_id=project_id)
    return result


def start_report(platform: Platform, actor: Actor, spec: DriftSpec) -> JobInfo:
    """Check a report's question and queue it as a `drift.report` job acting as the caller; the job's result
    names the report (`report_id`)."""
    project_id, _ = check_spec(platform, actor, spec)
    key_id = actor.principal.key_id if actor.principal is not None else None
    return jobs.submit(
        platform.db,
        actor,
        "drift.report",
        {"spec": spec.model_dump(mode="json"), "key_id": key_id},
        project=project_id,
        internal=True,
    )


def get_report_job(platform: Platform, actor: Actor, job_id: str) -> JobInfo:
    """A `drift.report` job the caller sees (its result names the report once it succeeded)."""
    actor.require("viewer", "read drift reports")
    job = jobs.get_job(platform.db, actor, job_id, with_logs=False)
    if job.kind != "drift.report":
        raise NotFound(f"drift report job {job_id!r} not found")
    return job


# --- reads ---------------------------------------------------------------------------------------------------


def _info(row: DriftReportRow) -> DriftReportInfo:
    return DriftReportInfo(
        id=row.id,
        project_id=row.project_id,
        drift=row.drift,
        score=row.score,
        reference=row.reference,
        current_from=row.current_from,
        current_to=row.current_to,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _whole(row: DriftReportRow) -> DriftReport:
    try:
        return DriftReport.model_validate({**row.report, "spec": row.spec})
    except ValidationError as exc:  # a report stored by another version of Podium
        raise PodiumError(f"drift report {row.id} cannot be read: {exc.error_count()} fields differ") from None


def list_reports(
    platform: Platform, actor: Actor, *, project: str | None = None, limit: int = 100
) -> list[DriftReportInfo]:
    """The reports the caller sees, newest first (of one project with `project`)."""
    actor.require("viewer", "read drift reports")
    if not 1 <= limit <= MAX_LISTED:
        raise InvalidInput(f"limit must be between 1 and {MAX_LISTED}", details={"field": "limit"})
    q = select(DriftReportRow)
    if project:
        project_id, _ = _project(platform, actor, project)
        q = q.where(DriftReportRow.project_id == project_id)
    scope = actor.scope()
    if scope is not None:
        q = q.where(DriftReportRow.project_id.in_([p for p in scope if p is not None]))
    with platform.db.read_session() as s:
        rows = s.scalars(q.order_by(DriftReportRow.created_at.desc(), DriftReportRow.id.desc()).limit(limit)).all()
        return [_info(r) for r in rows]


def get_report(platform: Platform, actor: Actor, report_id: str) -> DriftReport:
    """One report whole."""
    actor.require("viewer", "read drift reports")
    with platform.db.read_session() as s:
        row = s.get(DriftReportRow, report_id)
        if row is None or not actor.sees(row.project_id):
            raise NotFound(f"drift report {report_id!r} not found")
        return _whole(row)


def latest(platform: Platform, actor: Actor, *, project: str | None = None) -> DriftReport | None:
    """The newest report of a project (the caller's key's by default), or None."""
    actor.require("viewer", "read drift reports")
    project_id, _ = _project(platform, actor, project)
    with platform.db.read_session() as s:
        row = s.scalars(
            select(DriftReportRow)
            .where(DriftReportRow.project_id == project_id)
            .order_by(DriftReportRow.created_at.desc(), DriftReportRow.id.desc())
            .limit(1)
        ).first()
        return _whole(row) if row is not None else None


def delete_report(platform: Platform, actor: Actor, report_id: str) -> None:
    """Delete a report (it keeps example texts of traces: a purge or a user's erasure of traces does not reach it)."""
    actor.require("member", "delete drift reports")
    with platform.db.session() as s:
        row = s.get(DriftReportRow, report_id)
        if row is None or not actor.sees(row.project_id):
            raise NotFound(f"drift report {report_id!r} not found")
        actor.require_in(row.project_id, "member", "delete drift reports")
        s.delete(row)
        record_audit(s, actor, "drift.delete", "drift_report", report_id, project_id=row.project_id)
