"""Model calls made by evaluations, through the gateway as the run's caller, and remembered in the eval cache.

A call's cache key is the sha256 of the project, the kind of call and its whole body (model, parameters,
messages): an unchanged suite re-runs without a single model call, and a changed prompt, parameter or model
misses. A cached answer costs the run nothing; it keeps the trace, latency and usage of the call that made it.
Concurrency is bounded by one semaphore over every call of a run (targets and judges alike). New entries are
collected here and written in batches by the runner, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from podium.core.db import Database
from podium.core.identity import Principal
from podium.evals import cache
from podium.evals.evaluators.base import ModelError, Reply
from podium.gateway.guardrails import response_text
from podium.gateway.prompting import PromptUse
from podium.gateway.service import Gateway, Incoming

ORIGIN = "eval"  # the source of the traces of these calls: evaluations' calls are told apart from traffic


def call_key(project_id: str | None, kind: str, body: dict[str, Any]) -> str:
    """The cache key of a call: everything that decides its answer."""
    blob = orjson.dumps({"p": project_id, "k": kind, "b": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def _top_logprobs(choice: dict[str, Any]) -> tuple[dict[str, float], ...]:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return ()
    out = []
    for entry in lp.get("content") or []:
        tops = entry.get("top_logprobs") if isinstance(entry, dict) else None
        if isinstance(tops, list):
            out.append({str(t.get("token")): float(t.get("logprob") or "-inf") for t in tops if isinstance(t, dict)})
    return tuple(out)


def _prompt_logprobs(choice: dict[str, Any]) -> tuple[float | None, ...]:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("token_logprobs"), list):
        return ()
    return tuple(None if v is None else float(v) for v in lp["token_logprobs"])


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or "the call failed")
    return "the call failed"


class GatewayModels:
    """`Models` for one run: calls through the in-process gateway as `principal`, cached."""

    def __init__(
        self,
        gateway: Gateway,
        principal: Principal,
        lookup: Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]],
        store: Callable[[dict[str, tuple[str, dict[str, Any]]]], Awaitable[None]],
        *,
        concurrency: int = 8,
        judge_model: str | None = None,
        embedding_model: str | None = None,
        use_cache: bool = True,
    ):
        self.gateway = gateway
        self.principal = principal
        self.judge_model = judge_model
        self.embedding_model = embedding_model
        self.use_cache = use_cache
        self._lookup = lookup
        self.lookup_many = lookup  # many keys in one query (the runner prefetches a chunk's)
        self._store = store
        self._memo_locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self.known: dict[str, dict[str, Any]] = {}  # entries prefetched or made in this run
        self.missing: set[str] = set()  # keys prefetched and not found
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any] | None]]] = {}
        self._readers: set[asyncio.Task[None]] = set()  # keeps the batched reads alive until they finish
        self.fresh: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (kind, value): to be written
        self.calls = 0
        self.cached = 0
        self.cost_micros = 0

    @classmethod
    def over(cls, gateway: Gateway, principal: Principal, db: Database, **options: Any) -> GatewayModels:
        """Models whose cache is the eval cache in `db` (read and written off the event loop)."""

        async def lookup(keys: list[str]) -> dict[str, dict[str, Any]]:
            return await asyncio.to_thread(cache.read, db, keys)

        async def store(entries: dict[str, tuple[str, dict[str, Any]]]) -> None:
            await asyncio.to_thread(cache.write_now, db, entries)

        return cls(gateway, principal, lookup, store, **options)

    async def _cached(self, key: str) -> dict[str, Any] | None:
        """A cached entry: from this run's memory, else from the database, asked for together with the keys
        other concurrent calls want (one query per loop tick, not one per call)."""
        if not self.use_cache:
            return None
        if key in self.known:
            return self.known[key]
        if key in self.missing:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(waiter)
        if len(self._waiting) == 1:
            self._readers.add(task := loop.create_task(self._read_waiting()))
            task.add_done_callback(self._readers.discard)
        return await waiter

    async def _read_waiting(self) -> None:
        await asyncio.sleep(0)  # let the calls started in this tick add their keys
        waiting, self._waiting = self._waiting, {}
        try:
            found = await self._lookup(list(waiting))
        except Exception as exc:
            for waiters in waiting.values():
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
            return
        for key, waiters in waiting.items():
            hit = found.get(key)
            if hit is not None:
                self.known[key] = hit
            for w in waiters:
                if not w.done():
                    w.set_result(hit)

    async def prefetch(self, keys: list[str]) -> None:
        """Read many keys in one query ahead of their calls; the misses are remembered as misses."""
        wanted = [k for k in keys if k not in self.known and k not in self.missing]
        if not self.use_cache or not wanted:
            return
        found = await self._lookup(wanted)
        self.known.update(found)
        self.missing.update(k for k in wanted if k not in found)

    def _remember(self, key: str, kind: str, value: dict[str, Any]) -> None:
        self.known[key] = value
        self.missing.discard(key)
        self.fresh[key] = (kind, value)

    async def request(self, kind: str, body: dict[str, Any], *, prompt: PromptUse | None = None) -> Reply:
        """One call (`chat`, `completion` or `embedding`), from the cache when it was made before."""
        key = call_key(self.principal.project_id, kind, body)
        hit = await self._cached(key)
        if hit is not None:
            self.cached += 1
            return _reply(hit, cached=True)
        async with self._slots:
            t0 = time.perf_counter()
            raw = orjson.dumps(body)
            answer = await self.gateway.handle(
                self.principal,
                Incoming(kind=kind, body=body, body_bytes=len(raw), raw=raw),
                use_cache=False,
                prompt=prompt,
                origin=ORIGIN,
            )
            latency = (time.perf_counter() - t0) * 1000
        self.calls += 1
        call = answer.call
        if answer.status >= 400 or not isinstance(answer.body, dict):
            if call is not None:
                self.cost_micros += call.cost_micros
            message = (call.error if call is not None and call.error else None) or _message(answer.body)
            raise ModelError(message, call.trace_id if call is not None else None)
        result = answer.body
        usage: dict[str, Any] = result["usage"] if call is None and isinstance(result.get("usage"), dict) else {}
        choice = (result.get("choices") or [{}])[0] if kind != "embedding" else {}
        value: dict[str, Any] = {
            "text": response_text(result) if kind != "embedding" else "",
            "top_logprobs": list(_top_logprobs(choice)),
            "prompt_logprobs": list(_prompt_logprobs(choice)),
            "embeddings": [d.get("embedding") for d in result.get("data") or []] if kind == "embedding" else None,
            # a chain served as a model answers without a gateway call of its own: its run's totals and trace
            "cost_micros": call.cost_micros if call is not None else int(answer.extra.get("cost_micros") or 0),
            "prompt_tokens": call.prompt_tokens if call is not None else int(usage.get("prompt_tokens") or 0),
            "completion_tokens": call.completion_tokens
            if call is not None
            else int(usage.get("completion_tokens") or 0),
            "trace_id": call.trace_id if call is not None else answer.headers.get("x-podium-trace-id"),
            "latency_ms": round(latency, 3),
        }
        citations = result.get("citations")
        if isinstance(citations, list):
            value["context"] = [str(c.get("text") or "") for c in citations if isinstance(c, dict)]
        self.cost_micros += value["cost_micros"]
        if self.use_cache:
            self._remember(key, "call", value)
        return _reply(value, cached=False)

    # --- the Models protocol ------------------------------------------------------------------------

    async def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Reply:
        """A chat completion at temperature 0 unless given."""
        body = {"temperature": 0, **params, "model": model, "messages": messages}
        return await self.request("chat", body)

    async def complete(self, model: str, prompt: str, **params: Any) -> Reply:
        """A text completion."""
        body = {"temperature": 0, **params, "model": model, "prompt": prompt}
        return await self.request("completion", body)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Embedding vectors, one call for all `texts`."""
        key = call_key(self.principal.project_id, "embedding", {"model": model, "input": texts})
        hit = await self._cached(key)
        if hit is None:
            await self.request("embedding", {"model": model, "input": texts})
            hit = self.known.get(key)
        vectors = (hit or {}).get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise ModelError(f"{model} did not return one embedding per text")
        return [list(map(float, v)) for v in vectors]

    async def remember(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """A value made once and kept (G-Eval's steps), shared by every run of the project: concurrent rows
        wait for the first to make it, and it is written at once."""
        full = hashlib.sha256(orjson.dumps({"p": self.principal.project_id, "memo": key})).hexdigest()
        async with self._memo_locks.setdefault(full, asyncio.Lock()):
            hit = self.known.get(full)
            if hit is None:
                hit = (await self._lookup([full])).get(full)
            if hit is None:
                hit = {"value": await make()}
                await self._store({full: ("memo", hit)})
            self.known[full] = hit
        return hit["value"]


def _reply(value: dict[str, Any], *, cached: bool) -> Reply:
    return Reply(
        text=str(value.get("text") or ""),
        top_logprobs=tuple(value.get("top_logprobs") or ()),
        prompt_logprobs=tuple(value.get("prompt_logprobs") or ()),
        cost_micros=0 if cached else int(value.get("cost_micros") or 0),
        prompt_tokens=int(value.get("prompt_tokens") or 0),
        completion_tokens=int(value.get("completion_tokens") or 0),
        cached=cached,
        trace_id=value.get("trace_id"),
        latency_ms=value.get("latency_ms"),
        call_cost_micros=int(value.get("cost_micros") or 0),
        context=tuple(value.get("context") or ()),
    )
