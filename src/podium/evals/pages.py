"""Dashboard pages for eval runs: the list (newest first, with a form comparing two runs); one run (status,
progress, counts, each score's mean with its 95% interval as a table and as SVG, the gate's checks, evaluator
errors, the bias test, then its rows a page at a time, optionally only the failed ones); two runs compared
(per score the paired test and a chart of both means and of wins, losses and ties; per row both outputs and
the score changes, regressions first).

Every figure comes from `evals.service`, called as the signed-in user; this module only shapes it for the
templates: SVG geometry for the charts (on `web.charts`' round steps, drawn by the templates, no script) and
table cells cut to a readable length. Data is always escaped by the templates (autoescape; nothing from a run,
a dataset or a model's answer is marked safe).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from podium.core.errors import InvalidInput, PodiumError
from podium.core.http import get_platform
from podium.core.money import format_micros
from podium.data import service as data
from podium.evals import service
from podium.evals.compare import Comparison, MetricComparison, RowDelta
from podium.evals.service import Check, RowInfo, RowsPage, RunInfo
from podium.web.cells import CELL_CHARS, Cell, cell
from podium.web.charts import nice_step
from podium.web.shell import PageSession, error_page, int_param, page_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

RUNS_LISTED = 100
ROWS_PER_PAGE = 25
COMPARED_PER_PAGE = 50
MAX_ROWS_PER_PAGE = 200
SCORES_LISTED = 4  # scores shown per run in the list
INTERNAL_FIELDS = ("_counterfactual_of", "_swaps")  # fields a bias run adds to its counterfactual rows
COMPARE_FILTERS = ("", "changed", "regressed")


# --- formatting --------------------------------------------------------------------------------------


def fmt_score(value: float | None) -> str:
    """A score or a mean: three decimals below 10, one below 1,000, whole above; `—` for none."""
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) < 10:
        return f"{value:.3f}"
    if abs(value) < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def fmt_delta(value: float | None) -> str:
    """A change, signed: `+0.050`, `-1.000`, and `0.000` for none."""
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) < 5e-4:
        return "0.000"
    return ("+" if value > 0 else "") + fmt_score(value)


def fmt_p(value: float | None) -> str:
    """A p value: three significant digits, `<0.001` below that."""
    if value is None or not math.isfinite(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def fmt_count(value: float | None) -> str:
    """A count with thousands separators; `—` for none."""
    return "—" if value is None else f"{value:,.0f}"


def fmt_interval(low: float | None, high: float | None, fmt: Any = fmt_score) -> str:
    """`[low, high]`, or empty when there is no interval."""
    if low is None or high is None:
        return ""
    return f"[{fmt(low)}, {fmt(high)}]"


def fmt_duration(run: RunInfo) -> str:
    """How long a run took (or has been running from its start to its end): `42 ms`, `3.2 s`, `4 min 5 s`."""
    if run.started_at is None or run.finished_at is None:
        return "—"
    seconds = max((run.finished_at - run.started_at).total_seconds(), 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _flag(request: Request, name: str) -> bool:
    return (request.query_params.get(name) or "").lower() in ("1", "true", "yes", "on")


def _url(path: str, params: Mapping[str, str | int | None]) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", 0)}
    return path + (f"?{urlencode(kept)}" if kept else "")


# --- runs as the pages show them --------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A score of a run: its mean over `n` rows with a 95% bootstrap interval, and its direction."""

    name: str
    n: int
    mean: float | None
    low: float | None
    high: float | None
    lower_is_better: bool


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def estimates(run: RunInfo) -> list[Estimate]:
    """The run's scores from its summary, by name."""
    scores = run.summary.get("scores") or {}
    out = []
    for name, e in sorted(scores.items()):
        if isinstance(e, dict):
            out.append(
                Estimate(
                    str(name),
                    int(e.get("n") or 0),
                    _float(e.get("mean")),
                    _float(e.get("low")),
                    _float(e.get("high")),
                    bool(e.get("lower_is_better")),
                )
            )
    return out


def gate(run: RunInfo) -> str | None:
    """`passed` or `failed` when the run had thresholds; None when it had none (or never finished)."""
    checks = run.summary.get("checks")
    if not checks:
        return None
    return "passed" if run.summary.get("passed") else "failed"


def checks_of(run: RunInfo) -> list[Check]:
    """The gate's checks, a malformed one left out."""
    try:
        return run.checks
    except ValueError:
        return []


def dataset_name(run: RunInfo) -> str:
    """The dataset the run evaluated (its reference without the version)."""
    return run.dataset.partition("@")[0]


def dataset_href(run: RunInfo) -> str:
    """The page of the exact dataset version the run evaluated (its id: labels move, ids do not)."""
    return f"/datasets/{dataset_name(run)}/{run.dataset_version_id}"


def rows_planned(run: RunInfo) -> int:
    """The dataset's rows in a run: a bias run counts the counterfactual rows it adds after them in
    `row_count` and `rows_done` too."""
    swapped = int((run.summary.get("bias") or {}).get("counterfactual_rows") or 0)
    return max(0, run.row_count - swapped)


def rows_done(run: RunInfo) -> tuple[int, int]:
    """Rows done of the dataset's rows, and the swapped copies done beyond them."""
    originals = rows_planned(run)
    return min(run.rows_done, originals), max(0, run.rows_done - originals)


def progress(run: RunInfo) -> float:
    """Rows done as a percentage of the rows planned."""
    if run.row_count <= 0:
        return 100.0 if run.status in service.FINISHED else 0.0
    return round(min(100.0, 100 * run.rows_done / run.row_count), 1)


def input_field(run: RunInfo) -> str:
    """The dataset column the target was sent (a messages column, or the input column)."""
    fields = run.config.get("fields") or {}
    return str(fields.get("messages") or fields.get("input") or "input")


def reference_field(run: RunInfo) -> str:
    """The dataset column holding the expected answer."""
    fields = run.config.get("fields") or {}
    return str(fields.get("reference") or "reference")


# --- charts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """A value axis: its round ends, its tick values and their labels."""

    lo: float
    hi: float
    ticks: list[tuple[float, str]]

    def at(self, value: float, start: float, length: float) -> float:
        """Where `value` falls on an axis drawn from `start` over `length` (towards the end for `hi`)."""
        return round(start + (value - self.lo) / (self.hi - self.lo) * length, 2)


def value_axis(values: Iterable[float | None]) -> Axis:
    """An axis over `values` and zero: 0 to 1 (in quarters) for values within it, which most scores are;
    otherwise round ends on a round step (`web.charts.nice_step`)."""
    points = [v for v in values if v is not None and math.isfinite(v)]
    lo, hi = min([0.0, *points]), max([0.0, *points])
    if lo >= 0 and hi <= 1:
        lo, hi, step = 0.0, 1.0, 0.25
    else:
        if hi - lo < 1e-12:
            hi = lo + 1.0
        step = nice_step(hi - lo)
        lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    count = round((hi - lo) / step)
    ticks = [(lo + step * k, _tick(lo + step * k, step)) for k in range(count + 1)]
    return Axis(lo, hi, ticks)


def _tick(value: float, step: float) -> str:
    """A tick's label with as many decimals as the step needs (`0.25` → two, `5` → none)."""
    decimals = len(f"{step:.6f}".rstrip("0").partition(".")[2])
    return f"{value:,.{decimals}f}"


@dataclass(frozen=True)
class ScoreChart:
    """A score's mean as a horizontal bar from zero, its 95% interval as a whisker, on a round axis."""

    key: str
    name: str
    width: int
    height: int
    left: int
    right: int
    bar_y: int
    bar_h: int
    axis_y: int
    n: int
    mean: float | None
    low: float | None
    high: float | None
    x_zero: float
    x_mean: float | None
    x_low: float | None
    x_high: float | None
    ticks: list[tuple[float, str]]
    lower_is_better: bool


SC_WIDTH = 360
SC_LEFT = 14
SC_RIGHT = 18
SC_TOP = 8
SC_BAR = 20
SC_AXIS_GAP = 8
SC_LABELS = 18


def score_chart(e: Estimate) -> ScoreChart:
    """Lay out one score's chart: the axis covers zero, the mean and its interval."""
    axis = value_axis((e.mean, e.low, e.high))
    inner = SC_WIDTH - SC_LEFT - SC_RIGHT

    def x(v: float | None) -> float | None:
        return None if v is None else axis.at(v, SC_LEFT, inner)

    axis_y = SC_TOP + SC_BAR + SC_AXIS_GAP
    return ScoreChart(
        key=f"score-{e.name}",
        name=e.name,
        width=SC_WIDTH,
        height=axis_y + SC_LABELS,
        left=SC_LEFT,
        right=SC_RIGHT,
        bar_y=SC_TOP,
        bar_h=SC_BAR,
        axis_y=axis_y,
        n=e.n,
        mean=e.mean,
        low=e.low,
        high=e.high,
        x_zero=axis.at(0.0, SC_LEFT, inner),
        x_mean=x(e.mean),
        x_low=x(e.low),
        x_high=x(e.high),
        ticks=[(axis.at(v, SC_LEFT, inner), label) for v, label in axis.ticks],
        lower_is_better=e.lower_is_better,
    )


@dataclass(frozen=True)
class SideBar:
    """One run's bar in a metric's chart: its box, its mean and, when known, its 95% interval's whisker."""

    side: str  # `a` or `b`
    x: float
    y: float
    width: float
    height: float
    mean: float | None
    low: float | None
    high: float | None
    y_low: float | None
    y_high: float | None


@dataclass(frozen=True)
class MetricChart:
    """A score's mean in run A and in run B as two bars from zero with their intervals."""

    key: str
    name: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    y_zero: float
    bars: list[SideBar]
    ticks: list[tuple[float, str]]
    higher_is_better: bool


MC_WIDTH = 260
MC_HEIGHT = 190
MC_LEFT = 46
MC_RIGHT = 10
MC_TOP = 10
MC_BOTTOM = 24


def metric_chart(m: MetricComparison, a: Estimate | None, b: Estimate | None) -> MetricChart:
    """Lay out a metric's chart: bars at the paired means; whiskers at each run's own interval when that run's
    mean was taken over the same rows as the paired test (otherwise it would describe other rows)."""

    def interval(e: Estimate | None) -> tuple[float | None, float | None]:
        if e is None or e.n != m.test.n:
            return None, None
        return e.low, e.high

    (la, ha), (lb, hb) = interval(a), interval(b)
    axis = value_axis((m.test.mean_a, m.test.mean_b, la, ha, lb, hb))
    plot_h = MC_HEIGHT - MC_TOP - MC_BOTTOM
    plot_w = MC_WIDTH - MC_LEFT - MC_RIGHT

    def y(v: float) -> float:
        return round(MC_TOP + plot_h - axis.at(v, 0, plot_h), 2)

    def y_or_none(v: float | None) -> float | None:
        return None if v is None else y(v)

    zero = y(0.0)
    slot = plot_w / 2
    width = round(slot * 0.5, 2)
    bars = []
    for i, (side, mean, low, high) in enumerate((("a", m.test.mean_a, la, ha), ("b", m.test.mean_b, lb, hb))):
        top = zero if mean is None else y(mean)
        left = round(MC_LEFT + i * slot + (slot - width) / 2, 2)
        box = (left, min(top, zero), width, round(abs(zero - top), 2))
        bars.append(SideBar(side, *box, mean, low, high, y_or_none(low), y_or_none(high)))
    ticks = [(y(v), label) for v, label in axis.ticks]
    return MetricChart(
        f"metric-{m.name}",
        m.name,
        MC_WIDTH,
        MC_HEIGHT,
        MC_LEFT,
        MC_RIGHT,
        MC_TOP,
        MC_BOTTOM,
        zero,
        bars,
        ticks,
        m.higher_is_better,
    )


@dataclass(frozen=True)
class Segment:
    """A block of a stacked bar: wins, losses or ties of one metric."""

    kind: str
    count: int
    x: float
    width: float
    percent: float


@dataclass(frozen=True)
class OutcomeRow:
    """One metric's wins, losses and ties as a stacked bar over its paired rows."""

    name: str
    n: int
    y: float
    segments: list[Segment]


@dataclass(frozen=True)
class OutcomeChart:
    """Wins, losses and ties of run B against run A, a stacked bar per metric (shares of its paired rows)."""

    width: int
    height: int
    left: int
    right: int
    bar_h: int
    rows: list[OutcomeRow]
    ticks: list[tuple[float, str]]
    axis_y: float


OC_WIDTH = 560
OC_LEFT = 120
OC_RIGHT = 16
OC_ROW = 28
OC_BAR = 18
OC_TOP = 6
OC_LABELS = 20


def outcome_chart(metrics: Sequence[MetricComparison]) -> OutcomeChart:
    """Lay out the stacked bars: losses first (the reviewer reads the damage first), then ties, then wins."""
    inner = OC_WIDTH - OC_LEFT - OC_RIGHT
    rows = []
    for i, m in enumerate(metrics):
        t = m.test
        total = t.wins + t.losses + t.ties
        x = float(OC_LEFT)
        segments = []
        for kind, count in (("losses", t.losses), ("ties", t.ties), ("wins", t.wins)):
            width = round(inner * count / total, 2) if total else 0.0
            segments.append(Segment(kind, count, round(x, 2), width, round(100 * count / total, 1) if total else 0.0))
            x += width
        rows.append(OutcomeRow(m.name, total, OC_TOP + i * OC_ROW, segments))
    axis_y = OC_TOP + len(metrics) * OC_ROW
    ticks = [(round(OC_LEFT + inner * k / 4, 2), f"{25 * k}%") for k in range(5)]
    return OutcomeChart(OC_WIDTH, axis_y + OC_LABELS, OC_LEFT, OC_RIGHT, OC_BAR, rows, ticks, axis_y)


# --- the rows of a run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One evaluator's word on a row: its label, explanation, and error with the judge's raw answer."""

    evaluator: str
    label: Cell | None
    explanation: Cell | None
    error: Cell | None
    raw: str | None


@dataclass(frozen=True)
class RowView:
    """A row of a run as the table shows it."""

    index: int
    input: Cell
    other_fields: str | None  # the row's other dataset fields, as JSON, when it has any
    output: Cell | None
    reference: Cell
    scores: dict[str, float]
    status: str
    error: Cell | None
    verdicts: list[Verdict]
    trace_id: str | None
    latency_ms: float | None
    cost: str
    cached: bool
    counterfactual_of: int | None
    swaps: str


def _text(value: Any, limit: int = CELL_CHARS) -> Cell | None:
    return None if value is None else cell(value if isinstance(value, str) else str(value), limit)


def _verdicts(details: Mapping[str, Any]) -> list[Verdict]:
    out = []
    for name, d in sorted(details.items()):
        if not isinstance(d, dict):
            continue
        raw = d.get("raw")
        verdict = Verdict(
            str(name),
            _text(d.get("label"), 80),
            _text(d.get("explanation"), 600),
            _text(d.get("error"), 600),
            None if raw is None else str(raw),
        )
        if verdict.label or verdict.explanation or verdict.error or verdict.raw is not None:
            out.append(verdict)
    return out


def row_view(run: RunInfo, r: RowInfo) -> RowView:
    """A row's cells: the input column (or every field when the run's input column is missing), the output,
    the reference, its scores, its status and error, each evaluator's verdict, its trace."""
    field_name, ref_name = input_field(run), reference_field(run)
    inputs = {k: v for k, v in r.inputs.items() if k not in INTERNAL_FIELDS}
    if field_name in inputs:
        shown = cell(inputs[field_name])
        others = {k: v for k, v in inputs.items() if k not in (field_name, ref_name)}
    else:
        shown, others = cell(inputs), {}
    other_text = None
    if others:
        dumped = orjson.dumps(others, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
        other_text = dumped if len(dumped) <= 4000 else dumped[:4000] + "…"
    of = r.inputs.get("_counterfactual_of")
    swaps = r.inputs.get("_swaps") or []
    swap_text = ", ".join(f"{s[0]} → {s[1]}" for s in swaps if isinstance(s, list | tuple) and len(s) == 2)
    return RowView(
        index=r.index,
        input=shown,
        other_fields=other_text,
        output=None if r.output is None else cell(r.output),
        reference=cell(r.reference),
        scores=r.scores,
        status=r.status,
        error=_text(r.error, 600),
        verdicts=_verdicts(r.details),
        trace_id=r.trace_id,
        latency_ms=r.latency_ms,
        cost=format_micros(r.cost_micros) if r.cost_micros else "",
        cached=r.cached,
        counterfactual_of=int(of) if isinstance(of, int) else None,
        swaps=swap_text,
    )


def score_names(run: RunInfo, rows: Iterable[RowInfo]) -> list[str]:
    """The scores to show as columns: the summary's, then any other a row on the page has."""
    names = [str(n) for n in sorted((run.summary.get("scores") or {}).keys())]
    for r in rows:
        names.extend(n for n in sorted(r.scores) if n not in names)
    return names


# --- the compared rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeltaRow:
    """A paired row of a comparison: both outputs (or errors), each score's change, and which way it went."""

    index: int
    input: Cell
    output_a: Cell | None
    output_b: Cell | None
    error_a: Cell | None
    error_b: Cell | None
    deltas: dict[str, float]
    regressed: list[str]
    improved: list[str]
    verdict: str  # `regressed`, `improved`, `mixed` (both), `same`, or `unscored` (no shared score)


def delta_row(field_name: str, r: RowDelta) -> DeltaRow:
    inputs = {k: v for k, v in r.inputs.items() if k not in INTERNAL_FIELDS}
    shown = cell(inputs[field_name]) if field_name in inputs else cell(inputs)
    if r.regressed and r.improved:
        verdict = "mixed"
    elif r.regressed:
        verdict = "regressed"
    elif r.improved:
        verdict = "improved"
    elif r.deltas:
        verdict = "same"
    else:
        verdict = "unscored"
    return DeltaRow(
        index=r.index,
        input=shown,
        output_a=None if r.output_a is None else cell(r.output_a),
        output_b=None if r.output_b is None else cell(r.output_b),
        error_a=_text(r.error_a, 600),
        error_b=_text(r.error_b, 600),
        deltas=r.deltas,
        regressed=r.regressed,
        improved=r.improved,
        verdict=verdict,
    )


def _selected_rows(cmp: Comparison, only: str) -> list[RowDelta]:
    if only == "regressed":
        return [r for r in cmp.rows if r.regressed]
    if only == "changed":
        return [r for r in cmp.rows if r.regressed or r.improved]
    return list(cmp.rows)


def _previous(runs: Sequence[RunInfo]) -> dict[str, str]:
    """For each run, the run before it of the same name over the same dataset version (newest first)."""
    out: dict[str, str] = {}
    for i, r in enumerate(runs):
        for older in runs[i + 1 :]:
            if older.name == r.name and older.dataset_version_id == r.dataset_version_id:
                out[r.id] = older.id
                break
    return out


FORMATS: dict[str, Any] = {
    "fmt_score": fmt_score,
    "fmt_delta": fmt_delta,
    "fmt_p": fmt_p,
    "fmt_count": fmt_count,
    "fmt_interval": fmt_interval,
    "fmt_micros": format_micros,
}


# --- pages -------------------------------------------------------------------------------------------


@router.get("/evals")
def runs_page(request: Request, session: SessionDep) -> Response:
    """The newest runs the user sees (optionally of one name): status, target, dataset, rows, main scores,
    the gate; and a form comparing two of them."""
    name = (request.query_params.get("name") or "").strip()
    try:
        runs = service.list_runs(get_platform(request), session.actor, name=name or None, limit=RUNS_LISTED)
    except PodiumError as exc:
        return error_page(request, session, exc)
    finished = [r for r in runs if r.status in service.FINISHED]
    return render(
        request,
        "evals/list.html",
        session,
        runs=runs,
        name=name,
        scores={r.id: estimates(r) for r in runs},
        gates={r.id: gate(r) for r in runs},
        previous=_previous(finished),
        choices=finished,
        scores_listed=SCORES_LISTED,
        dataset_href=dataset_href,
        rows_done=rows_done,
        rows_planned=rows_planned,
        **FORMATS,
    )


@router.get("/evals/compare")
def compare_page(request: Request, session: SessionDep) -> Response:
    """Run `?b=` against run `?a=` over the same rows: per score the paired test (means, the change with its
    interval, wins, losses and ties, p value) and charts of it; per row both outputs and the changes,
    regressions first, a page at a time (`?only=regressed` or `changed` narrows them)."""
    platform = get_platform(request)
    a_id, b_id = (request.query_params.get("a") or "").strip(), (request.query_params.get("b") or "").strip()
    only = request.query_params.get("only") or ""
    try:
        if not a_id or not b_id:
            raise InvalidInput(
                "choose two runs to compare: /evals/compare?a=evr_…&b=evr_… (a is the baseline, b the candidate)",
                details={"field": "a" if not a_id else "b"},
            )
        if only not in COMPARE_FILTERS:
            raise InvalidInput("only must be 'changed' or 'regressed'", details={"field": "only"})
        offset = int_param(request, "offset", 0, 0, 10**9)
        limit = int_param(request, "limit", COMPARED_PER_PAGE, 1, MAX_ROWS_PER_PAGE)
        run_a = service.get_run(platform, session.actor, a_id)
        run_b = service.get_run(platform, session.actor, b_id)
        cmp = service.compare_runs(platform, session.actor, a_id, b_id)
        choices = [
            r for r in service.list_runs(platform, session.actor, limit=RUNS_LISTED) if r.status in service.FINISHED
        ]
    except PodiumError as exc:
        return error_page(request, session, exc)
    for r in (run_b, run_a):
        if all(c.id != r.id for c in choices):
            choices.insert(0, r)
    est_a = {e.name: e for e in estimates(run_a)}
    est_b = {e.name: e for e in estimates(run_b)}
    selected = _selected_rows(cmp, only)
    page = selected[offset : offset + limit]
    field_name = input_field(run_a)

    def page_url(at: int) -> str:
        return _url(
            "/evals/compare",
            {"a": a_id, "b": b_id, "only": only, "limit": limit if limit != COMPARED_PER_PAGE else None, "offset": at},
        )

    return render(
        request,
        "evals/compare.html",
        session,
        a=run_a,
        b=run_b,
        cmp=cmp,
        metric_charts=[metric_chart(m, est_a.get(m.name), est_b.get(m.name)) for m in cmp.metrics],
        outcomes=outcome_chart(cmp.metrics),
        rows=[delta_row(field_name, r) for r in page],
        metric_names=[m.name for m in cmp.metrics],
        regressed=sum(1 for r in cmp.rows if r.regressed),
        improved=sum(1 for r in cmp.rows if r.improved),
        unchanged=sum(1 for r in cmp.rows if not r.regressed and not r.improved),
        selected=len(selected),
        offset=offset,
        limit=limit,
        only=only,
        prev_url=page_url(max(0, offset - limit)) if offset > 0 else None,
        next_url=page_url(offset + limit) if offset + limit < len(selected) else None,
        filter_url=lambda value: _url(
            "/evals/compare",
            {"a": a_id, "b": b_id, "only": value, "limit": limit if limit != COMPARED_PER_PAGE else None},
        ),
        choices=choices,
        dataset_href=dataset_href,
        **FORMATS,
    )


@router.get("/evals/runs/{run_id}")
def run_page(request: Request, run_id: str, session: SessionDep) -> Response:
    """A run: status, progress, counts and cost, its scores with 95% intervals (table and charts), the gate's
    checks, evaluator errors, the bias test; then its rows a page at a time (`?failed=1`: failed rows only)."""
    platform = get_platform(request)
    try:
        run = service.get_run(platform, session.actor, run_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    failed = _flag(request, "failed")
    rows: RowsPage | None = None
    rows_error: PodiumError | None = None
    offset, limit = 0, ROWS_PER_PAGE
    try:
        offset = int_param(request, "offset", 0, 0, 10**9)
        limit = int_param(request, "limit", ROWS_PER_PAGE, 1, MAX_ROWS_PER_PAGE)
        rows = service.rows_page(platform, session.actor, run.id, offset=offset, limit=limit, failed=failed)
    except PodiumError as exc:
        rows_error = exc
    version: data.VersionInfo | None = None
    try:
        version = data.get_version(platform, session.actor, f"{dataset_name(run)}@{run.dataset_version_id}")
    except PodiumError:
        version = None  # the dataset was deleted, or is not the user's to see: the run still shows
    path = f"/evals/runs/{run.id}"

    def page_url(at: int, only_failed: bool = failed) -> str:
        return _url(
            path,
            {"failed": 1 if only_failed else None, "limit": limit if limit != ROWS_PER_PAGE else None, "offset": at},
        )

    prev_url = page_url(max(0, offset - limit)) if rows is not None and offset > 0 else None
    next_url = page_url(offset + limit) if rows is not None and offset + len(rows.rows) < rows.total else None
    ests = estimates(run)
    bias = run.summary.get("bias")
    evaluators = run.summary.get("evaluators") or {}
    return render(
        request,
        "evals/run.html",
        session,
        status_code=rows_error.status if rows_error else 200,
        run=run,
        dataset_version=version,
        estimates=ests,
        charts=[score_chart(e) for e in ests],
        gate=gate(run),
        checks=checks_of(run),
        evaluators=sorted(evaluators.items()) if isinstance(evaluators, dict) else [],
        bias=bias if isinstance(bias, dict) else None,
        rows=rows,
        views=[row_view(run, r) for r in rows.rows] if rows is not None else [],
        score_columns=score_names(run, rows.rows if rows is not None else []),
        rows_error=rows_error,
        failed=failed,
        offset=offset,
        limit=limit,
        prev_url=prev_url,
        next_url=next_url,
        all_url=page_url(0, False),
        failed_url=page_url(0, True),
        input_field=input_field(run),
        reference_field=reference_field(run),
        dataset_href=dataset_href(run),
        progress=progress(run),
        done=rows_done(run),
        planned=rows_planned(run),
        duration=fmt_duration(run),
        **FORMATS,
    )
