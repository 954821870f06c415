"""The knowledge-base domain's `Retriever` for the gateway: a chat request's `retrieval` field searched on the
caller's key, as `POST /api/kb/{name}/search` would be, without blocking the server's loop (the database read
and the index search run in worker threads; the query's embedding is an in-process gateway call)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime

from podium.core.db import utcnow
from podium.core.errors import PodiumError, validated
from podium.core.identity import Actor, Principal
from podium.core.platform import Platform
from podium.gateway.errors import GatewayError
from podium.gateway.retrieval import RetrievalSpec, Retrieved
from podium.gateway.service import Gateway
from podium.kb import service
from podium.kb.index import Filters, Mode
from podium.kb.rerank import rerank

TARGET_TTL = 1.0  # seconds a key's resolved reference is re-used: a label move or a new version shows within it
MAX_TARGETS = 4096


@dataclasses.dataclass
class KbRetriever:
    """Finds chunks for the gateway (plugged in by the knowledge-base domain's setup). A reference resolved
    for a key is kept `TARGET_TTL` seconds, so a stream of RAG calls reads the database once a second, not
    once a call."""

    platform: Platform
    gateway: Gateway
    _targets: dict[tuple[str | None, str, str | None, str], tuple[float, service.SearchTarget]] = dataclasses.field(
        default_factory=dict
    )

    async def _target(self, principal: Principal, actor: Actor, ref: str) -> service.SearchTarget:
        key = (principal.key_id, principal.role, principal.project_id, ref)
        now = time.monotonic()
        found = self._targets.get(key)
        if found is not None and now - found[0] < TARGET_TTL:
            return found[1]
        target = await asyncio.to_thread(service.search_target, self.platform, actor, ref)
        if len(self._targets) >= MAX_TARGETS:
            self._targets.clear()
        self._targets[key] = (now, target)
        return target

    async def retrieve(self, principal: Principal, spec: RetrievalSpec, query: str) -> Retrieved:
        """The `spec.k` best chunks for `query` (re-ranked when asked); a `GatewayError` with the service's
        status says why not (404 unknown knowledge base, 409 still building, 400 a bad filter)."""
        started = utcnow()
        try:
            return await self._retrieve(principal, spec, query, started)
        except PodiumError as exc:
            error = GatewayError.from_podium(exc)
            if error.param is None:
                error.param = "retrieval"
            raise error from None

    async def _retrieve(self, principal: Principal, spec: RetrievalSpec, query: str, started: datetime) -> Retrieved:
        actor = Actor(principal)
        mode: Mode = service.check_query(query, spec.mode, spec.k)
        filters = None
        if spec.filter is not None:
            filters = validated(Filters, spec.filter, "retrieval.filter", prefix="retrieval.filter.")
        target = await self._target(principal, actor, spec.kb)
        depth = spec.rerank.candidates if spec.rerank is not None else spec.k
        vector = None
        if mode != "text":
            caller = service.query_caller(actor)
            vector = (await service.embed_async(self.gateway, caller, target.model, [query]))[0]
        index = await asyncio.to_thread(service.open_index, self.platform, target.table)
        hits = await asyncio.to_thread(
            index.search,
            query_vector=vector,
            query_text=query if mode != "vector" else None,
            mode=mode,
            k=depth,
            filters=filters,
            min_similarity=spec.min_similarity,
        )
        if spec.rerank is not None:
            hits = await rerank(self.gateway, principal, spec.rerank.model, query, hits, spec.k)
        return Retrieved(
            kb=target.kb,
            version=target.version,
            version_id=target.version_id,
            dataset_version_id=target.dataset_version_id,
            query=query,
            mode=mode,
            k=spec.k,
            filter=spec.filter,
            hits=[h.model_dump(mode="json", exclude={"tags", "created_at", "metadata"}) for h in hits],
            started_at=started,
            ended_at=utcnow(),
            rerank_model=spec.rerank.model if spec.rerank is not None else None,
        )
