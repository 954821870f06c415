"""Retrieval-augmented chat in the gateway: a chat request may carry

    "retrieval": {"kb": "support-docs@prod", "k": 5, "mode": "hybrid", "filter": {...},
                  "query": "...", "min_similarity": 0.3, "rerank": {"model": "...", "candidates": 20}}

The gateway takes the query (`retrieval.query`, else the text of the last user message, else the prompt
reference's `query` or `question` variable), has a `Retriever` find the `k` best chunks, renders them into the
request and calls the model; the answer carries `citations` (an extension field beside `choices`, and the
`x-podium-citations` header with the chunk ids) and the trace a retriever span with the query and the hits.

Where the context goes: a prompt version that uses the variable `context` gets it there (the rendered chunks
are passed as that variable unless the request set it); otherwise it goes in a system message after the
request's own leading system messages. The gateway does not import the knowledge-base domain, which builds on
it: that domain plugs its `Retriever` in at setup, as the prompts domain plugs in its resolver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from podium.core.identity import Principal
from podium.gateway.errors import GatewayError

MAX_K = 50  # chunks put into one prompt
MAX_CANDIDATES = 100  # chunks a re-ranking model scores for one request
MAX_QUERY = 8192
MAX_REF = 200
MODES = ("vector", "text", "hybrid")
CONTEXT_VARIABLE = "context"
QUERY_VARIABLES = ("query", "question")
HEADER_IDS = 4000  # characters of chunk ids in the `x-podium-citations` header
_FIELDS = frozenset({"kb", "k", "mode", "filter", "query", "rerank", "min_similarity"})
_RERANK_FIELDS = frozenset({"model", "candidates"})
CONTEXT_PREAMBLE = (
    "Answer from the numbered sources below when they are relevant, and cite them by number, like [1]. "
    "If they do not answer the question, say so."
)


@dataclass(frozen=True)
class Rerank:
    """Re-ranking by a model through the gateway: `candidates` chunks retrieved, re-scored by `model`."""

    model: str
    candidates: int


@dataclass(frozen=True)
class RetrievalSpec:
    """A request's `retrieval` field, checked."""

    kb: str
    k: int = 5
    mode: str = "hybrid"
    filter: dict[str, Any] | None = None
    query: str | None = None
    rerank: Rerank | None = None
    min_similarity: float | None = None


@dataclass
class Retrieved:
    """What a retrieval found: the version searched, the query, and the hits best first (each a dict with id,
    source, doc_id, start, end, score, similarity, bm25, rerank and text)."""

    kb: str
    version: int
    version_id: str
    dataset_version_id: str | None
    query: str
    mode: str
    k: int
    filter: dict[str, Any] | None
    hits: list[dict[str, Any]]
    started_at: datetime
    ended_at: datetime
    rerank_model: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """`name@version`, the header's and span's name for the version searched."""
        return f"{self.kb}@{self.version}"

    def citations(self) -> list[dict[str, Any]]:
        """The hits as the answer cites them: `[n]` in the prompt is `index` n."""
        keys = ("id", "source", "doc_id", "start", "end", "score", "text")
        return [{"index": i, "kb": self.ref, **{k: h.get(k) for k in keys}} for i, h in enumerate(self.hits, 1)]

    def headers(self) -> dict[str, str]:
        """`x-podium-kb-version` and `x-podium-citations` (the chunk ids, comma-separated, cut to fit)."""
        ids = ""
        for hit in self.hits:
            part = str(hit.get("id", "")).replace(",", "%2C")
            if len(ids) + len(part) + 1 > HEADER_IDS:
                break
            ids = f"{ids},{part}" if ids else part
        return {"x-podium-kb-version": self.ref, "x-podium-citations": ids}


class Retriever(Protocol):
    """Finds the chunks for a retrieval request on behalf of a key."""

    async def retrieve(self, principal: Principal, spec: RetrievalSpec, query: str) -> Retrieved:
        """The hits (a `GatewayError` says why not: 404 unknown knowledge base, 409 still building, ...)."""


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, code="invalid_retrieval", param=param)


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"'retrieval.{name}' must be an integer from {low} to {high}", f"retrieval.{name}")
    return value


def parse_spec(value: Any) -> RetrievalSpec:
    """The `retrieval` field checked; a 400 names the bad part."""
    if not isinstance(value, dict):
        raise _bad("'retrieval' must be an object: {kb, k, mode, filter, query, rerank}", "retrieval")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise _bad(
            f"retrieval.{unknown[0]} is not a known field; use kb, k, mode, filter, query, rerank, min_similarity",
            f"retrieval.{unknown[0]}",
        )
    kb = value.get("kb")
    if not isinstance(kb, str) or not kb.strip() or len(kb) > MAX_REF or "\x00" in kb:
        raise _bad(
            f"'retrieval.kb' must name a knowledge base (`name` or `name@label`), 1 to {MAX_REF} characters",
            "retrieval.kb",
        )
    k = _int(value.get("k", 5), "k", 1, MAX_K)
    mode = value.get("mode", "hybrid")
    if mode not in MODES:
        raise _bad(f"'retrieval.mode' must be one of {', '.join(MODES)}", "retrieval.mode")
    flt = value.get("filter")
    if flt is not None and not isinstance(flt, dict):
        raise _bad(
            "'retrieval.filter' must be an object (source, tags_any, created_from, created_to)", "retrieval.filter"
        )
    query = value.get("query")
    if query is not None and (not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY):
        raise _bad(f"'retrieval.query' must be 1 to {MAX_QUERY} characters of text", "retrieval.query")
    rerank = None
    raw = value.get("rerank")
    if raw is not None:
        if not isinstance(raw, dict) or set(raw) - _RERANK_FIELDS:
            raise _bad("'retrieval.rerank' must be an object: {model, candidates}", "retrieval.rerank")
        model = raw.get("model")
        if not isinstance(model, str) or not model.strip() or len(model) > MAX_REF:
            raise _bad("'retrieval.rerank.model' must name a chat or embedding model", "retrieval.rerank.model")
        candidates = _int(raw.get("candidates", max(20, 2 * k)), "rerank.candidates", k, MAX_CANDIDATES)
        rerank = Rerank(model.strip(), candidates)
    floor = value.get("min_similarity")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int | float) or not -1 <= floor <= 1):
        raise _bad("'retrieval.min_similarity' must be a number from -1 to 1", "retrieval.min_similarity")
    return RetrievalSpec(kb=kb.strip(), k=k, mode=mode, filter=flt, query=query, rerank=rerank, min_similarity=floor)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def query_of(body: dict[str, Any], spec: RetrievalSpec) -> str:
    """What to search for: `retrieval.query`, else the last user message's text, else the prompt reference's
    `query` or `question` variable; a 400 if there is none."""
    if spec.query is not None:
        return spec.query
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                text = _text(m.get("content")).strip()
                if text:
                    return text[:MAX_QUERY]
    prompt = body.get("prompt")
    variables = prompt.get("variables") if isinstance(prompt, dict) else None
    if isinstance(variables, dict):
        for name in QUERY_VARIABLES:
            value = variables.get(name)
            if isinstance(value, str) and value.strip():
                return value[:MAX_QUERY]
    raise _bad(
        "retrieval needs a query: give 'retrieval.query', a user message, or a prompt variable 'query'",
        "retrieval.query",
    )


def render_context(retrieved: Retrieved) -> str:
    """The hits as numbered sources, the way the prompt shows them."""
    parts = []
    for i, hit in enumerate(retrieved.hits, 1):
        parts.append(f"[{i}] (source: {hit.get('source')}, {hit.get('id')})\n{hit.get('text', '')}")
    return "\n\n".join(parts) if parts else "(no sources were found)"


def with_context_variable(body: dict[str, Any], context: str) -> dict[str, Any]:
    """The request with the rendered context as the prompt reference's `context` variable (unless set)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, dict):
        return body
    variables = prompt.get("variables")
    variables = dict(variables) if isinstance(variables, dict) else {}
    variables.setdefault(CONTEXT_VARIABLE, context)
    return {**body, "prompt": {**prompt, "variables": variables}}


def with_context_message(body: dict[str, Any], context: str) -> dict[str, Any]:
    """The request with the context in a system message after its leading system messages, unless a rendered
    prompt already placed it."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    if any(context in _text(m.get("content")) for m in messages if isinstance(m, dict)):
        return body  # the prompt version put it where it wanted
    at = 0
    while at < len(messages) and isinstance(messages[at], dict) and messages[at].get("role") in ("system", "developer"):
        at += 1
    system = {"role": "system", "content": f"{CONTEXT_PREAMBLE}\n\n{context}"}
    return {**body, "messages": [*messages[:at], system, *messages[at:]]}
