"""Dashboard pages for fine-tuning: the blueprints and runs; one blueprint (its YAML, what planning measured and
estimated, its runs, and a form to compare it with another); the diff of two blueprints; and one run (each
stage's status, times, outputs or error and the gate's checks, charts of the training telemetry by step, the log
tail, cancel and promote, and the lineage from the dataset versions to the deployed alias).

Every figure comes from `finetune.service` and `finetune.runs` (and, for a registered version's lineage,
`models.service`), called as the signed-in user; this module only shapes it for the templates, which escape
everything (YAML, outputs, errors and log lines are never markup).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.core.errors import PodiumError
from podium.core.http import get_platform
from podium.core.platform import Platform
from podium.finetune import runs, service
from podium.finetune.pipeline import STABLE, STAGES
from podium.finetune.runs import FINAL, RunDetail
from podium.finetune.service import BlueprintDetail
from podium.models import service as models_service
from podium.web.charts import Chart, Series, layout_chart
from podium.web.shell import PageSession, check_csrf, error_page, page_session, redirect, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e")
DRAWN_POINTS = 200  # a dot per step up to this many steps (lines alone beyond)
REFRESH_SECONDS = 5  # a queued or running run's page reloads this often (unless `?follow=0`)


# --- formatting --------------------------------------------------------------------------------------


def fmt_seconds(value: float | None) -> str:
    """A duration in words: `42 s`, `3 min 5 s`, `2 h 4 min`; `—` for none."""
    if value is None or not math.isfinite(value):
        return "—"
    s = round(value)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def fmt_bytes(value: float | None) -> str:
    """A size in binary units: `812 MiB`, `1.4 GiB`; `—` for none."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def fmt_count(value: float | None) -> str:
    """A count with thousands separators; `—` for none."""
    return "—" if value is None else f"{value:,.0f}"


def fmt_number(value: float) -> str:
    """An axis or metric value: three significant digits, small ones (learning rates) in scientific form."""
    if value == 0:
        return "0"
    if abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.3g}"


def pretty(value: Any) -> str:
    """A stage's outputs (or any value) as indented JSON text, for a `<pre>` (the template escapes it)."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def dataset_href(ref: str) -> str:
    """The dataset page of a pinned reference (`support@3` → `/datasets/support/3`; an id works the same)."""
    name, _, version = ref.partition("@")
    return f"/datasets/{quote(name, safe='')}/{quote(version or 'latest', safe='')}"


# --- a run's stages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageView:
    """A stage of a run as the page shows it: its status (`pending` before it starts), times and what it made
    or why it failed."""

    name: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    outputs: dict[str, Any] | None
    error: str | None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def stage_views(run: RunDetail) -> list[StageView]:
    """The pipeline's stages in order, each with what the run recorded of it."""
    views = []
    for name in STAGES:
        entry = run.stages.get(name) or {}
        started, finished = _when(entry.get("started_at")), _when(entry.get("finished_at"))
        outputs = entry.get("outputs")
        views.append(
            StageView(
                name=name,
                status=str(entry.get("status") or "pending"),
                started_at=started,
                finished_at=finished,
                seconds=(finished - started).total_seconds() if started and finished else None,
                outputs=outputs if isinstance(outputs, dict) else None,
                error=str(entry["error"]) if entry.get("error") else None,
            )
        )
    return views


# --- charts of the training telemetry ----------------------------------------------------------------


class StepSlot(datetime):
    """A chart slot that is a training step. The shared chart code lays out slots of time and writes their
    labels with `strftime`; a step slot writes its step instead, so the geometry is the same code's."""

    step: int = 0

    def strftime(self, format: str) -> str:  # the name and signature of what it overrides
        return f"step {self.step}"


def step_slot(step: int) -> StepSlot:
    """The slot of one step (the date part is never shown)."""
    slot = StepSlot(2000, 1, 1, tzinfo=UTC)
    slot.step = step
    return slot


CHARTS = (  # key, title, unit, series: (name, metric kind, value key)
    ("loss", "Loss", "loss", (("train loss", "train", "loss"), ("eval loss", "eval", "eval_loss"))),
    ("learning-rate", "Learning rate", "lr", (("learning rate", "train", "learning_rate"),)),
    ("tokens-per-second", "Training tokens/s", "tokens/s", (("tokens/s", "train", "tokens_per_second"),)),
)


def telemetry_charts(run: RunDetail) -> list[Chart]:
    """Loss (and eval loss, if the run logged any), learning rate and tokens/s by step, one chart each; a series
    with no value at all is left out."""
    by_kind: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "eval": {}}
    for m in run.metrics:
        by_kind.setdefault(m.kind, {})[m.step] = m.values
    steps = sorted({m.step for m in run.metrics})
    slots: list[datetime] = [step_slot(s) for s in steps]
    charts = []
    for key, title, unit, wanted in CHARTS:
        series = []
        for name, kind, field in wanted:
            values: list[float | None] = []
            for step in steps:
                v = by_kind.get(kind, {}).get(step, {}).get(field)
                number = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
                values.append(number if number is not None and math.isfinite(number) else None)
            if any(v is not None for v in values):
                series.append(Series(name, values))
        chart = Chart(key=key, title=title, unit=unit, series=series)
        charts.append(layout_chart(chart, slots, "", fmt_number, PALETTE))
    return charts


# --- lineage -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lineage:
    """Where a run's tuned model came from and where it went: the dataset versions, the blueprint, the eval
    runs, the registered version (and its lineage as the registry recorded it) and the deployment."""

    datasets: list[tuple[str, str, str]]  # (role, reference, page)
    blueprint: str
    eval_runs: list[tuple[str, str]]  # (who: base or tuned, eval run id)
    eval_note: str | None
    registered: dict[str, Any] | None  # the register stage's outputs
    version: models_service.VersionInfo | None  # the registered version, if the caller sees it
    version_error: str | None
    deployed: dict[str, Any] | None  # the deploy stage's outputs


def lineage(platform: Platform, session: PageSession, run: RunDetail, bp: BlueprintDetail | None) -> Lineage:
    """A run's lineage: from the blueprint's datasets (training, validation, eval; the first two by their exact
    version ids once the registry recorded them) to the alias and route the deploy stage moved."""
    outputs = {name: (run.stages.get(name) or {}).get("outputs") or {} for name in STAGES}
    registered = outputs["register"] or None
    version: models_service.VersionInfo | None = None
    version_error = None
    if registered and registered.get("ref"):
        try:
            version = models_service.get_version(platform, session.actor, str(registered["ref"]))
        except PodiumError as exc:
            version_error = exc.message
    recorded = version.lineage if version is not None else {}
    spec = bp.spec if bp is not None else {}
    refs = {
        "train": (spec.get("data") or {}).get("train") or recorded.get("train"),
        "validation": (spec.get("data") or {}).get("validation") or recorded.get("validation"),
        "eval": (spec.get("eval") or {}).get("dataset"),
    }
    datasets = []
    for role, ref in refs.items():
        if not isinstance(ref, str):
            continue
        exact = recorded.get(f"{role}_version_id")
        page = dataset_href(f"{ref.partition('@')[0]}@{exact}") if isinstance(exact, str) else dataset_href(ref)
        datasets.append((role, ref, page))
    evaluated = outputs["evaluate"]
    eval_runs = [(who, str(evaluated[f"{who}_run"])) for who in ("base", "tuned") if evaluated.get(f"{who}_run")]
    note = str(evaluated["skipped"]) if evaluated.get("skipped") else None
    return Lineage(
        datasets=datasets,
        blueprint=run.blueprint_id,
        eval_runs=eval_runs,
        eval_note=note,
        registered=registered,
        version=version,
        version_error=version_error,
        deployed=outputs["deploy"] or None,
    )


def _helpers() -> dict[str, Any]:
    return {
        "fmt_seconds": fmt_seconds,
        "fmt_bytes": fmt_bytes,
        "fmt_count": fmt_count,
        "fmt_number": fmt_number,
        "pretty": pretty,
        "dataset_href": dataset_href,
        "quote": lambda v: quote(str(v), safe=""),
    }


# --- pages -------------------------------------------------------------------------------------------


@router.get("/finetunes")
def finetunes_page(request: Request, session: SessionDep) -> Response:
    """The blueprints the user sees (base model, training data, method, estimate) and the runs (status, stage,
    progress), newest first."""
    platform = get_platform(request)
    try:
        blueprints = service.list_blueprints(platform, session.actor)
        run_list = runs.list_runs(platform, session.actor)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "finetune/list.html", session, blueprints=blueprints, runs=run_list, **_helpers())


@router.get("/finetunes/diff")
def diff_page(request: Request, session: SessionDep) -> Response:
    """Two blueprints compared (`?a=&b=`): the settings that differ and the unified diff of their YAML; without
    both, the form to choose them."""
    platform = get_platform(request)
    a = (request.query_params.get("a") or "").strip()
    b = (request.query_params.get("b") or "").strip()
    try:
        blueprints = service.list_blueprints(platform, session.actor)
        result = service.diff(platform, session.actor, a, b) if a and b else None
    except PodiumError as exc:
        return error_page(request, session, exc)
    lines = [(line, _line_kind(line)) for line in result.diff.splitlines()] if result is not None else []
    return render(
        request,
        "finetune/diff.html",
        session,
        blueprints=blueprints,
        a=a,
        b=b,
        diff=result,
        lines=lines,
        **_helpers(),
    )


def _line_kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "added", "-": "removed"}.get(line[:1], "same")


@router.get("/finetunes/blueprints/{blueprint_id}")
def blueprint_page(request: Request, blueprint_id: str, session: SessionDep) -> Response:
    """A blueprint: its settings in brief, its YAML, what planning measured (rows, token lengths, truncations)
    and estimated, its runs, and a form to compare it with another."""
    platform = get_platform(request)
    try:
        bp = service.get_blueprint(platform, session.actor, blueprint_id)
        others = [o for o in service.list_blueprints(platform, session.actor) if o.id != bp.id]
        run_list = runs.list_runs(platform, session.actor, blueprint=bp.id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "finetune/blueprint.html", session, bp=bp, others=others, runs=run_list, **_helpers())


@router.get("/finetunes/runs/{run_id}")
def run_page(request: Request, run_id: str, session: SessionDep) -> Response:
    """A run: its stages (status, times, outputs or error, the gate's checks), charts of its training telemetry,
    its log tail, cancel or promote, and its lineage. A queued or running run's page reloads itself every few
    seconds (`?follow=0` stops that)."""
    platform = get_platform(request)
    try:
        run = runs.get_run(platform, session.actor, run_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    bp: BlueprintDetail | None = None
    try:
        bp = service.get_blueprint(platform, session.actor, run.blueprint_id)
    except PodiumError:
        bp = None  # the run stays readable without its blueprint
    stages = stage_views(run)
    gate = next(s for s in stages if s.name == "gate")
    deployed = (run.stages.get("deploy") or {}).get("outputs") or {}
    lined = lineage(platform, session, run, bp)
    promoted = lined.version is not None and STABLE in lined.version.aliases
    follow = request.query_params.get("follow") != "0"
    return render(
        request,
        "finetune/run.html",
        session,
        run=run,
        bp=bp,
        stages=stages,
        gate=gate,
        charts=telemetry_charts(run),
        draw_points=len({m.step for m in run.metrics}) <= DRAWN_POINTS,
        lineage=lined,
        promoted=promoted,
        can_cancel=run.status not in FINAL,
        can_promote=run.status == "succeeded" and bool(deployed) and not promoted,
        refresh=REFRESH_SECONDS if follow and run.status not in FINAL else None,
        follow=follow,
        **_helpers(),
    )


@router.post("/finetunes/runs/{run_id}/cancel")
def cancel_page(request: Request, run_id: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Cancel a queued or running run from its page (the service checks the caller's role and the run's state)."""
    try:
        check_csrf(session, csrf)
        runs.cancel(get_platform(request), session.actor, run_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/finetunes/runs/{quote(run_id, safe='')}")


@router.post("/finetunes/runs/{run_id}/promote")
def promote_page(request: Request, run_id: str, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Promote a deployed run's tuned version from its page: its model's `stable` alias moves to it (and its
    route, if any, sends it everything)."""
    try:
        check_csrf(session, csrf)
        runs.promote(get_platform(request), session.actor, run_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/finetunes/runs/{quote(run_id, safe='')}")
