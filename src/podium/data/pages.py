"""Dashboard pages for datasets: the list; one dataset (version history, its lineage graph, label history);
one version (its card with histograms, and a row browser that pages and searches); the diff of two versions.

Every figure comes from `data.service` and `data.card`, called as the signed-in user; this module only
shapes it for the templates: SVG geometry for the histograms (on `web.charts`' round axes) and for the
lineage graph (drawn here, no script), and table cells cut to a readable length. Data is always escaped by
the templates (autoescape; nothing from a dataset is marked safe).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from podium.core.errors import InvalidInput, PodiumError
from podium.core.http import get_platform
from podium.data import card, service
from podium.data.card import Card, VersionDiff
from podium.data.service import DatasetDetail, ParentInfo, RowsPage, VersionInfo
from podium.web.cells import Cell, cell
from podium.web.charts import nice_step
from podium.web.shell import PageSession, error_page, int_param, page_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

ROWS_PER_PAGE = 25
MAX_ROWS_PER_PAGE = 200
MAX_GRAPH_VERSIONS = 100  # newest versions drawn in a lineage graph


# --- formatting --------------------------------------------------------------------------------------


def fmt_count(value: float | None) -> str:
    """A count with thousands separators (two decimals when it is not whole); `—` for none."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def fmt_bytes(size: int) -> str:
    """A size in bytes, KB, MB or GB (powers of 1024)."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # not reached


def short_number(value: int) -> str:
    """A bucket edge for an axis: `64`, `1k` (1,024), `16k`, `2M`."""
    if value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024)}M"
    if value >= 1024 and value % 1024 == 0:
        return f"{value // 1024}k"
    return f"{value:,}"


def made_by(v: VersionInfo) -> str:
    """How a version was made, in a few words: `import (jsonl)`, `traces`, `pipeline: dedup, pii`."""
    lineage = v.lineage
    kind = str(lineage.get("kind") or "unknown")
    if kind == "pipeline":
        steps = [str(s.get("step")) for s in lineage.get("steps", []) if isinstance(s, dict)]
        return f"pipeline: {', '.join(steps)}" if steps else "pipeline"
    if kind == "import" and lineage.get("format"):
        return f"import ({lineage['format']})"
    return kind


def parent_ref(name: str, p: ParentInfo) -> str:
    """A parent as the history shows it: `v3` in the same dataset, `other@3` in another."""
    if p.dataset is None or p.version is None:
        return p.id
    return f"v{p.version}" if p.dataset == name else f"{p.dataset}@{p.version}"


def parent_href(p: ParentInfo) -> str | None:
    """The page of a parent version (None when its dataset is unknown)."""
    if p.dataset is None or p.version is None:
        return None
    return f"/datasets/{p.dataset}/{p.version}"


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def report_summary(report: Mapping[str, Any], limit: int = 12) -> list[tuple[str, str]]:
    """A step's report as short `(what, value)` pairs: figures as they are, small maps as `k: v` lists,
    histograms and lists by their size; examples left out (they are in the lineage, via the API)."""
    out: list[tuple[str, str]] = []
    for key, value in report.items():
        if key == "examples" or len(out) >= limit:
            continue
        if isinstance(value, dict):
            if set(value) == {"edges", "counts"}:
                out.append((key, f"{len(value['counts'])} buckets"))
                continue
            items = [f"{k}: {_scalar(v)}" for k, v in list(value.items())[:limit] if not isinstance(v, dict | list)]
            more = len(value) - len(items)
            text = ", ".join(items) + (f" (+{more})" if more > 0 else "")
            out.append((key, text or "—"))
        elif isinstance(value, list):
            out.append((key, f"{len(value)} items"))
        elif value is not None:
            out.append((key, cell(_scalar(value), 120).text))
    return out


def _config_text(config: Any) -> str:
    return orjson.dumps(config, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


# --- bar charts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart: its box in SVG coordinates, its label under the axis, its value."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    title: str


@dataclass(frozen=True)
class BarChart:
    """An SVG chart of counts per bucket (a histogram) or per category, with round y ticks."""

    key: str
    title: str
    unit: str  # what the buckets measure (the x axis' caption)
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]
    total: int

    @property
    def empty(self) -> bool:
        """Whether nothing was counted."""
        return self.total == 0


BAR_WIDTH = 560
BAR_HEIGHT = 190
BAR_LEFT = 52
BAR_RIGHT = 10
BAR_TOP = 10
BAR_BOTTOM = 28


def bar_chart(key: str, title: str, unit: str, buckets: Sequence[tuple[str, int, str]]) -> BarChart:
    """Lay out bars of `(label, count, tooltip)` side by side over a y axis from zero in round steps
    (`web.charts.nice_step`), whole numbers since they count rows."""
    counts = [n for _, n, _ in buckets]
    highest = max(counts, default=0)
    step = nice_step(float(highest or 1))
    if step != int(step):  # counts: whole-number ticks
        step = float(math.ceil(step))
    top = max(math.ceil(highest / step - 1e-9), 1) * step
    plot_w = BAR_WIDTH - BAR_LEFT - BAR_RIGHT
    plot_h = BAR_HEIGHT - BAR_TOP - BAR_BOTTOM
    slot = plot_w / max(len(buckets), 1)
    width = round(max(slot * 0.8, 1.0), 2)

    def y(v: float) -> float:
        return round(BAR_TOP + plot_h - v / top * plot_h, 2)

    bars = [
        Bar(round(BAR_LEFT + i * slot + (slot - width) / 2, 2), y(n), width, round(y(0) - y(n), 2), label, n, tip)
        for i, (label, n, tip) in enumerate(buckets)
    ]
    ticks = [(y(step * k), fmt_count(step * k)) for k in range(round(top / step) + 1)]
    return BarChart(
        key, title, unit, BAR_WIDTH, BAR_HEIGHT, BAR_LEFT, BAR_RIGHT, BAR_TOP, BAR_BOTTOM, bars, ticks, sum(counts)
    )


def histogram_buckets(edges: Sequence[int], counts: Sequence[int], unit: str) -> list[tuple[str, int, str]]:
    """Buckets `[edges[i], edges[i+1])` (the last open-ended) as bar labels, counts and tooltips."""
    out = []
    for i, n in enumerate(counts):
        low = int(edges[i]) if i < len(edges) else 0
        high = int(edges[i + 1]) if i + 1 < len(edges) else None
        if high is None:
            label, tip = f"{short_number(low)}+", f"{low:,} {unit} or more"
        else:
            label, tip = f"{short_number(low)}-{short_number(high)}", f"{low:,} to {high - 1:,} {unit}"
        out.append((label, int(n), f"{tip}: {n:,} rows"))
    return out


def card_charts(c: Card) -> list[BarChart]:
    """The card's histograms: text length per text column (characters), and token counts when known."""
    charts = []
    edges = [int(e) for e in c.version.stats.get("length_edges", [])]
    for name, st in c.text_lengths.items():
        hist = st.get("histogram")
        if isinstance(hist, list) and edges:
            buckets = histogram_buckets(edges, hist, "characters")
            charts.append(bar_chart(f"length-{name}", f"Text length: {name}", "characters", buckets))
    tokens = c.tokens
    if tokens:
        hist = tokens.get("histogram")
        if isinstance(hist, list):
            pairs: tuple[Any, Any] = (tokens.get("edges") or [], hist)
        elif isinstance(hist, dict):
            pairs = (hist.get("edges") or [], hist.get("counts") or [])
        else:
            pairs = ([], [])
        if pairs[0] and pairs[1]:
            edges_t = [int(e) for e in pairs[0]]
            buckets = histogram_buckets(edges_t, [int(n) for n in pairs[1]], "tokens")
            title = "Tokens per row" + (f" ({tokens['tokenizer']})" if tokens.get("tokenizer") else "")
            charts.append(bar_chart("tokens", title, "tokens", buckets))
    return charts


@dataclass(frozen=True)
class Share:
    """One value of a counted column (a language, a split) with its share of the largest, for a bar."""

    value: str
    count: int
    percent: float


def shares(counts: Mapping[str, int]) -> list[Share]:
    """Counts, largest first, each with its width as a percentage of the largest."""
    highest = max(counts.values(), default=0) or 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [Share(k, int(n), round(100 * n / highest, 1)) for k, n in ordered]


def _by_count(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Counts, largest first (ties by name)."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


# --- the lineage graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphNode:
    """A version in the lineage graph: its box, its label (`v3`, or `other@3` from another dataset), how it
    was made, and its page."""

    key: str
    label: str
    shown: str  # the label cut to fit its box
    detail: str
    title: str
    href: str | None
    kind: str
    x: float
    y: float


@dataclass(frozen=True)
class GraphEdge:
    """A parent → child arrow, as an SVG path."""

    source: str
    target: str
    path: str


@dataclass(frozen=True)
class LineageGraph:
    """The versions of a dataset and their parents, laid out left to right by generation."""

    width: int
    height: int
    node_width: int
    node_height: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    left_out: int  # older versions not drawn


NODE_W = 168
NODE_H = 44
COL_GAP = 56
ROW_GAP = 14
PAD = 10
DETAIL_CHARS = 26
LABEL_CHARS = 20


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def lineage_graph(detail: DatasetDetail) -> LineageGraph:
    """Lay out one node per version (the newest `MAX_GRAPH_VERSIONS`) and per parent from elsewhere, in
    columns by generation (a version sits one column right of its furthest parent), rows ordered by their
    parents' rows, with an edge from each parent to its child."""
    versions = sorted(detail.versions, key=lambda v: v.version)
    left_out = max(0, len(versions) - MAX_GRAPH_VERSIONS)
    versions = versions[left_out:]
    own = {v.id: v for v in versions}
    depth: dict[str, int] = {}
    info: dict[str, tuple[str, str, str, str | None, str]] = {}  # id → label, detail, title, href, kind
    edges: list[tuple[str, str]] = []
    for v in versions:
        how = made_by(v)
        info[v.id] = (
            f"v{v.version}",
            how,
            f"v{v.version} · {how} · {v.row_count:,} rows{f' · {v.message}' if v.message else ''}",
            f"/datasets/{detail.name}/{v.version}",
            str(v.lineage.get("kind") or "unknown"),
        )
        for p in v.parents:
            if p.id not in own and p.id not in info:
                if p.dataset == detail.name:
                    continue  # an older version of this dataset that is not drawn
                label = parent_ref(detail.name, p)
                info[p.id] = (label, "other dataset" if p.dataset else "unknown", label, parent_href(p), "external")
                depth[p.id] = 0
            edges.append((p.id, v.id))
        depth[v.id] = max((depth.get(p.id, -1) + 1 for p in v.parents if p.id in info), default=0)
    columns: dict[int, list[str]] = {}
    row_of: dict[str, int] = {}
    for d in sorted(set(depth.values())):
        members = [k for k in info if depth[k] == d]

        def order(k: str) -> tuple[float, int, str]:
            parents = [row_of[src] for src, dst in edges if dst == k and src in row_of]
            v = own.get(k)
            return (sum(parents) / len(parents) if parents else -1.0, v.version if v else -1, info[k][0])

        members.sort(key=order)
        columns[d] = members
        for i, k in enumerate(members):
            row_of[k] = i
    pos = {
        k: (PAD + d * (NODE_W + COL_GAP), PAD + row_of[k] * (NODE_H + ROW_GAP))
        for d, members in columns.items()
        for k in members
    }
    nodes = []
    for k, (label, how, title, href, kind) in info.items():
        x, y = pos[k]
        nodes.append(GraphNode(k, label, _fit(label, LABEL_CHARS), _fit(how, DETAIL_CHARS), title, href, kind, x, y))
    drawn = []
    for src, dst in edges:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2 - 2, y2 + NODE_H / 2
        bend = max((tx - sx) / 2, 12)
        path = f"M{sx},{sy} C{sx + bend},{sy} {tx - bend},{ty} {tx},{ty}"
        drawn.append(GraphEdge(info[src][0], info[dst][0], path))
    cols = max(columns, default=0) + 1
    rows = max((len(m) for m in columns.values()), default=1)
    width = 2 * PAD + cols * NODE_W + (cols - 1) * COL_GAP
    height = 2 * PAD + rows * NODE_H + (rows - 1) * ROW_GAP
    return LineageGraph(width, height, NODE_W, NODE_H, nodes, drawn, left_out)


# --- pages -------------------------------------------------------------------------------------------


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep) -> Response:
    """Every dataset the user sees, with its latest version, rows, labels and last update."""
    datasets = service.list_datasets(get_platform(request), session.actor)
    return render(request, "data/list.html", session, datasets=datasets, fmt_count=fmt_count)


@router.get("/datasets/{name}")
def dataset_page(request: Request, name: str, session: SessionDep) -> Response:
    """A dataset: its versions (how each was made, from which parents), its lineage graph and label history."""
    try:
        detail = service.get_dataset(get_platform(request), session.actor, name)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(
        request,
        "data/detail.html",
        session,
        dataset=detail,
        graph=lineage_graph(detail),
        diffs={v.id: _diff_base(detail, v) for v in detail.versions},
        made_by=made_by,
        parent_ref=parent_ref,
        parent_href=parent_href,
        fmt_count=fmt_count,
    )


def _diff_base(detail: DatasetDetail, v: VersionInfo) -> int | None:
    """The version a version is best compared with: its parent in this dataset, else the one before it."""
    for p in v.parents:
        if p.dataset == detail.name and p.version is not None:
            return p.version
    older = [x.version for x in detail.versions if x.version < v.version]
    return max(older) if older else None


@router.get("/datasets/{name}/diff")
def diff_page(request: Request, name: str, session: SessionDep) -> Response:
    """Two versions compared (`?a=` before, `?b=` after: numbers, labels, ids, or `other@3`): columns and
    rows added, removed and changed, with examples. Without `a` and `b` this is the version labelled `diff`."""
    a, b = request.query_params.get("a") or "", request.query_params.get("b") or ""
    if not a and not b:
        return _version_page(request, session, name, "diff")
    platform = get_platform(request)
    try:
        if not a or not b:
            raise InvalidInput("choose two versions to compare: ?a=1&b=2", details={"field": "a" if not a else "b"})
        key = request.query_params.get("key") or None
        diff = card.diff(platform, session.actor, _ref(name, a), _ref(name, b), key=key)
        detail = service.get_dataset(platform, session.actor, name)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(
        request,
        "data/diff.html",
        session,
        dataset=detail,
        diff=diff,
        a=a,
        b=b,
        added=example_table(diff.added),
        removed=example_table(diff.removed),
        changed=_changed(diff),
        fmt_count=fmt_count,
    )


def _ref(name: str, ref: str) -> str:
    return ref if "@" in ref else f"{name}@{ref}"


@dataclass(frozen=True)
class ExampleTable:
    """Example rows as a table: the columns any of them has, and each row's cells in that order."""

    columns: list[str]
    rows: list[list[Cell]]


def example_table(rows: Sequence[Mapping[str, Any]]) -> ExampleTable:
    """Rows that may differ in columns, as one table (a missing value shows as empty)."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    return ExampleTable(columns, [[cell(r.get(c)) if c in r else Cell("", 0, "null") for c in columns] for r in rows])


@dataclass(frozen=True)
class ChangedRow:
    """A row whose key is in both versions with other values: each changed field before and after."""

    key: Cell
    fields: list[tuple[str, Cell, Cell]]


def _changed(d: VersionDiff) -> list[ChangedRow]:
    out = []
    for ch in d.changed:
        before, after = ch.get("before") or {}, ch.get("after") or {}
        fields = [(f, cell(before.get(f)), cell(after.get(f))) for f in ch.get("fields", [])]
        out.append(ChangedRow(cell(ch.get("key")), fields))
    return out


@router.get("/datasets/{name}/{ref}")
def version_page(request: Request, name: str, ref: str, session: SessionDep) -> Response:
    """A version (`3`, `v3`, a label, `latest` or its id): its card, and its rows a page at a time, searched
    with `?q=` (text columns containing it, case-insensitive)."""
    return _version_page(request, session, name, ref)


def _version_page(request: Request, session: PageSession, name: str, ref: str) -> Response:
    platform = get_platform(request)
    try:
        c = card.card(platform, session.actor, f"{name}@{ref}")
    except PodiumError as exc:
        return error_page(request, session, exc)
    q = request.query_params.get("q") or ""
    rows: RowsPage | None = None
    rows_error: PodiumError | None = None
    offset, limit = 0, ROWS_PER_PAGE
    try:
        offset = int_param(request, "offset", 0, 0, 10**12)
        limit = int_param(request, "limit", ROWS_PER_PAGE, 1, MAX_ROWS_PER_PAGE)
        rows = service.head(
            platform, session.actor, f"{c.version.dataset}@{c.version.id}", offset=offset, limit=limit, q=q or None
        )
    except PodiumError as exc:
        rows_error = exc
    path = f"/datasets/{c.version.dataset}/{c.version.version}"  # pages of this version, wherever labels move

    def page_url(at: int) -> str:
        params: dict[str, str | int] = {}
        if q:
            params["q"] = q
        if limit != ROWS_PER_PAGE:
            params["limit"] = limit
        if at:
            params["offset"] = at
        return path + (f"?{urlencode(params)}" if params else "")

    prev_url = page_url(max(0, offset - limit)) if rows is not None and offset > 0 else None
    next_url = page_url(rows.next_offset) if rows is not None and rows.next_offset is not None else None
    column_names = [col.name for col in rows.columns] if rows is not None else []
    return render(
        request,
        "data/version.html",
        session,
        status_code=rows_error.status if rows_error else 200,
        card=c,
        v=c.version,
        charts=card_charts(c),
        languages=shares(c.languages),
        splits=shares(c.splits),
        pii=_by_count(c.pii),
        quality_drops=_by_count(c.quality_drops),
        steps=[
            {
                **s,
                "summary": report_summary(s.get("report") or {}),
                "config_text": _config_text(s.get("config") or {}),
            }
            for s in c.steps
        ],
        column_stats=c.version.stats.get("columns", {}),
        rows=rows,
        cells=[[cell(r.get(n)) for n in column_names] for r in rows.rows] if rows is not None else [],
        rows_error=rows_error,
        q=q,
        offset=offset,
        limit=limit,
        default_limit=ROWS_PER_PAGE,
        prev_url=prev_url,
        next_url=next_url,
        clear_url=path,
        made_by=made_by,
        parent_ref=parent_ref,
        parent_href=parent_href,
        fmt_count=fmt_count,
        fmt_bytes=fmt_bytes,
    )
