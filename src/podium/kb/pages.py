"""Dashboard pages for knowledge bases: the list; one knowledge base (its versions with their lineage, from the
dataset version through the chunker and the embedding model to the chunks, each version's status and build
job, and its label history); a search form and its hits, the query's words highlighted in each chunk.

Every figure comes from `kb.service`, called as the signed-in user (one call per page); this module only
shapes it for the templates. Chunk text is always escaped: the highlighter escapes every piece of it and adds
only its own `<mark>` tags, and everything else is escaped by the templates (autoescape).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup, escape
from starlette.responses import Response

from podium.core.errors import PodiumError
from podium.core.http import get_platform
from podium.kb import service
from podium.kb.index import MAX_K, MAX_QUERY_CHARS, MODES, Hit
from podium.kb.service import KbDetail, KbVersionInfo, SearchResult
from podium.web.shell import PageSession, error_page, int_param, page_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

DEFAULT_K = 10
DEFAULT_MODE = "hybrid"
TEXT_CHARS = 4000  # characters of a chunk shown in a hit; the rest is counted, not shown
MAX_SOURCES = 20  # `source` filters taken from the query string

# Words left out of highlighting: BM25 drops English stop words too, and marking every "the" helps no one.
_STOP_TEXT = (
    "a an and are as at be but by for from has have he her his i if in into is it its me my no not of on or our "
    "she so than that the their them then there these they this to was we were what when where which who why "
    "will with you your"
)
STOP_WORDS = frozenset(_STOP_TEXT.split())
_WORD = re.compile(r"\w+")
MARK = Markup("<mark>{}</mark>")  # a marked word; `format` escapes it
_SUFFIXES = ("ing", "ed", "es", "s")


# --- formatting --------------------------------------------------------------------------------------


def fmt_count(value: float | None) -> str:
    """A count with thousands separators; `—` for none."""
    return "—" if value is None else f"{value:,.0f}"


def fmt_score(value: float | None) -> str:
    """A score to four significant digits (RRF scores are small, BM25 scores larger); `—` for none."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.4g}"


def chunker_text(chunker: dict[str, Any]) -> str:
    """A chunker's settings in a few words: `200 chars, overlap 20`, `256 tokens (gpt2), overlap 32`."""
    unit = str(chunker.get("unit") or "chars")
    size, overlap = chunker.get("size"), chunker.get("overlap")
    tokenizer = chunker.get("tokenizer")
    text = f"{size} {unit}" + (f" ({tokenizer})" if tokenizer else "")
    if overlap:
        text += f", overlap {overlap}"
    extra = {k: v for k, v in chunker.items() if k not in ("unit", "size", "overlap", "tokenizer") and v is not None}
    if extra:
        text += ", " + ", ".join(f"{k} {v}" for k, v in sorted(extra.items()))
    return text


def dataset_name(v: KbVersionInfo) -> str:
    """The dataset a version was built from (its reference without the version part)."""
    return v.dataset.partition("@")[0]


def dataset_href(v: KbVersionInfo) -> str:
    """The page of the exact dataset version a version was built from (by id, wherever labels have moved)."""
    return f"/datasets/{quote(dataset_name(v), safe='')}/{quote(v.dataset_version_id, safe='')}"


# --- highlighting ------------------------------------------------------------------------------------


def stem(word: str) -> str:
    """A light English stem, enough to mark `zebras` for `zebra` and `baking` for `bake`: lower-cased, one
    common suffix and a final `e` dropped, a doubled last letter made single."""
    w = word.lower()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2]:
        w = w[:-1]
    return w


def query_terms(query: str) -> frozenset[str]:
    """The stems of a query's words that are worth marking (no stop words)."""
    return frozenset(stem(w) for w in _WORD.findall(query) if w.lower() not in STOP_WORDS)


def highlight(text: str, terms: frozenset[str]) -> Markup:
    """`text` escaped, with each word whose stem is one of `terms` wrapped in `<mark>`: every piece of the text
    is escaped on its own (`escape`, `Markup.format`), so nothing in it can become markup."""
    parts: list[Markup] = []
    at = 0
    for m in _WORD.finditer(text):
        parts.append(escape(text[at : m.start()]))
        parts.append(MARK.format(m.group()) if stem(m.group()) in terms else escape(m.group()))
        at = m.end()
    parts.append(escape(text[at:]))
    return Markup("").join(parts)


@dataclass(frozen=True)
class HitView:
    """A hit as a row of the results: its rank, its scores formatted, its chunk text highlighted (cut)."""

    rank: int
    hit: Hit
    score: str
    similarity: str
    bm25: str
    text: Markup
    cut: int


def hit_views(result: SearchResult, query: str) -> list[HitView]:
    """The rows of a search's results, best first."""
    terms = query_terms(query)
    views = []
    for rank, h in enumerate(result.hits, 1):
        shown = h.text[:TEXT_CHARS]
        views.append(
            HitView(
                rank=rank,
                hit=h,
                score=fmt_score(h.score),
                similarity=fmt_score(h.similarity),
                bm25=fmt_score(h.bm25),
                text=highlight(shown, terms),
                cut=len(h.text) - len(shown),
            )
        )
    return views


# --- pages -------------------------------------------------------------------------------------------


@router.get("/kb")
def kbs_page(request: Request, session: SessionDep) -> Response:
    """Every knowledge base the user sees: its newest version, the newest ready one (what a search reads), its
    chunks and labels."""
    try:
        kbs = service.list_kbs(get_platform(request), session.actor)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "kb/list.html", session, kbs=kbs, **_helpers())


@router.get("/kb/{name}")
def kb_page(request: Request, name: str, session: SessionDep) -> Response:
    """A knowledge base: its versions (newest first) with where each came from and how it was made, their
    status and build job, and the history of its labels."""
    try:
        detail = service.get_kb(get_platform(request), session.actor, name)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(
        request,
        "kb/detail.html",
        session,
        kb=detail,
        default_mode=DEFAULT_MODE,
        default_k=DEFAULT_K,
        **_helpers(),
    )


@router.get("/kb/{name}/search")
def search_page(request: Request, name: str, session: SessionDep) -> Response:
    """The search form (`?q=&mode=&k=&version=&source=`, sources comma-separated) and, with a query, its hits
    best first: rank, scores, source, document and offsets, and the chunk with the query's words marked. Without
    a query the page shows the knowledge base's versions to choose from; a version still building answers the
    service's 409."""
    platform = get_platform(request)
    q = request.query_params.get("q") or ""
    mode = request.query_params.get("mode") or DEFAULT_MODE
    version = (request.query_params.get("version") or "").strip()
    sources = [s.strip() for v in request.query_params.getlist("source") for s in v.split(",") if s.strip()]
    sources = sources[:MAX_SOURCES]
    detail: KbDetail | None = None
    result: SearchResult | None = None
    k = DEFAULT_K
    try:
        k = int_param(request, "k", DEFAULT_K, 1, MAX_K)
        if q.strip():
            ref = f"{name}@{version}" if version else name
            filters = {"source": sources} if sources else None
            result = service.search(platform, session.actor, ref, q, mode=mode, k=k, filters=filters)
        else:
            detail = service.get_kb(platform, session.actor, name)
    except PodiumError as exc:
        return error_page(request, session, exc)
    form = {"q": q, "mode": mode, "k": k, "version": version, "source": ", ".join(sources)}
    return render(
        request,
        "kb/search.html",
        session,
        name=result.kb if result is not None else detail.name if detail is not None else name,
        detail=detail,
        result=result,
        hits=hit_views(result, q) if result is not None else [],
        form=form,
        sources=sources,
        **_helpers(),
    )


def search_url(name: str, **params: str | int) -> str:
    """A search page's URL with these parameters (empty ones left out)."""
    query = urlencode({k: v for k, v in params.items() if v not in ("", None)})
    return f"/kb/{quote(name, safe='')}/search" + (f"?{query}" if query else "")


def _helpers() -> dict[str, Any]:
    return {
        "fmt_count": fmt_count,
        "chunker_text": chunker_text,
        "dataset_name": dataset_name,
        "dataset_href": dataset_href,
        "search_url": search_url,
        "modes": MODES,
        "max_k": MAX_K,
        "max_query": MAX_QUERY_CHARS,
    }
