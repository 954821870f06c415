"""The knowledge-base SDK: `podium.kb.get("support-docs@prod").search("how do I reset my password?")`.

A handle names a knowledge base and, optionally, a version (`docs`, `docs@3`, `docs@prod`, `docs@kbv_…`; a
bare name searches the newest ready version). Everything goes through the server's `/api/kb` endpoints, on
the SDK's one client configuration (`podium.configure(url=..., api_key=...)`, else `PODIUM_URL`,
`PODIUM_API_KEY`, podium.toml, `<home>/admin.key`), read when the handle is made; `url` and `api_key`
arguments override it.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from podium.core.client import Client
from podium.core.errors import InvalidInput, PodiumError

FINAL = ("succeeded", "failed", "cancelled")
TIMEOUT = 600.0  # seconds a search or an evaluation may take (each query is embedded through the gateway)


def _split(ref: str) -> tuple[str, str | None]:
    name, _, tag = ref.partition("@")
    if not name:
        raise InvalidInput(
            f"knowledge-base reference {ref!r} is not `name` or `name@version`", details={"field": "ref"}
        )
    return name, tag or None


@dataclass(frozen=True)
class Hit:
    """One chunk a search found. `score` is the mode's own (cosine similarity for `vector`, BM25 for `text`,
    reciprocal-rank fusion for `hybrid`); `start` and `end` are the chunk's character offsets in its document."""

    id: str
    text: str
    source: str
    doc_id: str
    start: int
    end: int
    score: float
    similarity: float | None = None
    bm25: float | None = None
    tags: builtins.list[str] = field(default_factory=builtins.list)
    created_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, hit: Mapping[str, Any]) -> Hit:
        """A hit from the API's JSON."""
        created = hit.get("created_at")
        return cls(
            id=str(hit["id"]),
            text=str(hit["text"]),
            source=str(hit["source"]),
            doc_id=str(hit["doc_id"]),
            start=int(hit["start"]),
            end=int(hit["end"]),
            score=float(hit["score"]),
            similarity=hit.get("similarity"),
            bm25=hit.get("bm25"),
            tags=builtins.list(hit.get("tags") or []),
            created_at=datetime.fromisoformat(created) if isinstance(created, str) else None,
            metadata=dict(hit.get("metadata") or {}),
        )


@dataclass(frozen=True)
class VersionEval:
    """One version's retrieval metrics over an evaluation dataset (means, and their 95% intervals as
    `{"n", "mean", "low", "high"}`), and its first per-query rows."""

    version: int
    version_id: str
    metrics: dict[str, float]
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    embedding_model: str | None = None
    chunks: int | None = None
    rows: builtins.list[dict[str, Any]] = field(default_factory=builtins.list, repr=False)

    @classmethod
    def from_api(cls, v: Mapping[str, Any]) -> VersionEval:
        """A version's evaluation from the API's JSON."""
        return cls(
            version=int(v["version"]),
            version_id=str(v["version_id"]),
            metrics=dict(v["metrics"]),
            intervals=dict(v.get("intervals") or {}),
            embedding_model=v.get("embedding_model"),
            chunks=v.get("chunks"),
            rows=builtins.list(v.get("rows") or []),
        )


@dataclass(frozen=True)
class EvalResult:
    """Retrieval metrics of one or two versions over the same queries (`POST /api/kb/{name}/eval`); with two,
    `comparison` holds each metric's paired test of the second against the first (`mean_delta`, `low`,
    `high`, `p_value`, wins, losses, ties)."""

    kb: str
    dataset: str
    k: int
    mode: str
    queries: int
    versions: builtins.list[VersionEval]
    comparison: dict[str, dict[str, Any]] | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> EvalResult:
        """An evaluation from the API's JSON."""
        return cls(
            kb=str(body["kb"]),
            dataset=str(body["dataset"]),
            k=int(body["k"]),
            mode=str(body["mode"]),
            queries=int(body["queries"]),
            versions=[VersionEval.from_api(v) for v in body["versions"]],
            comparison=dict(body["comparison"]) if body.get("comparison") else None,
            raw=dict(body),
        )


class KnowledgeBase:
    """A handle on a knowledge base (and optionally one version of it) on a Podium server."""

    def __init__(self, ref: str, client: Client):
        self.ref = ref
        self.name, self.version = _split(ref)
        self._client = client

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.ref!r} at {self._client.url})"

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the handle's connections."""
        self._client.close()

    def info(self) -> dict[str, Any]:
        """The knowledge base: its versions (newest first, with their lineage and status), labels and label
        history."""
        detail: dict[str, Any] = self._client.get(f"/api/kb/{self.name}")
        return detail

    def search(
        self, query: str, k: int = 5, mode: str = "hybrid", filters: Mapping[str, Any] | None = None
    ) -> builtins.list[Hit]:
        """The `k` best chunks for `query`, best first: by meaning (`vector`), words (`text`) or both
        (`hybrid`), among those matching `filters` (`source`, `tags_any`, `created_from`, `created_to`)."""
        body: dict[str, Any] = {"query": query, "k": k, "mode": mode, "filters": dict(filters) if filters else None}
        if self.version is not None:
            body["version"] = self.version
        result = self._client.post(f"/api/kb/{self.name}/search", body)
        return [Hit.from_api(h) for h in result["hits"]]

    def eval(
        self,
        dataset: str,
        *,
        query_field: str = "query",
        relevant_field: str = "relevant",
        versions: Sequence[str | int] | None = None,
        k: int = 10,
        mode: str = "hybrid",
        filters: Mapping[str, Any] | None = None,
        rows: int | None = None,
    ) -> EvalResult:
        """Retrieval metrics (hit rate, MRR, nDCG, recall at `k`) over a dataset of queries and their relevant
        chunk or document ids, for one or two versions side by side (default: the handle's version, else the
        newest ready one); `rows`: how many per-query rows to return (default: the server's)."""
        chosen = versions if versions is not None else ([self.version] if self.version is not None else None)
        body: dict[str, Any] = {
            "dataset": dataset,
            "query_field": query_field,
            "relevant_field": relevant_field,
            "k": k,
            "mode": mode,
            "filters": dict(filters) if filters else None,
        }
        if chosen is not None:
            body["versions"] = [str(v) for v in chosen]
        if rows is not None:
            body["rows"] = rows
        return EvalResult.from_api(self._client.post(f"/api/kb/{self.name}/eval", body))


def get(ref: str, *, url: str | None = None, api_key: str | None = None) -> KnowledgeBase:
    """A handle on `name`, `name@3` or `name@label`, on the configured (or given) server."""
    _split(ref)
    return KnowledgeBase(ref, Client(url, api_key, timeout=TIMEOUT))


def create(name: str, *, description: str = "", url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """A new, empty knowledge base in your key's project."""
    with Client(url, api_key) as c:
        made: dict[str, Any] = c.post("/api/kb", {"name": name, "description": description})
    return made


def build(
    name: str,
    dataset: str,
    *,
    embedding_model: str,
    text_field: str = "text",
    chunker: Mapping[str, Any] | None = None,
    wait: bool = True,
    timeout: float = 3600.0,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Build the next version of `name` from a dataset version (its `text_field` chunked by `chunker`, the
    `chunk` step's settings, default 1000 characters with 100 of overlap, and embedded by `embedding_model`).
    Returns the version; with `wait`, once the build job has ended (a failed build raises `PodiumError`)."""
    body = {
        "dataset": dataset,
        "text_field": text_field,
        "chunker": dict(chunker) if chunker is not None else None,
        "embedding_model": embedding_model,
    }
    with Client(url, api_key) as c:
        started = c.post(f"/api/kb/{name}/build", body)
        version: dict[str, Any] = started["version"]
        if not wait:
            return version
        job = started["job"]
        deadline = time.monotonic() + timeout
        while job["status"] not in FINAL:
            if time.monotonic() > deadline:
                raise PodiumError(
                    f"the build of {name}@{version['version']} (job {job['id']}) is still {job['status']} after "
                    f"{timeout} s; follow it with `podium jobs show {job['id']} -f`"
                )
            time.sleep(0.2)
            job = c.get(f"/api/jobs/{job['id']}", log_tail=0)
        detail = c.get(f"/api/kb/{name}")
    version = next((v for v in detail["versions"] if v["id"] == version["id"]), version)
    if job["status"] != "succeeded":
        error = version.get("error") or job.get("error") or job["status"]
        raise PodiumError(
            f"the build of {name}@{version['version']} {job['status']}: {error}",
            details={"job": job["id"], "version": version["id"]},
        )
    return version


def list(*, url: str | None = None, api_key: str | None = None) -> builtins.list[dict[str, Any]]:
    """The knowledge bases you see, by name."""
    with Client(url, api_key) as c:
        rows: builtins.list[dict[str, Any]] = c.get("/api/kb")
    return rows
