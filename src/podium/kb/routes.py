"""`/api/kb`: knowledge bases, their builds, labels and searches over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.kb import evaluate, service
from podium.kb.evaluate import RetrievalEval
from podium.kb.index import MAX_K, MAX_QUERY_CHARS, Filters
from podium.kb.service import BuildStarted, KbDetail, KbInfo, KbVersionInfo, SearchResult

router = APIRouter(prefix="/api/kb", tags=["knowledge bases"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


class CreateBody(BaseModel):
    """Body of `POST /api/kb`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=120)
    description: str = Field("", max_length=service.MAX_DESCRIPTION)


class BuildBody(BaseModel):
    """Body of `POST /api/kb/{name}/build`: the dataset version to index (`name`, `name@3`, `name@label`),
    its text column, the chunker's settings (those of the `chunk` preparation step but `field`; default:
    1000 characters with 100 of overlap) and the embedding model (a model or route the gateway serves)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(max_length=service.MAX_FIELD_CHARS)
    text_field: str = Field("text", max_length=service.MAX_FIELD_CHARS)
    chunker: dict[str, Any] | None = None
    embedding_model: str = Field(max_length=service.MAX_MODEL_CHARS)


class SearchBody(BaseModel):
    """Body of `POST /api/kb/{name}/search`. `version`: a number, a label or a version id (default: the newest
    ready version)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(max_length=MAX_QUERY_CHARS)
    mode: str = Field("hybrid", description="vector, text or hybrid.")
    k: int = Field(10, ge=1, le=MAX_K)
    filters: Filters | None = None
    version: str | int | None = None
    min_similarity: float | None = Field(None, ge=-1, le=1, description="Only chunks at least this cosine-similar.")
    rerank_model: str | None = Field(
        None, max_length=service.MAX_MODEL_CHARS, description="A chat or embedding model that re-ranks the hits."
    )
    rerank_candidates: int | None = Field(None, ge=1, le=100, description="Chunks found for re-ranking.")


class EvalBody(BaseModel):
    """Body of `POST /api/kb/{name}/eval`: a dataset version of labelled queries (`query_field`, and
    `relevant_field` holding chunk ids or document ids), one or two versions (numbers, labels or ids; default
    the newest ready version) searched with every query, `k` hits each in `mode`, among the chunks matching
    `filters`; `rows` query rows are returned per version (the metrics use every query)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(max_length=service.MAX_FIELD_CHARS)
    query_field: str = Field("query", max_length=service.MAX_FIELD_CHARS)
    relevant_field: str = Field("relevant", max_length=service.MAX_FIELD_CHARS)
    versions: list[str | int] | None = Field(None, max_length=evaluate.MAX_VERSIONS)
    k: int = Field(10, ge=1, le=MAX_K)
    mode: str = Field("hybrid", description="vector, text or hybrid.")
    filters: Filters | None = None
    rows: int = Field(evaluate.ROWS_SHOWN, ge=0, le=evaluate.MAX_QUERIES)


class LabelBody(BaseModel):
    """Body of `PUT /api/kb/{name}/labels/{label}`: a version number, `latest`, a label or a version id."""

    model_config = ConfigDict(extra="forbid")

    version: str | int


@router.post("", status_code=status.HTTP_201_CREATED)
def create_kb(body: CreateBody, actor: ActorDep, platform: PlatformDep) -> KbInfo:
    """A new, empty knowledge base in your project."""
    return service.create_kb(platform, actor, body.name, description=body.description)


@router.get("")
def list_kbs(actor: ActorDep, platform: PlatformDep) -> list[KbInfo]:
    """The knowledge bases you see."""
    return service.list_kbs(platform, actor)


@router.get("/{name}")
def get_kb(name: str, actor: ActorDep, platform: PlatformDep) -> KbDetail:
    """A knowledge base with its versions (newest first) and label history."""
    return service.get_kb(platform, actor, name)


@router.post("/{name}/build", status_code=status.HTTP_202_ACCEPTED)
def build(name: str, body: BuildBody, actor: ActorDep, platform: PlatformDep) -> BuildStarted:
    """Check a build whole (dataset, text column, chunker, embedding model), then make the next version as a
    job (follow it at `/api/jobs/{id}`); the version is searchable once the job has made it ready."""
    return service.build(platform, actor, name, body.dataset, body.text_field, body.chunker, body.embedding_model)


@router.post("/{name}/search")
def search(name: str, body: SearchBody, actor: ActorDep, platform: PlatformDep) -> SearchResult:
    """The best chunks for a query, by meaning (`vector`), by words (`text`, BM25) or both (`hybrid`), among
    those matching the filters. A version still building answers 409."""
    ref = name if body.version is None else f"{name}@{body.version}"
    return service.search(
        platform,
        actor,
        ref,
        body.query,
        mode=body.mode,
        k=body.k,
        filters=body.filters,
        min_similarity=body.min_similarity,
        rerank_model=body.rerank_model,
        rerank_candidates=body.rerank_candidates,
    )


@router.post("/{name}/eval")
def evaluate_kb(name: str, body: EvalBody, actor: ActorDep, platform: PlatformDep) -> RetrievalEval:
    """Retrieval metrics (hit rate, MRR, nDCG@k, recall@k, each with its 95% interval) of one version, or of two
    side by side with their per-query differences, on a dataset of labelled queries."""
    return evaluate.evaluate(
        platform,
        actor,
        name,
        body.dataset,
        query_field=body.query_field,
        relevant_field=body.relevant_field,
        versions=body.versions,
        k=body.k,
        mode=body.mode,
        filters=body.filters,
        rows=body.rows,
    )


@router.put("/{name}/labels/{label}")
def set_label(name: str, label: str, body: LabelBody, actor: ActorDep, platform: PlatformDep) -> KbVersionInfo:
    """Point a label at a ready version of this knowledge base (atomic; the move is recorded)."""
    return service.set_label(platform, actor, name, label, body.version)


@router.delete("/{name}/labels/{label}", status_code=status.HTTP_204_NO_CONTENT)
def remove_label(name: str, label: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Delete a label (the removal is recorded in its history)."""
    service.remove_label(platform, actor, name, label)
