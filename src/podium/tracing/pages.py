"""Dashboard pages for traces: the list (filters, sortable columns, cursor pages, live tail) and one trace
(span tree beside its timeline, span details fetched on click, large payloads on demand); the metrics page
is `metrics_page`. Every figure comes from `tracing.service`; this module only shapes it.

A huge trace never goes to the browser whole: the page renders the first rows of the span skeleton, more
rows come as HTML fragments a page at a time, and a span's inputs, outputs and attributes are fetched only
when it is clicked. Fragments answer 401 (not a redirect) when the session has ended, so the page's script
can say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from podium.core.durations import parse_time
from podium.core.errors import NotFound, PodiumError, Unauthorized
from podium.core.http import get_platform
from podium.models import service as models
from podium.tracing import service
from podium.tracing.formats import FORMATS, filter_params, fmt_ms, query_string
from podium.web.cells import Cell, cell
from podium.web.shell import PageSession, error_page, page_session, read_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

LIST_LIMIT = 50
TAIL_LIMIT = 100
TAIL_SLACK = timedelta(minutes=5)  # a trace may be written a little after it started: look back this far
FIRST_ROWS = 200  # span rows in a trace page's first HTML
MORE_ROWS = 500  # span rows per "load more"
MAX_INDENT = 30  # depth levels shown as indentation (deeper chains still show their depth number)
RENDER_CHARS = 500_000  # payload text rendered in a page; longer ones are cut (the raw link has it all)
RENDERED_BYTES = 4 * RENDER_CHARS + 4  # bytes read from a payload to render (at most 4 per character)


def fragment_session(request: Request) -> PageSession:
    """FastAPI dependency for fragments fetched by page scripts: the session, or 401 (never a redirect)."""
    session = read_session(request)
    if session is None:
        raise Unauthorized("your dashboard session has ended; reload the page to sign in again")
    return session


FragmentDep = Annotated[PageSession, Depends(fragment_session)]


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
        and any(k in value for k in ("content", "tool_calls", "function_call", "parts"))
    )


# parts of the GenAI conventions' messages whose `content` is text to show as such
_TEXT_PARTS = ("text", "reasoning")


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
    parts = m.get("parts")  # OpenTelemetry GenAI: [{"type": "text", "content": "…"}, {"type": "tool_call", …}]
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("content"), str):
                texts.append(part["content"])
            else:
                others.append(part)
    rest = {k: v for k, v in m.items() if k not in ("role", "content", "name", "parts") and v is not None}
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
    if isinstance(value, list) and value and all(isinstance(c, dict) and _is_message(c.get("message")) for c in value):
        return [c["message"] for c in value], {}  # choices, as GenAI `gen_ai.choice` events give them
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
        f"/traces/{trace_id}/payload?{query_string(params)}",
        f"/traces/{trace_id}/payload?{query_string(params, raw='1')}",
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
        links[key] = SortLink(label, "/traces?" + query_string(params, sort=key, order=flip), active)
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
        "tail_query": query_string(params),
        "tail_ok": sort == "start_time" and order == "desc",
        **FORMATS,
    }


@router.get("/traces")
def traces_page(request: Request, session: SessionDep) -> Response:
    """Traces matching the filter form, sorted by a column, a cursor page at a time; live tail optional."""
    params = filter_params(request)
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
        next_href = "/traces?" + query_string(params, sort=sort, order=order, limit=limit_text, cursor=page.next_cursor)
    return render(
        request,
        "traces/list.html",
        session,
        error=None,
        bad_field="",
        page=page,
        next_href=next_href,
        first_href="/traces?" + query_string(params, sort=sort, order=order, limit=limit_text) if cursor else None,
        **ctx,
    )


@router.get("/traces/tail")
def traces_tail(request: Request, session: FragmentDep) -> Response:
    """Rows (HTML) of the newest traces matching the filters that started at most `TAIL_SLACK` before
    `after` (or the newest ones, without it); the page script skips or replaces the rows it already has."""
    filters = service.parse_filters(filter_params(request))
    after = request.query_params.get("after")
    if after:
        since = parse_time(after, "after") - TAIL_SLACK
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


def _registered_models(request: Request, session: PageSession) -> set[str]:
    return {m.name for m in models.list_models(get_platform(request), session.actor, include_archived=True)}


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
        model_registered=detail.model in _registered_models(request, session) if detail.model else False,
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


def _span_links(request: Request, session: PageSession, span: service.SpanFull) -> list[Link]:
    links = []
    if span.prompt_version_id:
        links.append(Link("Prompt version", span.prompt_version_id, f"/prompts/versions/{span.prompt_version_id}"))
    if span.model_version_id:
        try:
            v = models.get_version_by_id(get_platform(request), session.actor, span.model_version_id)
            links.append(Link("Model version", f"{v.model} v{v.version}", f"/models/{v.model}"))
        except NotFound:
            links.append(Link("Model version", span.model_version_id, None))
    if span.dataset_version_id:
        links.append(Link("Dataset version", span.dataset_version_id, f"/datasets/versions/{span.dataset_version_id}"))
    return links


# --- retriever spans: the query and its hits ----------------------------------------------------------

EXCERPT_CHARS = 300  # characters of a retrieved chunk shown in the hits table


@dataclass(frozen=True)
class RetrievedHit:
    """One hit of a retriever span as a table row (numbers None when the span did not carry them)."""

    rank: int
    id: str
    source: str
    doc_id: str
    start: int | None
    end: int | None
    score: float | None
    similarity: float | None
    bm25: float | None
    text: Cell


@dataclass(frozen=True)
class RetrievalView:
    """What a retriever span asked and found: the query, the knowledge base (`name@version`, linked to its
    page), mode, k and filters, and the hits in rank order."""

    query: str
    kb: str
    kb_href: str | None
    mode: str
    k: int | None
    filters: str  # JSON on one line, or "" without filters
    hits: list[RetrievedHit]


def _json_object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def retrieval_view(span: service.SpanFull) -> RetrievalView | None:
    """The query and hits of a retriever span whose output is `{"hits": [...]}` (as the gateway writes them);
    None for any other span, or an output that does not parse (it is then shown as any payload is)."""
    if span.kind != "retriever":
        return None
    out = _json_object(span.output)
    hits = out.get("hits") if out is not None else None
    if not isinstance(hits, list) or not all(isinstance(h, dict) for h in hits):
        return None
    asked = _json_object(span.input)
    if asked is not None:
        query = _str(asked.get("query"))
    else:  # an input that is not the gateway's JSON: the query as sent, if it is plain text
        query = span.input if isinstance(span.input, str) else ""
        asked = {}
    attrs = span.attributes
    kb = _str(asked.get("kb"))
    name = attrs.get("kb") if isinstance(attrs.get("kb"), str) else kb.partition("@")[0]
    if not kb and name:
        kb = f"{name}@{attrs['version']}" if _whole(attrs.get("version")) is not None else name
    filters = asked.get("filters")
    return RetrievalView(
        query=query,
        kb=kb,
        kb_href=f"/kb/{quote(name, safe='')}" if name else None,
        mode=_str(asked.get("mode") or attrs.get("mode")),
        k=_whole(asked.get("k")) if _whole(asked.get("k")) is not None else _whole(attrs.get("k")),
        filters=orjson.dumps(filters, option=orjson.OPT_NON_STR_KEYS).decode() if filters else "",
        hits=[
            RetrievedHit(
                rank=i,
                id=_str(h.get("id")),
                source=_str(h.get("source")),
                doc_id=_str(h.get("doc_id")),
                start=_whole(h.get("start")),
                end=_whole(h.get("end")),
                score=_number(h.get("score")),
                similarity=_number(h.get("similarity")),
                bm25=_number(h.get("bm25")),
                text=cell(_str(h.get("text")), EXCERPT_CHARS),
            )
            for i, h in enumerate(hits, 1)
        ],
    )


def fmt_score(value: float | None) -> str:
    """A retrieval score to four significant digits; `—` for none."""
    return "—" if value is None or not math.isfinite(value) else f"{value:.4g}"


@router.get("/traces/{trace_id}/spans/{span_id}")
def span_detail(request: Request, trace_id: str, span_id: str, session: FragmentDep) -> Response:
    """One span in full (HTML): figures, links, error, attributes, input and output (a retriever span's as its
    query and a table of its hits)."""
    page = service.get_spans(get_platform(request), session.actor, trace_id, ids=[span_id])
    span = page.spans[0]
    return render(
        request,
        "traces/_span.html",
        session,
        trace_id=trace_id,
        span=span,
        links=_span_links(request, session, span),
        model_registered=span.model in _registered_models(request, session) if span.model else False,
        attributes=_pretty(span.attributes) if span.attributes else "",
        views=_views(trace_id, span.id, span.stored("input"), span.stored("output")),
        retrieval=retrieval_view(span),
        fmt_score=fmt_score,
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
        return StreamingResponse(payload.chunks(), media_type=payload.media_type, headers=headers)
    _, raw = _payload_urls(trace_id, span_id, which)
    shown = bytearray()
    for chunk in payload.chunks():  # the view shows a part of a large payload: read no more than that
        shown += chunk
        if len(shown) >= RENDERED_BYTES:
            break
    view = payload_view(bytes(shown[:RENDERED_BYTES]).decode("utf-8", "replace"), raw_url=raw)
    return render(request, "traces/_payload.html", session, view=view, **FORMATS)
