"""Knowledge bases: named, project-owned, each version a dataset version chunked and embedded into one chunk
index (`podium.kb.index`), searched by vector, full text or both.

A build is checked whole before it is queued: the knowledge base and the right to build it, the dataset
version (one the caller sees), its text column (present, holding strings), the chunker's settings (the
`chunk` preparation step's own checks, tokenizer included) and the embedding model (resolved by the gateway
for the caller, as a `/v1/embeddings` call would be). Then the version row is written `building` and a
`kb.build` job, acting as the key that asked, reads the dataset version's rows, chunks them, embeds the
chunks `EMBED_BATCH` at a time through the in-process gateway (so routing, limits, budgets and a trace per
call apply, with origin `kb`), writes them to the version's table and finishes it (indexes, then the
`finished` tag). Only then is the version marked `ready`; any failure drops the partial table and marks the
version `failed` with the error, so no half-built version is ever searched.

References are the registry kernel's (`store.KB_VERSIONS`): `docs@3`, `docs@prod`, `docs@kbv_…`; a bare
name (or `@latest`) searches the newest *ready* version, so a rebuild never makes a knowledge base
unsearchable. A version named explicitly that is still building answers `Conflict` (409), as does a
knowledge base with no ready version yet.

Tenancy: a knowledge base belongs to the project of the key that created it; viewers of that project (and
global knowledge bases' readers) search, members build and move labels, and another project's knowledge base
does not exist for the caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.core.db import utcnow
from podium.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PodiumError,
    RateLimited,
    ServiceUnavailable,
    validated,
)
from podium.core.identity import Actor, Principal
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.data import service as data
from podium.data.steps.base import StepContext
from podium.data.steps.chunk import CHUNK_COLUMNS, Chunk
from podium.data.tokenizers import loader
from podium.gateway import bridge
from podium.gateway.errors import GatewayError
from podium.gateway.service import Gateway, Incoming
from podium.jobs.service import JobInfo
from podium.jobs.service import submit as submit_job
from podium.kb.index import MAX_K, MAX_QUERY_CHARS, MODES, ChunkIndex, ChunkWriter, Filters, Hit, Mode
from podium.kb.rerank import MAX_CANDIDATES as MAX_RERANK
from podium.kb.rerank import rerank
from podium.kb.store import BUILDING, FAILED, KB_VERSIONS, READY, KbVersion, KnowledgeBase

ORIGIN = "kb"  # the source of the traces of knowledge-base embedding calls
EMBED_BATCH = 64  # chunk texts per embedding call
EMBED_CONCURRENCY = 4  # embedding calls in flight at once during a build
EMBED_TIMEOUT = 600.0  # seconds a build waits for one dataset batch's embeddings
QUERY_TIMEOUT = 60.0  # seconds a search waits for its query's embedding
DEFAULT_CHUNKER: dict[str, Any] = {"unit": "chars", "size": 1000, "overlap": 100}
TEXT_TYPES = ("string", "large_string")
MAX_DESCRIPTION = 10_000
MAX_MODEL_CHARS = 200
MAX_FIELD_CHARS = 200
MAX_ERROR_CHARS = 4000
OPEN_INDEXES = 64  # finished chunk indexes kept open for searches
DONOR_VERSIONS = 3  # earlier ready versions (same project and model) whose stored vectors a build re-uses
PROBE_TEXT = "dimension probe"  # what a build's check embeds to learn the model's dimension
META_SKIP = ("id", "source", "tags", "created_at")  # dataset columns that are index columns, not metadata

Progress = Callable[[float, str], None]


def kb_uri(platform: Platform) -> str:
    """Where knowledge-base chunk tables live (a LanceDB database): the `kb_url` setting, a directory or an
    object-storage URL, by default `<home>/kb`."""
    return platform.settings.effective_kb_url


# --- views -----------------------------------------------------------------------------------------


class KbVersionInfo(BaseModel):
    """One build of a knowledge base, with the labels that point at it."""

    id: str
    kb: str
    version: int
    status: str
    error: str | None
    dataset: str
    dataset_version_id: str
    text_field: str
    chunker: dict[str, Any]
    embedding_model: str
    embedding_version: str | None
    dim: int | None
    row_count: int
    doc_count: int
    reused: int
    job_id: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    labels: list[str]


class KbInfo(BaseModel):
    """A knowledge base in listings: its newest version and the newest ready one (what a bare name
    searches), and its labels."""

    name: str
    description: str
    latest_version: int
    ready_version: int | None
    chunks: int
    labels: dict[str, int]
    created_by: str
    created_at: datetime


class LabelMoveInfo(BaseModel):
    """One entry of a knowledge base's label history."""

    label: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime


class KbDetail(KbInfo):
    """A knowledge base with its versions (newest first) and the history of its labels."""

    versions: list[KbVersionInfo]
    history: list[LabelMoveInfo]


class BuildStarted(BaseModel):
    """A queued build: the job to follow (`/api/jobs/{id}`) and the version it is making."""

    job: JobInfo
    version: KbVersionInfo


class SearchResult(BaseModel):
    """The hits of a search, best first, and the version searched."""

    kb: str
    version: int
    version_id: str
    mode: str
    hits: list[Hit]


# --- helpers ---------------------------------------------------------------------------------------


def _version_info(s: Session, kb: KnowledgeBase, v: KbVersion, labels: dict[str, str] | None = None) -> KbVersionInfo:
    labels = KB_VERSIONS.labels(s, kb) if labels is None else labels
    return KbVersionInfo(
        id=v.id,
        kb=kb.name,
        version=v.version,
        status=v.status,
        error=v.error,
        dataset=v.dataset_ref,
        dataset_version_id=v.dataset_version_id,
        text_field=v.text_field,
        chunker=v.chunker,
        embedding_model=v.embedding_model,
        embedding_version=v.embedding_version,
        dim=v.dim,
        row_count=v.row_count,
        doc_count=v.doc_count,
        reused=v.reused,
        job_id=v.job_id,
        created_by=v.created_by,
        created_at=v.created_at,
        finished_at=v.finished_at,
        labels=sorted(label for label, vid in labels.items() if vid == v.id),
    )


def _newest_ready(s: Session, kb: KnowledgeBase) -> KbVersion | None:
    q = select(KbVersion).where(KbVersion.kb_id == kb.id, KbVersion.status == READY)
    return s.scalar(q.order_by(KbVersion.version.desc()).limit(1))


def _kb_info(s: Session, kb: KnowledgeBase) -> KbInfo:
    ready = _newest_ready(s, kb)
    return KbInfo(
        name=kb.name,
        description=kb.description,
        latest_version=KB_VERSIONS.latest_number(s, kb),
        ready_version=ready.version if ready is not None else None,
        chunks=ready.row_count if ready is not None else 0,
        labels=KB_VERSIONS.label_numbers(s, kb),
        created_by=kb.created_by,
        created_at=kb.created_at,
    )


def _find(s: Session, actor: Actor, name: str) -> KnowledgeBase:
    """The knowledge base `name` if the actor sees it (another project's is not found)."""
    return KB_VERSIONS.find(s, KB_VERSIONS.check_name(name), projects=actor.scope())


def _check_member(actor: Actor, kb: KnowledgeBase, action: str) -> None:
    actor.require_in(kb.project_id, "member", action)


def _resolve(s: Session, kb: KnowledgeBase, tag: str | None) -> KbVersion:
    """The version `tag` names; a bare name or `latest` the newest ready one (`Conflict` while none is)."""
    if tag is None or tag == "latest":
        ready = _newest_ready(s, kb)
        if ready is not None:
            return ready
        newest = KB_VERSIONS.latest(s, kb)
        if newest is None:
            raise KB_VERSIONS.no_versions(kb.name)
        if newest.status == BUILDING:
            raise Conflict(
                f"knowledge base {kb.name!r} is still building its first version (version {newest.version}); "
                "search it once the build has finished",
                details={"version": newest.version, "status": newest.status},
            )
        raise Conflict(
            f"knowledge base {kb.name!r} has no ready version: version {newest.version} failed to build "
            f"({newest.error}); build it again",
            details={"version": newest.version, "status": newest.status},
        )
    if tag.startswith(f"{KB_VERSIONS.version_prefix}_"):
        found = s.get(KbVersion, tag)
        if found is None or found.kb_id != kb.id:  # never say which knowledge base another version belongs to
            raise NotFound(f"knowledge base {kb.name!r} has no version {tag!r}", details={"field": "version"})
        return found
    return KB_VERSIONS.resolve(s, kb, tag)


def _ready(kb: KnowledgeBase, v: KbVersion) -> None:
    if v.status == BUILDING:
        raise Conflict(
            f"version {v.version} of knowledge base {kb.name!r} is still building",
            details={"version": v.version, "status": v.status},
        )
    if v.status != READY:
        raise Conflict(
            f"version {v.version} of knowledge base {kb.name!r} failed to build: {v.error}",
            details={"version": v.version, "status": v.status},
        )


def _principal(actor: Actor) -> Principal:
    if actor.principal is None:
        raise InvalidInput("knowledge-base embeddings are made as a key's calls; act with an API key")
    return actor.principal


def _gateway_failure(status: int, message: str, **details: Any) -> PodiumError:
    """A gateway answer's failure as a service error with a matching status."""
    if status == 429:
        return RateLimited(message, details=details)
    if status in (401, 403):
        return Forbidden(message, details=details)
    if 400 <= status < 500:
        return InvalidInput(message, details=details)
    return ServiceUnavailable(message, details=details)


def _answer_error(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or "the call failed")
    return "the call failed"


async def _embed(
    gateway: Gateway, principal: Principal, model: str, texts: list[str], slots: asyncio.Semaphore | None = None
) -> list[list[float]]:
    """Embedding vectors of `texts` (one `/v1/embeddings` call through the gateway), or a `PodiumError`
    saying why not."""
    return (await _embed_answer(gateway, principal, model, texts, slots))[0]


async def _embed_answer(
    gateway: Gateway, principal: Principal, model: str, texts: list[str], slots: asyncio.Semaphore | None = None
) -> tuple[list[list[float]], str]:
    """Embedding vectors of `texts` and the model the route answered with (the response's `model`)."""
    body = {"model": model, "input": texts}
    raw = orjson.dumps(body)
    incoming = Incoming(kind="embedding", body=body, body_bytes=len(raw), raw=raw)
    if slots is None:
        answer = await gateway.handle(principal, incoming, use_cache=False, origin=ORIGIN)
    else:
        async with slots:
            answer = await gateway.handle(principal, incoming, use_cache=False, origin=ORIGIN)
    if answer.status >= 400 or not isinstance(answer.body, dict):
        call = answer.call
        message = (call.error if call is not None and call.error else None) or _answer_error(answer.body)
        raise _gateway_failure(
            answer.status, f"embedding model {model!r} failed: {message}", field="embedding_model", model=model
        )
    data = answer.body.get("data")
    if not isinstance(data, list) or len(data) != len(texts):
        raise ServiceUnavailable(f"embedding model {model!r} did not return one embedding per text")
    ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
    vectors = []
    for item in ordered:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, list) or not vector:
            raise ServiceUnavailable(f"embedding model {model!r} returned an embedding that is not a list of numbers")
        vectors.append([float(x) for x in vector])
    answered = answer.body.get("model")
    return vectors, answered if isinstance(answered, str) and answered else model


async def _embed_all(
    gateway: Gateway, principal: Principal, model: str, texts: list[str], batch: int = EMBED_BATCH
) -> list[list[float]]:
    """Embeddings of many texts, `batch` per call and `EMBED_CONCURRENCY` calls at once, in order."""
    slots = asyncio.Semaphore(EMBED_CONCURRENCY)
    parts = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    tasks = [asyncio.ensure_future(_embed(gateway, principal, model, part, slots)) for part in parts]
    try:
        done = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return [vector for part in done for vector in part]


# --- knowledge bases -------------------------------------------------------------------------------


def create_kb(platform: Platform, actor: Actor, name: str, *, description: str = "") -> KbInfo:
    """A new, empty knowledge base in the actor's project (a global one for a server admin's key)."""
    actor.require("member", "create knowledge bases")
    name = KB_VERSIONS.check_name(name)
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise InvalidInput(
            f"description must be at most {MAX_DESCRIPTION} characters without NUL", details={"field": "description"}
        )

    def once(s: Session) -> KbInfo:
        existing = KB_VERSIONS.get(s, name)
        if existing is not None:
            if not actor.sees(existing.project_id):  # names are unique on the server: say so, not whose it is
                raise Conflict(
                    f"the knowledge-base name {name!r} is taken by another project; choose another name",
                    details={"field": "name"},
                )
            raise Conflict(f"knowledge base {name!r} exists already", details={"field": "name"})
        kb = KnowledgeBase(
            id=new_id("kb"),
            name=name,
            description=description,
            project_id=actor.project_id,
            created_by=actor.label,
            created_at=utcnow(),
        )
        s.add(kb)
        s.flush()
        record_audit(s, actor, "kb.create", "knowledge_base", kb.id, details={"name": name})
        return _kb_info(s, kb)

    return KB_VERSIONS.write(platform.db, once, conflict=f"knowledge base {name!r} was created concurrently")


def list_kbs(platform: Platform, actor: Actor) -> list[KbInfo]:
    """The knowledge bases the actor sees, by name."""
    actor.require("viewer", "read knowledge bases")
    with platform.db.read_session() as s:
        q = KB_VERSIONS.in_scope(select(KnowledgeBase).order_by(KnowledgeBase.name), actor.scope())
        return [_kb_info(s, kb) for kb in s.scalars(q)]


def get_kb(platform: Platform, actor: Actor, name: str) -> KbDetail:
    """A knowledge base with every version (newest first) and its label history."""
    actor.require("viewer", "read knowledge bases")
    with platform.db.read_session() as s:
        kb = _find(s, actor, name)
        labels = KB_VERSIONS.labels(s, kb)
        return KbDetail(
            **_kb_info(s, kb).model_dump(),
            versions=[_version_info(s, kb, v, labels) for v in KB_VERSIONS.versions(s, kb)],
            history=[
                LabelMoveInfo(
                    label=m.label, from_version=m.from_version, to_version=m.to_version, actor=m.actor, at=m.at
                )
                for m in KB_VERSIONS.history(s, kb)
            ],
        )


def get_version(platform: Platform, actor: Actor, ref: str) -> KbVersionInfo:
    """One version by reference (`docs`, `docs@3`, `docs@prod`, `docs@kbv_…`); a bare name is the newest ready
    version."""
    actor.require("viewer", "read knowledge bases")
    parsed = KB_VERSIONS.parse_ref(ref)
    with platform.db.read_session() as s:
        kb = _find(s, actor, parsed.name)
        return _version_info(s, kb, _resolve(s, kb, parsed.tag))


# --- building --------------------------------------------------------------------------------------


def check_chunker(
    platform: Platform, actor: Actor, chunker: Mapping[str, Any] | None, text_field: str, schema: pa.Schema
) -> dict[str, Any]:
    """The chunker's settings in canonical form, checked by the `chunk` step itself against the dataset's
    columns (a `tokens` unit loads its tokenizer now); errors name `chunker.<setting>`."""
    if not isinstance(chunker, Mapping | None):
        raise InvalidInput("chunker must be an object of chunk settings", details={"field": "chunker"})
    settings = dict(DEFAULT_CHUNKER if chunker is None else chunker)
    if "field" in settings:
        raise InvalidInput(
            "chunker.field: the text column is the build's text_field, not a chunker setting",
            details={"field": "chunker.field"},
        )
    config = validated(Chunk.Config, {**settings, "field": text_field}, "chunker", prefix="chunker.", default="chunker")
    step = Chunk(config, StepContext(tokenizer=loader(platform, actor)), prefix="chunker")
    step.output_schema(schema)
    canonical = config.model_dump(mode="json")
    canonical.pop("field")
    return canonical


def _check_text_field(version: data.VersionInfo, text_field: str) -> None:
    if not isinstance(text_field, str) or not text_field or len(text_field) > MAX_FIELD_CHARS:
        raise InvalidInput(
            f"text_field must be a column name of 1 to {MAX_FIELD_CHARS} characters", details={"field": "text_field"}
        )
    types = {c.name: c.type for c in version.columns}
    if text_field not in types:
        raise InvalidInput(
            f"text_field {text_field!r} is not a column of {version.ref}; its columns: {', '.join(types) or 'none'}",
            details={"field": "text_field", "columns": list(types)},
        )
    if types[text_field] not in TEXT_TYPES:
        raise InvalidInput(
            f"text_field {text_field!r} of {version.ref} holds {types[text_field]}, not text; name a string column",
            details={"field": "text_field"},
        )


def check_embedding_model(platform: Platform, actor: Actor, model: str) -> str:
    """The model, if the gateway would route a `/v1/embeddings` call to it for this caller; `InvalidInput`
    naming it (and what the gateway said) otherwise."""
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_CHARS or "\x00" in model:
        raise InvalidInput(
            f"embedding_model must be a model or route name of 1 to {MAX_MODEL_CHARS} characters",
            details={"field": "embedding_model"},
        )
    model = model.strip()
    principal = _principal(actor)
    if principal.role == "viewer":  # builds call models: the gateway refuses viewers' calls
        raise Forbidden("role 'viewer' may not build knowledge bases; it needs role 'member'")
    gateway = bridge.current(platform).gateway
    try:
        bridge.run(platform, gateway.check_model(principal, "embedding", model), QUERY_TIMEOUT)
    except GatewayError as exc:
        raise InvalidInput(
            f"embedding model {model!r} cannot be used: {exc.message}",
            details={"field": "embedding_model", "model": model},
        ) from None
    return model


@dataclasses.dataclass(frozen=True)
class EmbeddingProbe:
    """What one embedding call of a build's model said before the build was queued: the route, the model that
    answered (`version`: a route may move to another model) and the dimension of its vectors."""

    model: str
    version: str
    dim: int


def probe_embedding(platform: Platform, actor: Actor, model: str) -> EmbeddingProbe:
    """Check the embedding model as `check_embedding_model` does, then embed one short text with it to learn
    which model answers and the dimension of its vectors (so a dimension mismatch is refused before a build
    starts, and stored vectors are only re-used from the same model)."""
    model = check_embedding_model(platform, actor, model)
    gateway = bridge.current(platform).gateway
    try:
        vectors, answered = bridge.run(
            platform, _embed_answer(gateway, _principal(actor), model, [PROBE_TEXT]), QUERY_TIMEOUT
        )
    except InvalidInput as exc:
        raise InvalidInput(exc.message, details={"field": "embedding_model", "model": model}) from None
    return EmbeddingProbe(model=model, version=answered[:MAX_MODEL_CHARS], dim=len(vectors[0]))


def chunk_hash(probe: EmbeddingProbe | tuple[str, str], text: str) -> str:
    """The content hash under which a chunk's vector is stored: its text and the model (route and the model
    that answered) that embedded it; a later build embedding the same text with the same model re-uses it."""
    model, version = (probe.model, probe.version) if isinstance(probe, EmbeddingProbe) else probe
    return hashlib.sha256(f"{model}\x00{version}\x00{text}".encode()).hexdigest()[:32]


def config_hash(dataset_version_id: str, text_field: str, chunker: dict[str, Any], model: str) -> str:
    """The hash of what decides a version's content."""
    blob = orjson.dumps(
        {"dataset": dataset_version_id, "field": text_field, "chunker": chunker, "model": model},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(blob).hexdigest()


def build(
    platform: Platform,
    actor: Actor,
    name: str,
    dataset_ref: str,
    text_field: str,
    chunker: Mapping[str, Any] | None,
    embedding_model: str,
) -> BuildStarted:
    """Check a build whole (knowledge base and right to build it, dataset version, text column, chunker,
    embedding model), write the next version `building` and queue the `kb.build` job that makes it."""
    actor.require("member", "build knowledge bases")
    with platform.db.read_session() as s:
        kb = _find(s, actor, name)
        _check_member(actor, kb, "build this knowledge base")
        kb_name, kb_id = kb.name, kb.id
    if not isinstance(dataset_ref, str) or not dataset_ref.strip() or len(dataset_ref) > MAX_FIELD_CHARS:
        raise InvalidInput("dataset must be a dataset reference (`name`, `name@3`, `name@label`)")
    source = data.get_version(platform, actor, dataset_ref)
    _check_text_field(source, text_field)
    with data.open_rows(platform, actor, f"{source.dataset}@{source.id}") as (_, pf):
        schema = pf.schema_arrow
    canonical = check_chunker(platform, actor, chunker, text_field, schema)
    probe = probe_embedding(platform, actor, embedding_model)
    model = probe.model
    version_id = new_id(KB_VERSIONS.version_prefix)

    def once(s: Session) -> KbVersionInfo:
        kb = s.get(KnowledgeBase, kb_id)
        if kb is None:
            raise NotFound(f"knowledge base {kb_name!r} not found")
        if kb.dim is not None and kb.dim != probe.dim:
            raise InvalidInput(
                f"embedding model {model!r} makes {probe.dim}-dimensional vectors, but knowledge base {kb.name!r} "
                f"holds {kb.dim}-dimensional ones; use a model of dimension {kb.dim}, or create a new knowledge "
                "base for this model",
                details={"field": "embedding_model", "dim": probe.dim, "kb_dim": kb.dim},
            )
        pushed = KB_VERSIONS.push(
            s,
            kb,
            content_hash=config_hash(source.id, text_field, canonical, model),
            same=None,
            version_id=version_id,
            dataset_version_id=source.id,
            dataset_ref=source.ref,
            text_field=text_field,
            chunker=canonical,
            embedding_model=model,
            embedding_version=probe.version,
            dim=probe.dim,
            status=BUILDING,
            table_name=version_id,
            created_by=actor.label,
            created_at=utcnow(),
        )
        v = pushed.version
        details = {"kb": kb.name, "version": v.version, "dataset": source.ref, "embedding_model": model}
        record_audit(s, actor, "kb.build", "kb_version", v.id, details=details)
        return _version_info(s, kb, v)

    info = KB_VERSIONS.write(platform.db, once, conflict=f"knowledge base {kb_name!r} changed concurrently; try again")
    key_id = actor.principal.key_id if actor.principal is not None else None
    try:
        job = submit_job(platform.db, actor, "kb.build", {"version_id": info.id, "key_id": key_id}, internal=True)
    except BaseException as exc:
        mark_failed(platform, info.id, f"the build could not be queued: {exc}")
        raise
    with platform.db.session() as s:
        s.execute(update(KbVersion).where(KbVersion.id == info.id).values(job_id=job.id))
    return BuildStarted(job=job, version=info.model_copy(update={"job_id": job.id}))


def mark_failed(platform: Platform, version_id: str, error: str) -> None:
    """Mark a building version failed with `error` (a build that cannot go on)."""
    with platform.db.session() as s:
        s.execute(
            update(KbVersion)
            .where(KbVersion.id == version_id)
            .values(status=FAILED, error=error[:MAX_ERROR_CHARS], finished_at=utcnow())
        )


def _chunk_rows(
    out: pa.Table, text_field: str, dataset: str, vectors: list[Any], hashes: list[str], now: datetime
) -> list[dict[str, Any]]:
    """Index rows of a chunked batch (the `chunk` step's output) and their vectors."""
    names = out.column_names
    meta_columns = [n for n in names if n not in (text_field, *CHUNK_COLUMNS, *META_SKIP)]
    columns = {n: out.column(n).to_pylist() for n in names}
    rows = []
    for i in range(out.num_rows):
        source_row = columns["source_row"][i]
        raw_id = columns["id"][i] if "id" in columns else None
        doc_id = str(raw_id) if raw_id is not None else str(source_row)
        raw_source = columns["source"][i] if "source" in columns else None
        raw_tags = columns["tags"][i] if "tags" in columns else None
        raw_created = columns["created_at"][i] if "created_at" in columns else None
        metadata = {"row": source_row}
        for n in meta_columns:
            value = columns[n][i]
            if value is None or isinstance(value, str | int | float | bool):
                metadata[n] = value
        rows.append(
            {
                "id": f"{doc_id}#{columns['chunk_index'][i]}",
                "vector": vectors[i],
                "text": columns[text_field][i],
                "source": raw_source if isinstance(raw_source, str) and raw_source else dataset,
                "doc_id": doc_id,
                "start": columns["start"][i],
                "end": columns["end"][i],
                "tags": [str(t) for t in raw_tags] if isinstance(raw_tags, list) else None,
                "created_at": raw_created if isinstance(raw_created, datetime) else now,
                "metadata": metadata,
                "hash": hashes[i],
            }
        )
    return rows


def execute_build(platform: Platform, actor: Actor, version_id: str, progress: Progress | None = None) -> KbVersionInfo:
    """Make a `building` version (the `kb.build` job): read, chunk, embed, write, finish, then mark it ready.
    Any failure (or cancellation) drops the table written so far and marks the version failed with the error."""
    with platform.db.read_session() as s:
        v = s.get(KbVersion, version_id)
        if v is None:
            raise NotFound(f"knowledge-base version {version_id!r} not found")
        kb = s.get(KnowledgeBase, v.kb_id)
        assert kb is not None  # a foreign key
        if v.status == READY:  # a job run twice: the first made it
            return _version_info(s, kb, v)
        if v.status != BUILDING:
            raise Conflict(f"version {v.version} of knowledge base {kb.name!r} failed to build: {v.error}")
        kb_name = kb.name
        dataset_ref = f"{v.dataset_ref.partition('@')[0]}@{v.dataset_version_id}"
        text_field, chunker, table = v.text_field, dict(v.chunker), v.table_name
        probe = EmbeddingProbe(v.embedding_model, v.embedding_version or v.embedding_model, v.dim or 0)
        donors = _donor_tables(s, kb, v)
        kb_id = kb.id
    uri = kb_uri(platform)
    try:
        _check_member_of(platform, actor, version_id)
        ChunkIndex.drop(uri, table)  # a job requeued after a crash starts over
        known = _stored_vectors(uri, donors, probe.dim)
        written = _write(platform, actor, dataset_ref, text_field, chunker, probe, known, uri, table, progress)
        chunks = written.index
        with platform.db.session() as s:
            kb = s.get(KnowledgeBase, kb_id)
            assert kb is not None  # a foreign key
            if kb.dim is not None and kb.dim != chunks.dim:  # a build of another dimension was made ready first
                raise InvalidInput(
                    f"knowledge base {kb_name!r} now holds {kb.dim}-dimensional vectors; this build made "
                    f"{chunks.dim}-dimensional ones"
                )
            kb.dim = chunks.dim
            s.execute(
                update(KbVersion)
                .where(KbVersion.id == version_id)
                .values(
                    status=READY,
                    row_count=chunks.rows,
                    dim=chunks.dim,
                    doc_count=written.rows,
                    reused=written.reused,
                    finished_at=utcnow(),
                )
            )
            details = {"kb": kb_name, "chunks": chunks.rows, "reused": written.reused}
            record_audit(s, actor, "kb.version.ready", "kb_version", version_id, details=details)
    except BaseException as exc:
        try:
            ChunkIndex.drop(uri, table)
        finally:
            mark_failed(platform, version_id, str(exc) or type(exc).__name__)
        raise
    return get_version_by_id(platform, version_id)


def get_version_by_id(platform: Platform, version_id: str) -> KbVersionInfo:
    """A version by its id, unchecked (for the build job, which checked its right to build it)."""
    with platform.db.read_session() as s:
        v = s.get(KbVersion, version_id)
        kb = s.get(KnowledgeBase, v.kb_id) if v is not None else None
        if v is None or kb is None:
            raise NotFound(f"knowledge-base version {version_id!r} not found")
        return _version_info(s, kb, v)


def _donor_tables(s: Session, kb: KnowledgeBase, v: KbVersion) -> list[str]:
    """The tables of the newest ready versions (`DONOR_VERSIONS`) in the project of `kb` whose vectors came
    from the same embedding model (route and answering model) with the same dimension as `v`'s."""
    project = KnowledgeBase.project_id
    q = (
        select(KbVersion.table_name)
        .join(KnowledgeBase, KnowledgeBase.id == KbVersion.kb_id)
        .where(
            project.is_(None) if kb.project_id is None else project == kb.project_id,
            KbVersion.status == READY,
            KbVersion.embedding_model == v.embedding_model,
            KbVersion.embedding_version == v.embedding_version,
            KbVersion.dim == v.dim,
            KbVersion.id != v.id,
        )
        .order_by(KbVersion.finished_at.desc())
        .limit(DONOR_VERSIONS)
    )
    return list(s.scalars(q))


def _stored_vectors(uri: str, tables: list[str], dim: int) -> dict[str, Any]:
    """Content hash → vector, from the chunk tables of earlier builds (a table gone or unreadable is skipped:
    its chunks are embedded again)."""
    known: dict[str, Any] = {}
    for table in tables:
        try:
            index = _index(uri, table)
        except PodiumError:
            continue
        if index.dim != dim:
            continue
        hashes, matrix = index.hashed_vectors()
        for h, row in zip(hashes, matrix, strict=True):
            known.setdefault(h, row)
    return known


def _check_member_of(platform: Platform, actor: Actor, version_id: str) -> None:
    """The acting key may still build this knowledge base (its role or project may have changed since)."""
    with platform.db.read_session() as s:
        v = s.get(KbVersion, version_id)
        kb = s.get(KnowledgeBase, v.kb_id) if v is not None else None
        if kb is None or not actor.sees(kb.project_id):
            raise NotFound(f"knowledge-base version {version_id!r} not found")
        _check_member(actor, kb, "build this knowledge base")


@dataclasses.dataclass
class _Written:
    rows: int  # dataset rows read
    reused: int  # chunks not sent to the model: their vectors were stored, or their text came earlier
    index: ChunkIndex


def _write(
    platform: Platform,
    actor: Actor,
    dataset_ref: str,
    text_field: str,
    chunker: dict[str, Any],
    probe: EmbeddingProbe,
    known: dict[str, Any],
    uri: str,
    table: str,
    progress: Progress | None,
) -> _Written:
    """Chunk the dataset version, embed the chunks whose content hash is not in `known` (which learns each new
    vector, so a text repeated within the build is embedded once too) and write them all to `table`."""
    model = probe.model
    source = data.get_version(platform, actor, dataset_ref)
    config = validated(Chunk.Config, {**chunker, "field": text_field}, "chunker", prefix="chunker.")
    step = Chunk(config, StepContext(tokenizer=loader(platform, actor)), prefix="chunker")
    principal = _principal(actor)
    gateway = bridge.current(platform).gateway
    writer: ChunkWriter | None = None
    rows = reused = 0
    now = utcnow()
    with data.open_rows(platform, actor, dataset_ref) as (_, pf):
        step.output_schema(pf.schema_arrow)
        for batch in pf.iter_batches(batch_size=1000):
            table_in = pa.Table.from_batches([batch])
            out = step.apply(table_in, rows)
            rows += table_in.num_rows
            if out.num_rows:
                texts = [str(t) for t in out.column(text_field).to_pylist()]
                hashes = [chunk_hash(probe, t) for t in texts]
                missing = list({h: t for h, t in zip(hashes, texts, strict=True) if h not in known}.items())
                reused += len(hashes) - len(missing)  # stored, or repeated within this batch
                if missing:
                    made = bridge.run(
                        platform, _embed_all(gateway, principal, model, [t for _, t in missing]), EMBED_TIMEOUT
                    )
                    for (h, _), vector in zip(missing, made, strict=True):
                        known[h] = vector
                vectors = [known[h] for h in hashes]
                if writer is None:
                    writer = ChunkIndex.create(uri, table, len(vectors[0]))
                writer.add(_chunk_rows(out, text_field, source.dataset, vectors, hashes, now))
            if progress is not None:
                share = rows / max(1, source.row_count)
                progress(min(0.95, share), f"{rows:,} of {source.row_count:,} rows chunked and embedded")
    if writer is None:
        raise InvalidInput(
            f"{source.ref} has no text to index: column {text_field!r} is empty in every row",
            details={"field": "text_field"},
        )
    if progress is not None:
        progress(0.97, f"indexing {writer.rows:,} chunks")
    return _Written(rows=rows, reused=reused, index=writer.finish())


# --- searching -------------------------------------------------------------------------------------

_open: OrderedDict[tuple[str, str], ChunkIndex] = OrderedDict()
_open_lock = threading.Lock()


def _index(uri: str, table: str) -> ChunkIndex:
    """The finished index `table`, opened once and kept (a finished table never changes)."""
    key = (uri, table)
    with _open_lock:
        found = _open.get(key)
        if found is not None:
            _open.move_to_end(key)
            return found
    index = ChunkIndex.open(uri, table)
    with _open_lock:
        _open[key] = index
        while len(_open) > OPEN_INDEXES:
            _open.popitem(last=False)
    return index


@dataclasses.dataclass(frozen=True)
class SearchTarget:
    """A ready version a search reads: the knowledge base's name, its number and id, its chunk table, the
    model that embeds its queries, and the dataset version it was built from."""

    kb: str
    version: int
    version_id: str
    table: str
    model: str
    dataset_version_id: str


def search_target(platform: Platform, actor: Actor, ref: str) -> SearchTarget:
    """The ready version `ref` names for a caller who may search it (`NotFound` for another project's,
    `Conflict` while it builds or after it failed)."""
    actor.require("viewer", "search knowledge bases")
    parsed = KB_VERSIONS.parse_ref(ref)
    with platform.db.read_session() as s:
        kb = _find(s, actor, parsed.name)
        v = _resolve(s, kb, parsed.tag)
        _ready(kb, v)
        return SearchTarget(kb.name, v.version, v.id, v.table_name, v.embedding_model, v.dataset_version_id)


def query_caller(actor: Actor) -> Principal:
    """The key a query's embedding is made on. A search is a read: a viewer may search, and the one embedding
    of its query is made on its key as a member's call would be (the gateway refuses viewers' own calls, which
    choose their model; here the version chose it)."""
    principal = _principal(actor)
    return dataclasses.replace(principal, role="member") if principal.role == "viewer" else principal


def embed_queries(platform: Platform, actor: Actor, model: str, queries: list[str]) -> list[list[float]]:
    """The embeddings of search queries by a version's model, through the gateway on the caller's key."""
    gateway = bridge.current(platform).gateway
    return bridge.run(platform, _embed_all(gateway, query_caller(actor), model, queries), EMBED_TIMEOUT)


async def embed_async(gateway: Gateway, principal: Principal, model: str, texts: list[str]) -> list[list[float]]:
    """Embeddings of `texts` by `model`, called on the server's loop (the gateway's retriever)."""
    return await _embed(gateway, principal, model, texts)


def open_index(platform: Platform, table: str) -> ChunkIndex:
    """A ready version's chunk index (opened once per process and kept)."""
    return _index(kb_uri(platform), table)


def check_mode(mode: Any, k: Any) -> Mode:
    """The search mode, once the mode and k are checked (`InvalidInput` naming the field)."""
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}", details={"field": "mode"})
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an integer from 1 to {MAX_K}", details={"field": "k"})
    return "vector" if mode == "vector" else "text" if mode == "text" else "hybrid"


def check_query(query: Any, mode: Any, k: Any) -> Mode:
    """The search mode, once the query, mode and k are checked (`InvalidInput` naming the field)."""
    chosen = check_mode(mode, k)
    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY_CHARS or "\x00" in query:
        raise InvalidInput(
            f"query must be 1 to {MAX_QUERY_CHARS} characters of text without NUL", details={"field": "query"}
        )
    return chosen


def search(
    platform: Platform,
    actor: Actor,
    ref: str,
    query: str,
    *,
    mode: str = "hybrid",
    k: int = 10,
    filters: Filters | Mapping[str, Any] | None = None,
    min_similarity: float | None = None,
    rerank_model: str | None = None,
    rerank_candidates: int | None = None,
) -> SearchResult:
    """The `k` best chunks of a ready version for `query`: by meaning (`vector`: the query embedded by the
    version's own model through the gateway), by words (`text`: BM25) or both fused (`hybrid`), among the
    chunks matching `filters` (`source`, `tags_any`, `created_from`, `created_to`) and, with
    `min_similarity`, at least that cosine-similar to the query. With `rerank_model`, `rerank_candidates`
    chunks (default max(20, 2k)) are found and re-ranked by that model through the gateway (`podium.kb.rerank`;
    it calls a model the caller chose, so it needs role member)."""
    actor.require("viewer", "search knowledge bases")
    chosen = check_query(query, mode, k)
    depth = k
    if rerank_model is not None:
        actor.require("member", "re-rank searches with a model")
        candidates = max(20, 2 * k) if rerank_candidates is None else rerank_candidates
        if isinstance(candidates, bool) or not isinstance(candidates, int) or not k <= candidates <= MAX_RERANK:
            raise InvalidInput(
                f"rerank_candidates must be an integer from k ({k}) to {MAX_RERANK}",
                details={"field": "rerank_candidates"},
            )
        depth = candidates
    checked = None
    if filters is not None:
        checked = filters if isinstance(filters, Filters) else validated(Filters, filters, "filters", prefix="filters.")
    target = search_target(platform, actor, ref)
    vector = None
    if chosen != "text":
        gateway = bridge.current(platform).gateway
        vector = bridge.run(platform, _embed(gateway, query_caller(actor), target.model, [query]), QUERY_TIMEOUT)[0]
    hits = open_index(platform, target.table).search(
        query_vector=vector,
        query_text=query if chosen != "vector" else None,
        mode=chosen,
        k=depth,
        filters=checked,
        min_similarity=min_similarity,
    )
    if rerank_model is not None:
        gateway = bridge.current(platform).gateway
        try:
            hits = bridge.run(platform, rerank(gateway, _principal(actor), rerank_model, query, hits, k), EMBED_TIMEOUT)
        except GatewayError as exc:
            raise InvalidInput(exc.message, details={"field": "rerank_model"}) from None
    return SearchResult(kb=target.kb, version=target.version, version_id=target.version_id, mode=mode, hits=hits)


# --- labels ----------------------------------------------------------------------------------------


def set_label(platform: Platform, actor: Actor, name: str, label: str, version: str | int) -> KbVersionInfo:
    """Point `label` at a ready version (a number, `latest`, another label, or one of its version ids),
    recording the move; `docs@label` then searches that version."""
    actor.require("member", "move knowledge-base labels")
    KB_VERSIONS.check_label(label)

    def once(s: Session) -> KbVersionInfo:
        kb = _find(s, actor, name)
        _check_member(actor, kb, "move knowledge-base labels")
        target = _resolve(s, kb, None if str(version).strip() == "latest" else str(version).strip())
        _ready(kb, target)
        moved = KB_VERSIONS.set_label(s, kb, label, target.id, actor.label)
        details = {"label": label, "version": moved.version.version}
        record_audit(s, actor, "kb.label.set", "knowledge_base", kb.id, details=details)
        return _version_info(s, kb, moved.version)

    return KB_VERSIONS.write(platform.db, once, conflict=f"label {label!r} of {name!r} is being moved concurrently")


def remove_label(platform: Platform, actor: Actor, name: str, label: str) -> None:
    """Delete a label (recorded in its history); `docs@label` then no longer resolves."""
    actor.require("member", "move knowledge-base labels")
    KB_VERSIONS.check_label(label)
    with platform.db.session() as s:
        kb = _find(s, actor, name)
        _check_member(actor, kb, "move knowledge-base labels")
        KB_VERSIONS.remove_label(s, kb, label, actor.label)
        record_audit(s, actor, "kb.label.remove", "knowledge_base", kb.id, details={"label": label})
