"""Dashboard pages for traces: the list (filters, sortable columns, cursor pages, live tail), one trace (span
tree beside its timeline, span details fetched on click, large payloads on demand) and the metrics page
(SVG charts over time, per model). Every figure comes from `tracing.service`; this module only shapes it.

A huge trace never goes to the browser whole: the page renders the first rows of the span skeleton, more
rows come as HTML fragments a page at a time, and a span's inputs, outputs and attributes are fetched only
when it is clicked. Fragments answer 401 (not a redirect) when the session has ended, so the page's script
can say so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, Response

from podium.core.console import usd
from podium.core.db import utcnow
from podium.core.errors import InvalidInput, NotFound, PodiumError, Unauthorized
from podium.core.http import get_platform
from podium.models import service as models
from podium.tracing import service
from podium.web.shell import PageSession, error_page, page_session, read_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

METRICS_PATH = "/trace-metrics"  # /metrics is Prometheus'

LIST_LIMIT = 50
TAIL_LIMIT = 100
TAIL_SLACK = timedelta(minutes=5)  # a trace may be written a little after it started: look back this far
FIRST_ROWS = 200  # span rows in a trace page's first HTML
MORE_ROWS = 500  # span rows per "load more"
MAX_INDENT = 30  # depth levels shown as indentation (deeper chains still show their depth number)
RENDER_CHARS = 500_000  # payload text rendered in a page; longer ones are cut (the raw link has it all)


def fragment_session(request: Request) -> PageSession:
    """FastAPI dependency for fragments fetched by page scripts: the session, or 401 (never a redirect)."""
    session = read_session(request)
    if session is None:
        raise Unauthorized("your dashboard session has ended; reload the page to sign in again")
    return session


FragmentDep = Annotated[PageSession, Depends(fragment_session)]


# --- formatting ------------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    """A duration for people: `0.42 ms`, `125 ms`, `1.35 s`, `2m 05s`."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(round(value / 1000), 60)
    return f"{minutes}m {seconds:02d}s"


def fmt_count(value: float | None) -> str:
    """A count with thousands separators, or 12.3K / 4.5M when large."""
    if value is None:
        return "—"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e5:
        return f"{value / 1e3:.0f}K"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def fmt_usd(value: Decimal | float | None) -> str:
    """Dollars to the micro-dollar (`$0.000161`), as the CLI prints them."""
    return usd(Decimal(str(value))) if value is not None else "—"


def fmt_pct(value: float | None) -> str:
    """A rate as a percentage."""
    return "—" if value is None else f"{value * 100:.1f}%"


FORMATS: dict[str, Any] = {"fmt_ms": fmt_ms, "fmt_count": fmt_count, "fmt_usd": fmt_usd, "fmt_pct": fmt_pct}


def _query(params: Mapping[str, str | None], **changes: str | None) -> str:
    """A query string of the non-empty values of `params` with `changes` applied."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v})


def _filter_params(request: Request) -> dict[str, str]:
    """The trace filters in the request's query string, as typed."""
    return {p: request.query_params[p] for p in service.FILTER_PARAMS if request.query_params.get(p)}


# --- payloads: chat messages, JSON, text -----------------------------------------------------------


@dataclass
class Message:
    """One chat message as a bubble: its role, its text, and anything else it carries (tool calls, images)."""

    role: str
    name: str | None
    text: str
    extra: str | None


@dataclass
class PayloadView:
    """How an input or output is shown: chat bubbles, pretty JSON or text; an artifact shows its preview and
    a button that fetches it whole."""

    kind: str  # chat, json, text, artifact
    messages: list[Message] = field(default_factory=list)
    body: str = ""  # JSON or text (for chat: the other fields, e.g. request parameters)
    cut: int = 0  # characters left out of `body`
    bytes: int = 0  # an artifact's size
    url: str = ""  # fragment that renders the artifact whole
    raw_url: str = ""  # the payload as stored, whole


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def _is_message(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("role"), str)
        and any(k in value for k in ("content", "tool_calls", "function_call"))
    )


def _message(m: dict[str, Any]) -> Message:
    content = m.get("content")
    texts: list[str] = []
    others: list[Any] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):  # content parts: text parts are shown as text, others as JSON
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                others.append(part)
    elif content is not None:
        others.append(content)
    rest = {k: v for k, v in m.items() if k not in ("role", "content", "name") and v is not None}
    if others:
        rest["content"] = others
    name = m.get("name")
    return Message(
        m["role"], name if isinstance(name, str) else None, "\n".join(texts), _pretty(rest) if rest else None
    )


def chat_messages(value: Any) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The chat messages in a payload (a `[{role, content}]` list, one message, a request with `messages`, or
    a response with `choices`) and the payload's other fields; None if it holds none."""
    if isinstance(value, list) and value and all(_is_message(m) for m in value):
        return value, {}
    if _is_message(value):
        return [value], {}
    if isinstance(value, dict):
        msgs = value.get("messages")
        if isinstance(msgs, list) and msgs and all(_is_message(m) for m in msgs):
            return msgs, {k: v for k, v in value.items() if k != "messages"}
        choices = value.get("choices")
        if isinstance(choices, list) and choices:
            found = [c.get("message") or c.get("delta") for c in choices if isinstance(c, dict)]
            if found and all(_is_message(m) for m in found):
                return [m for m in found if isinstance(m, dict)], {k: v for k, v in value.items() if k != "choices"}
    return None


def payload_view(text: str | None, *, full_url: str = "", raw_url: str = "") -> PayloadView | None:
    """The view of a stored payload (None when there is none); an artifact marker becomes its preview plus
    the URLs that fetch it whole."""
    if text is None:
        return None
    ref = service.artifact_ref(text)
    if ref is not None:
        return PayloadView("artifact", body=ref.preview, bytes=ref.bytes, url=full_url, raw_url=raw_url)
    cut = max(0, len(text) - RENDER_CHARS)
    value: Any = None
    parsed = False
    if text.lstrip()[:1] in ("{", "[") and not cut:
        try:
            value = orjson.loads(text)
            parsed = True
        except orjson.JSONDecodeError:
            pass
    if not parsed:
        return PayloadView("text", body=text[:RENDER_CHARS], cut=cut, raw_url=raw_url)
    chat = chat_messages(value)
    if chat is not None:
        msgs, rest = chat
        return PayloadView("chat", [_message(m) for m in msgs], body=_pretty(rest) if rest else "", raw_url=raw_url)
    return PayloadView("json", body=_pretty(value), raw_url=raw_url)


def _payload_urls(trace_id: str, span_id: str | None, which: str) -> tuple[str, str]:
    params = {"span": span_id, "field": which}
    return (
        f"/traces/{trace_id}/payload?{_query(params)}",
        f"/traces/{trace_id}/payload?{_query(params, raw='1')}",
    )


def _views(trace_id: str, span_id: str | None, input: str | None, output: str | None) -> dict[str, Any]:
    views = {}
    for which, text in (("input", input), ("output", output)):
        full, raw = _payload_urls(trace_id, span_id, which)
        views[which] = payload_view(text, full_url=full, raw_url=raw)
    return views


# --- the trace list --------------------------------------------------------------------------------

SORT_COLUMNS = (("start_time", "Start"), ("latency_ms", "Latency"), ("tokens", "Tokens"), ("cost", "Cost"))


@dataclass
class SortLink:
    """A sortable column header: its link and whether (and which way) the list is sorted by it."""

    label: str
    href: str
    active: str | None  # "asc", "desc" or None


def _sort_links(params: dict[str, str], sort: str, order: str) -> dict[str, SortLink]:
    links = {}
    for key, label in SORT_COLUMNS:
        active = order if key == sort else None
        flip = "asc" if active == "desc" else "desc"
        links[key] = SortLink(label, "/traces?" + _query(params, sort=key, order=flip), active)
    return links


def _list_context(params: dict[str, str], sort: str, order: str, limit: str | None) -> dict[str, Any]:
    return {
        "params": params,
        "sort": sort,
        "order": order,
        "limit": limit or "",
        "sort_links": _sort_links({**params, "limit": limit or ""}, sort, order),
        "statuses": ("ok", "error"),
        "sources": ("gateway", "sdk", "otlp"),
        "tail_query": _query(params),
        "tail_ok": sort == "start_time" and order == "desc",
        **FORMATS,
    }


@router.get("/traces")
def traces_page(request: Request, session: SessionDep) -> Response:
    """Traces matching the filter form, sorted by a column, a cursor page at a time; live tail optional."""
    params = _filter_params(request)
    sort = request.query_params.get("sort") or "start_time"
    order = request.query_params.get("order") or "desc"
    cursor = request.query_params.get("cursor") or None
    limit_text = request.query_params.get("limit") or None
    ctx = _list_context(params, sort, order, limit_text)
    try:
        filters = service.parse_filters(params)
        limit = service.int_param("limit", limit_text, LIST_LIMIT, 1, service.MAX_LIMIT)
        page = service.list_traces(
            get_platform(request), session.actor, filters, sort=sort, order=order, limit=limit, cursor=cursor
        )
    except PodiumError as exc:  # a bad filter: the form again, the field named and marked
        bad = str(exc.details.get("field", ""))
        return render(
            request, "traces/list.html", session, status_code=exc.status, error=exc, bad_field=bad, page=None, **ctx
        )
    next_href = None
    if page.next_cursor:
        next_href = "/traces?" + _query(params, sort=sort, order=order, limit=limit_text, cursor=page.next_cursor)
    return render(
        request,
        "traces/list.html",
        session,
        error=None,
        bad_field="",
        page=page,
        next_href=next_href,
        first_href="/traces?" + _query(params, sort=sort, order=order, limit=limit_text) if cursor else None,
        **ctx,
    )


@router.get("/traces/tail")
def traces_tail(request: Request, session: FragmentDep) -> Response:
    """Rows (HTML) of the newest traces matching the filters that started at most `TAIL_SLACK` before
    `after` (or the newest ones, without it); the page script skips or replaces the rows it already has."""
    filters = service.parse_filters(_filter_params(request))
    after = request.query_params.get("after")
    if after:
        since = service.parse_time(after, "after") - TAIL_SLACK
        if filters.end is not None and since >= filters.end:
            return HTMLResponse("")
        if filters.start is None or since > filters.start:
            filters = replace(filters, start=since)
    page = service.list_traces(get_platform(request), session.actor, filters, limit=TAIL_LIMIT)
    return render(request, "traces/_trace_rows.html", session, traces=page.traces, **FORMATS)


# --- one trace -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanRow:
    """A row of the span tree: the span, its place in tree order and its timeline bar (percent of the trace)."""

    span: service.SpanNode
    index: int
    offset_ms: float
    left: float
    width: float
    indent: int


class Timeline:
    """Positions spans on the trace's time axis: the trace's start and end (which the writer widens to
    cover every span) and the shown spans', so every page of rows shares one axis."""

    def __init__(self, detail: service.TraceDetail):
        starts = [detail.start_time, *(s.start_time for s in detail.spans)]
        ends = [t for t in (detail.end_time, *(s.end_time for s in detail.spans)) if t is not None]
        self.t0 = min(starts)
        t1 = max([*ends, *starts])
        self.total_ms = max((t1 - self.t0).total_seconds() * 1000, 0.001)

    def ticks(self, n: int = 2) -> list[tuple[float, str]]:
        """Axis labels: percent position and the time since the trace started."""
        return [(i * 100 / n, fmt_ms(self.total_ms * i / n) if i else "0") for i in range(n + 1)]

    def row(self, index: int, span: service.SpanNode) -> SpanRow:
        """The row of the span at `index` in tree order."""
        offset = (span.start_time - self.t0).total_seconds() * 1000
        left = min(max(offset / self.total_ms * 100, 0.0), 100.0)
        width = (span.duration_ms or 0.0) / self.total_ms * 100
        width = min(max(width, 0.25), max(100.0 - left, 0.25))
        return SpanRow(span, index, offset, round(left, 3), round(width, 3), min(span.depth, MAX_INDENT))


def _registered_models(request: Request) -> set[str]:
    return {m.name for m in models.list_models(get_platform(request).db, include_archived=True)}


@router.get("/traces/{trace_id}")
def trace_page(request: Request, trace_id: str, session: SessionDep) -> Response:
    """A trace: totals, its input and output, and the first rows of its span tree and timeline."""
    try:
        detail = service.get_trace(get_platform(request), session.actor, trace_id, limit=FIRST_ROWS)
    except PodiumError as exc:
        return error_page(request, session, exc)
    timeline = Timeline(detail)
    rows = [timeline.row(i, s) for i, s in enumerate(detail.spans)]
    kinds = sorted({s.kind for s in detail.spans})
    return render(
        request,
        "traces/detail.html",
        session,
        trace=detail,
        rows=rows,
        total=detail.spans_total,
        more_rows=MORE_ROWS,
        ticks=timeline.ticks(),
        kinds=kinds,
        views=_views(trace_id, None, detail.input, detail.output),
        metadata=_pretty(detail.metadata) if detail.metadata else "",
        model_registered=detail.model in _registered_models(request) if detail.model else False,
        **FORMATS,
    )


@router.get("/traces/{trace_id}/rows")
def trace_rows(request: Request, trace_id: str, session: FragmentDep) -> Response:
    """Span tree rows (HTML) `[offset, offset + limit)` of a trace's tree order, for "load more"."""
    offset = service.int_param("offset", request.query_params.get("offset"), 0, 0, 10**9)
    limit = service.int_param("limit", request.query_params.get("limit"), MORE_ROWS, 1, service.MAX_SPAN_PAGE)
    detail = service.get_trace(get_platform(request), session.actor, trace_id, offset=offset, limit=limit)
    timeline = Timeline(detail)
    rows = [timeline.row(offset + i, s) for i, s in enumerate(detail.spans)]
    return render(request, "traces/_span_rows.html", session, rows=rows, **FORMATS)


@dataclass(frozen=True)
class Link:
    """A link to a versioned object a span used (href None: not resolvable, show the id)."""

    label: str
    text: str
    href: str | None


def _span_links(request: Request, span: service.SpanFull) -> list[Link]:
    links = []
    if span.prompt_version_id:
        links.append(Link("Prompt version", span.prompt_version_id, f"/prompts/versions/{span.prompt_version_id}"))
    if span.model_version_id:
        try:
            v = models.get_version_by_id(get_platform(request).db, span.model_version_id)
            links.append(Link("Model version", f"{v.model} v{v.version}", f"/models/{v.model}"))
        except NotFound:
            links.append(Link("Model version", span.model_version_id, None))
    if span.dataset_version_id:
        links.append(Link("Dataset version", span.dataset_version_id, f"/datasets/versions/{span.dataset_version_id}"))
    return links


@router.get("/traces/{trace_id}/spans/{span_id}")
def span_detail(request: Request, trace_id: str, span_id: str, session: FragmentDep) -> Response:
    """One span in full (HTML): figures, links, error, attributes, input and output."""
    page = service.get_spans(get_platform(request), session.actor, trace_id, ids=[span_id])
    span = page.spans[0]
    return render(
        request,
        "traces/_span.html",
        session,
        trace_id=trace_id,
        span=span,
        links=_span_links(request, span),
        model_registered=span.model in _registered_models(request) if span.model else False,
        attributes=_pretty(span.attributes) if span.attributes else "",
        views=_views(trace_id, span.id, span.input, span.output),
        **FORMATS,
    )


@router.get("/traces/{trace_id}/payload")
def trace_payload(request: Request, trace_id: str, session: FragmentDep) -> Response:
    """A trace's or span's input or output in full: rendered (HTML fragment), or as stored with `raw=1`."""
    span_id = request.query_params.get("span") or None
    which = request.query_params.get("field") or "input"
    payload = service.get_payload(get_platform(request), session.actor, trace_id, span_id=span_id, field=which)
    if request.query_params.get("raw"):
        headers = {"X-Content-Type-Options": "nosniff", "Content-Disposition": "inline"}
        return Response(payload.data, media_type=payload.media_type, headers=headers)
    _, raw = _payload_urls(trace_id, span_id, which)
    view = payload_view(payload.data.decode("utf-8", "replace"), raw_url=raw)
    return render(request, "traces/_payload.html", session, view=view, **FORMATS)


# --- metrics ---------------------------------------------------------------------------------------

RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_POINTS = 200  # buckets a chart shows when the bucket is chosen automatically
PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d")
MAX_SERIES = len(PALETTE)
FIXED_COLORS = {"all": "#343a40", "other": "#adb5bd", "p50": "#1098ad", "p95": "#f08c00", "p99": "#c92a2a"}
NO_MODEL = "(no model)"


@dataclass(frozen=True)
class Mark:
    """A drawn value: a dot on a line (`h` 0), or a block of a stacked bar."""

    x: float
    y: float
    h: float
    value: float
    when: str
    lone: bool = False  # a dot with no neighbour to draw a line to: always drawn


@dataclass
class Series:
    """One model (or percentile) in a chart: a value per bucket (None: no data there)."""

    name: str
    values: list[float | None]
    color: str = ""
    segments: list[str] = field(default_factory=list)  # SVG polyline points, one per run of values (lines)
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Chart:
    """A chart as SVG geometry (computed here, drawn by a template): lines, or bars stacked per series for
    figures that add up (requests, cost, tokens, errors)."""

    key: str
    title: str
    unit: str  # count, ms, usd, rate
    series: list[Series]
    stacked: bool = False
    width: int = 600
    height: int = 200
    left: int = 64
    right: int = 12
    top: int = 12
    bottom: int = 26
    slots: int = 0
    bar_width: float = 0.0
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    empty: bool = True


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times 10^k at or above `value` (an axis maximum)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(float(m * power) for m in (1, 2, 2.5, 5, 10) if value <= m * power * (1 + 1e-9))


def _fmt_unit(unit: str, value: float) -> str:
    if unit == "ms":
        return fmt_ms(value)
    if unit == "usd":
        return fmt_usd(Decimal(str(round(value, 6))))
    if unit == "rate":
        return fmt_pct(value)
    return fmt_count(value)


def layout_chart(chart: Chart, slots: list[datetime], label_format: str) -> Chart:
    """Fill in a chart's geometry: axis ticks, and per series its stacked blocks or its polylines and dots."""
    n = chart.slots = len(slots)
    plot_w = chart.width - chart.left - chart.right
    plot_h = chart.height - chart.top - chart.bottom
    step = plot_w / max(n, 1)
    chart.bar_width = round(max(step * 0.8, 0.5), 2)
    if chart.stacked:
        heights = [sum(s.values[i] or 0.0 for s in chart.series) for i in range(n)]
    else:
        heights = [v for s in chart.series for v in s.values if v is not None]
    chart.empty = not any(heights) if chart.stacked else not heights
    top = _nice_ceiling(max(heights, default=0.0))

    def x(i: int) -> float:
        return chart.left + (i + 0.5) * step

    def y(v: float) -> float:
        return chart.top + plot_h - v / top * plot_h

    chart.y_ticks = [(round(y(top * i / 4), 1), _fmt_unit(chart.unit, top * i / 4)) for i in range(5)]
    picks = sorted({0, n // 2, n - 1}) if n > 2 else list(range(n))
    chart.x_ticks = [(round(x(i), 1), slots[i].strftime(label_format)) for i in picks]
    base = [0.0] * n
    for k, s in enumerate(chart.series):
        s.color = s.color or PALETTE[k % len(PALETTE)]
        run: list[str] = []
        for i, v in enumerate(s.values):
            when = slots[i].strftime("%Y-%m-%d %H:%M UTC")
            if chart.stacked:
                if v:
                    top_y = y(base[i] + v)
                    s.marks.append(
                        Mark(
                            round(x(i) - chart.bar_width / 2, 2), round(top_y, 2), round(y(base[i]) - top_y, 2), v, when
                        )
                    )
                    base[i] += v
                continue
            if v is None:
                if run:
                    s.segments.append(" ".join(run))
                run = []
                continue
            px, py = round(x(i), 1), round(y(v), 1)
            run.append(f"{px},{py}")
            lone = (i == 0 or s.values[i - 1] is None) and (i == n - 1 or s.values[i + 1] is None)
            s.marks.append(Mark(px, py, 0.0, v, when, lone))
        if run:
            s.segments.append(" ".join(run))
    return chart


@dataclass
class ModelTotals:
    """One model's totals over the range (sums of the aggregate's buckets)."""

    model: str
    count: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def cost_usd(self) -> Decimal:
        return service.usd(self.cost_micros)


def _metrics_window(request: Request) -> tuple[str, dict[str, str]]:
    """The range preset (or "custom") and the filter parameters with `from`/`to` filled in."""
    params = _filter_params(request)
    preset = request.query_params.get("range") or ("custom" if params.get("from") else "24h")
    if preset == "custom" and not params.get("from"):
        raise InvalidInput("a custom range needs 'from'", details={"field": "from"})
    if preset != "custom":
        if preset not in RANGES:
            raise InvalidInput(f"range {preset!r} is not one of: {', '.join(RANGES)}", details={"field": "range"})
        now = utcnow()
        params["from"] = (now - timedelta(seconds=RANGES[preset])).isoformat()
        params["to"] = now.isoformat()
    return preset, params


def _pick_bucket(wanted: str | None, start: datetime, end: datetime) -> str:
    if wanted and wanted != "auto":
        return wanted
    span = (end - start).total_seconds()
    return next((b for b, size in service.BUCKETS.items() if span / size <= MAX_POINTS), "day")


def _metrics_charts(
    totals: service.Aggregate, per_model: service.Aggregate, slots: list[datetime], models_shown: list[str]
) -> list[Chart]:
    """The metrics page's charts; models beyond those shown add up as "other" in the stacked ones."""
    index = {slot: i for i, slot in enumerate(slots)}
    n = len(slots)

    def line(rows: list[service.AggregateRow], pick: Any, fill: float | None) -> list[float | None]:
        out: list[float | None] = [fill] * n
        for r in rows:
            i = index.get(r.bucket)
            if i is not None:
                out[i] = pick(r)
        return out

    by_model: dict[str, list[service.AggregateRow]] = defaultdict(list)
    for r in per_model.rows:
        by_model[r.group or NO_MODEL].append(r)
    shown = set(models_shown)
    others = [r for r in per_model.rows if (r.group or NO_MODEL) not in shown]

    def per(pick: Any, fill: float | None) -> list[Series]:
        return [Series(m, line(by_model[m], pick, fill)) for m in models_shown]

    def stack(pick: Any) -> list[Series]:
        series = per(pick, 0)
        if others:
            rest: list[float | None] = [0.0] * n
            for r in others:
                i = index.get(r.bucket)
                if i is not None:
                    rest[i] = (rest[i] or 0.0) + pick(r)
            series.append(Series("other", rest))
        return series

    all_rows = totals.rows
    charts = [
        Chart("volume", "Requests", "count", stack(lambda r: r.count), stacked=True),
        Chart(
            "latency",
            "Latency percentiles (all models)",
            "ms",
            [
                Series("p50", line(all_rows, lambda r: r.latency_p50_ms, None)),
                Series("p95", line(all_rows, lambda r: r.latency_p95_ms, None)),
                Series("p99", line(all_rows, lambda r: r.latency_p99_ms, None)),
            ],
        ),
        Chart("latency_model", "Latency p95 by model", "ms", per(lambda r: r.latency_p95_ms, None)),
        Chart("cost", "Cost", "usd", stack(lambda r: float(r.cost_usd)), stacked=True),
        Chart(
            "tokens",
            "Tokens (prompt + completion)",
            "count",
            stack(lambda r: r.prompt_tokens + r.completion_tokens),
            stacked=True,
        ),
        Chart("errors", "Errors", "count", stack(lambda r: r.errors), stacked=True),
        Chart(
            "error_rate",
            "Error rate",
            "rate",
            [Series("all", line(all_rows, lambda r: r.error_rate, None)), *per(lambda r: r.error_rate, None)],
        ),
    ]
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models_shown)} | FIXED_COLORS
    for chart in charts:
        for s in chart.series:
            s.color = colors.get(s.name, "")
    return charts


@router.get(METRICS_PATH)
def metrics_page(request: Request, session: SessionDep) -> Response:
    """Charts of volume, latency percentiles, cost, tokens and errors over a time range, and per model."""
    platform = get_platform(request)
    preset = request.query_params.get("range") or ""
    params: dict[str, str] = _filter_params(request)
    wanted_bucket = request.query_params.get("bucket") or "auto"
    ctx: dict[str, Any] = {"ranges": list(RANGES), "buckets": ["auto", *service.BUCKETS], **FORMATS}
    try:
        preset, params = _metrics_window(request)
        filters = service.parse_filters(params)
        start = filters.start
        assert start is not None  # set by _metrics_window
        end = filters.end or utcnow()
        bucket = _pick_bucket(wanted_bucket, start, end)
        totals = service.aggregate(platform, session.actor, filters, bucket=bucket, by="none")
        per_model = service.aggregate(platform, session.actor, filters, bucket=bucket, by="model")
    except PodiumError as exc:
        shown = {**params, "range": preset}
        return render(
            request,
            "traces/metrics.html",
            session,
            status_code=exc.status,
            error=exc,
            bad_field=str(exc.details.get("field", "")),
            params=shown,
            bucket=wanted_bucket,
            charts=[],
            models=[],
            total=None,
            **ctx,
        )
    size = service.BUCKETS[bucket]
    first = int(start.timestamp()) // size * size
    last = int(end.timestamp() - 1e-6) // size * size
    slots = [datetime.fromtimestamp(t, UTC) for t in range(first, max(last, first) + 1, size)]

    table: dict[str, ModelTotals] = {}
    for r in per_model.rows:
        name = r.group or NO_MODEL
        t = table.setdefault(name, ModelTotals(name))
        t.count += r.count
        t.errors += r.errors
        t.prompt_tokens += r.prompt_tokens
        t.completion_tokens += r.completion_tokens
        t.cost_micros += r.cost_micros
    ranked = sorted(table.values(), key=lambda t: (-t.count, t.model))
    grand = ModelTotals("all")
    for t in ranked:
        for attr in ("count", "errors", "prompt_tokens", "completion_tokens", "cost_micros"):
            setattr(grand, attr, getattr(grand, attr) + getattr(t, attr))
    label_format = "%m-%d" if bucket == "day" else ("%H:%M" if len(slots) * size <= 86400 else "%m-%d %H:%M")
    charts = [
        layout_chart(c, slots, label_format)
        for c in _metrics_charts(totals, per_model, slots, [t.model for t in ranked[:MAX_SERIES]])
    ]
    return render(
        request,
        "traces/metrics.html",
        session,
        error=None,
        bad_field="",
        params={**params, "range": preset},
        bucket=wanted_bucket,
        bucket_used=bucket,
        start=start,
        end=end,
        charts=charts,
        draw_points=len(slots) <= MAX_POINTS,
        models=ranked,
        total=grand,
        more_models=max(0, len(ranked) - MAX_SERIES),
        traces_query={t.model: _query({**params, "model": t.model if t.model != NO_MODEL else None}) for t in ranked},
        **ctx,
    )
