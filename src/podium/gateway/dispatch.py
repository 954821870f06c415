"""One gateway call from route to answer: deployment order, retries with backoff, fallbacks, circuit
breakers, cost, and the trace record handed to the batched writer. No database access happens here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from podium.core.db import utcnow
from podium.core.identity import Principal
from podium.core.ids import new_id
from podium.gateway import metrics
from podium.gateway.cache import ResponseCache
from podium.gateway.errors import GatewayError
from podium.gateway.governor import Governor, Ticket
from podium.gateway.guarding import CallGuard, GuardHook, guard_spans
from podium.gateway.guardrails import request_text, response_text
from podium.gateway.prompting import PromptUse
from podium.gateway.resilience import backoff_delay
from podium.gateway.retrieval import Retrieved
from podium.gateway.table import Deployment, Route, RouteTable
from podium.models.prices import FREE, Price
from podium.models.providers.base import CONTEXT_WINDOW, RETRYABLE, Provider, Timeouts, UpstreamError
from podium.tracing.markers import as_plain
from podium.tracing.writer import Record, TraceWriter

MAX_PAYLOAD = 256 * 1024  # characters of request/response kept inline in a trace
FALLBACK_KINDS = RETRYABLE | {CONTEXT_WINDOW, "unavailable"}
BREAKER_KINDS = RETRYABLE  # a local model that is loading or restarting says so itself; no need to cool it


@dataclass(frozen=True, slots=True)
class TraceParent:
    """The span a call is made under, when it is a step of a larger unit of work (a chain run, or a client's
    span named by a W3C `traceparent` header: `remote`): the call's span becomes that span's child in that
    trace, and its trace row is merged into the trace as a child part (its tokens and cost added; the trace
    keeps the name, input, output and latency its owner gives it, see `tracing.writer.CHILD_MERGE_RULES`).
    A remote parent's call also offers its own name, input and output, kept while the owner sends none (a
    client that propagates context but exports its spans elsewhere). The trace is the caller's project's:
    the writer never merges a part into another project's trace (`tracing.parts`)."""

    trace_id: str
    span_id: str
    remote: bool = False


_HEX = frozenset("0123456789abcdef")


def traceparent(value: str | None) -> TraceParent | None:
    """The parent a W3C `traceparent` header names (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`),
    or None when there is none or it is malformed: the Trace Context spec has a receiver ignore a header it
    cannot parse and start a trace of its own, so a bad header never fails a call. A later version's header
    is read by its first four fields, as the spec asks. The call continues the trace whether or not the
    caller samples it: the gateway records every call."""
    if not value:
        return None
    text = value.strip().lower()
    if len(text) < 55 or (len(text) > 55 and text[55] != "-"):
        return None
    version, trace_id, span_id, flags = text[:2], text[3:35], text[36:52], text[53:55]
    if text[2] != "-" or text[35] != "-" or text[52] != "-" or version == "ff" or (version == "00" and len(text) != 55):
        return None
    if not _HEX.issuperset(version + trace_id + span_id + flags):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceParent(trace_id, span_id, remote=True)


@dataclass(slots=True)
class Call:
    """What the gateway knows about one request while it runs; becomes its trace."""

    kind: str  # chat, completion, embedding
    body: dict[str, Any]
    principal: Principal
    model: str
    stream: bool = False
    request_id: str | None = None
    trace_id: str = field(default_factory=lambda: new_id("trc"))
    started_at: datetime = field(default_factory=utcnow)
    t0: float = field(default_factory=time.perf_counter)
    route: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    attempts: int = 0
    cache: str = "none"
    cache_similarity: float | None = None  # cosine of a semantic cache hit
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False  # the upstream's usage never came: `estimate_usage` counted it
    cost_micros: int = 0
    status: int = 200
    error: str | None = None
    output: Any = None
    price: Price = FREE
    body_bytes: int = 0  # size of the request body: an upper bound of its prompt tokens
    ticket: Ticket | None = None  # what the governor reserved for this call
    session_id: str | None = None
    prompt: PromptUse | None = None  # the prompt version the request referenced (or an experiment chose)
    body_raw: bytes | None = None  # `body` as the client sent it (absent when a prompt reference changed it)
    output_raw: bytes | None = None  # `output` serialised, when the answer was
    origin: str = "gateway"  # the trace's source: "eval" for calls evaluations make (judges, eval targets)
    retrieval: Retrieved | None = None  # the knowledge-base chunks put into the prompt (a `retrieval` field)
    parent: TraceParent | None = None  # the span this call is a step of (its trace is then the parent's)
    guard: CallGuard | None = None  # the guardrail policy the call falls under (its decisions go on the trace)

    def __post_init__(self) -> None:
        if self.parent is not None:
            self.trace_id = self.parent.trace_id

    @property
    def user(self) -> str | None:
        """The end user the client named (`user`), for stickiness and traces."""
        u = self.body.get("user")
        return u if isinstance(u, str) and u else None

    def headers(self) -> dict[str, str]:
        """Response headers saying who answered and how."""
        h = {"x-podium-trace-id": self.trace_id, "x-podium-attempts": str(self.attempts), "x-podium-cache": self.cache}
        if self.route:
            h["x-podium-route"] = self.route
        if self.deployment:
            h["x-podium-deployment"] = self.deployment
        if self.prompt is not None:
            h["x-podium-prompt-version"] = self.prompt.ref
        if self.retrieval is not None:
            h.update(self.retrieval.headers())
        if self.guard is not None:
            h["x-podium-guard-policy"] = self.guard.policy
        return h

    def set_usage(self, usage: Any) -> None:
        """Take token counts from an OpenAI `usage` object and price them."""
        if not isinstance(usage, dict):
            return
        self.prompt_tokens = _tokens(usage.get("prompt_tokens"))
        self.completion_tokens = _tokens(usage.get("completion_tokens"))
        self.cost_micros = self.price.cost_micros(self.prompt_tokens, self.completion_tokens)

    def estimate_usage(self, completion_text: str) -> None:
        """Usage when the upstream's never came (the client left mid-stream): about four characters a token
        for the request and what was streamed, so a call that ran is never free."""
        if self.prompt_tokens or self.completion_tokens:
            return
        request = len(self.body_raw) if self.body_raw is not None else len(orjson.dumps(self.body))
        self.set_usage({"prompt_tokens": -(-request // 4), "completion_tokens": -(-len(completion_text) // 4)})
        self.usage_estimated = True


MAX_TOKENS_REPORTED = 100_000_000  # an upstream's usage beyond this (or below 0) is not believed


def _tokens(value: Any) -> int:
    """A token count from an upstream's usage: an integer in [0, MAX_TOKENS_REPORTED] (a negative count would
    credit the budgets, a huge one overflow the ledger)."""
    try:
        n = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(n, 0), MAX_TOKENS_REPORTED)


_METHODS = {"chat": "chat", "completion": "complete", "embedding": "embed"}  # call kind → provider method


@dataclass
class Upstream:
    """A deployment made concrete for one attempt."""

    deployment: Deployment
    provider: Provider
    timeouts: Timeouts
    price: Price
    upstream_model: str


class Dispatcher:
    """Runs calls against the route table and records them."""

    def __init__(
        self,
        table: RouteTable,
        writer: TraceWriter,
        governor: Governor,
        default_max_tokens: int = 4096,
        redis: Any = None,
    ):
        self.table = table
        self.writer = writer
        self.governor = governor
        self.default_max_tokens = default_max_tokens
        self.cache = ResponseCache(self.embed, redis)
        self._pending: set[asyncio.Future[None]] = set()  # records waiting for room in the writer's queue
        self._prices: dict[str, tuple[Route, Price]] = {}  # max_price by route, for `_prices_of`
        self._prices_of: dict[str, Route] | None = None

    # --- resolving -----------------------------------------------------------------------------

    async def route(self, call: Call, tasks: tuple[str, ...]) -> Route:
        """The route for the call's model (one the caller may use), checked against the endpoint's task."""
        route = await self.resolve(call.model, call.principal, tasks)
        call.route = route.name
        return route

    async def resolve(self, model: str, principal: Principal, tasks: tuple[str, ...]) -> Route:
        """The route for `model` as `principal` may use it, checked against the tasks asked for; `GatewayError`
        (404 for a model the caller cannot use, 400 for one of another task)."""
        route = await self.table.get_for(model, principal)
        if route.target is not None and route.target.task not in tasks:
            m = route.target.resolved.model
            raise GatewayError(
                400,
                f"model {m.name!r} is {_a(m.task)} model; this endpoint needs {_a(' or '.join(tasks))} model",
                code="wrong_model_task",
                param="model",
            )
        return route

    async def _upstream(self, dep: Deployment, route: Route) -> Upstream:
        if dep.provider is not None:
            return Upstream(dep, dep.provider, dep.timeouts, dep.price, dep.spec.model)
        # a registered model: its own (single-deployment) route says how to reach it
        model_route = route if route.target is not None else self.table.get(dep.spec.model)
        target = model_route.target
        assert target is not None
        problem = await self.table.directory.wait_ready(target)  # a model still loading is waited for
        if problem is not None:
            retry = problem.headers.get("Retry-After")
            raise UpstreamError(
                "unavailable",
                problem.message,
                status=problem.status,
                retry_after=float(retry) if retry else None,
                body={"error": {"code": problem.code}},
            )
        inner = model_route.deployments[0]
        price = dep.price if dep.spec.price is not None else inner.price
        return Upstream(dep, target.provider, dep.timeouts, price, target.resolved.ref)

    def _price(self, dep: Deployment) -> Price:
        if dep.provider is not None or dep.spec.price is not None:
            return dep.price
        try:
            return self.table.get(dep.spec.model).deployments[0].price
        except (GatewayError, IndexError):
            return dep.price

    def max_price(self, route: Route) -> Price:
        """The dearest input and output prices among the deployments a call on `route` may reach (worked out
        once per route and table snapshot)."""
        if self._prices_of is not self.table.routes:
            self._prices, self._prices_of = {}, self.table.routes
        price = self._prices.get(route.name)
        if price is None or price[0] is not route:
            price = self._prices[route.name] = (route, self._max_price(route))
        return price[1]

    def _max_price(self, route: Route) -> Price:
        deps = list(route.deployments)
        for name in route.spec.fallbacks:
            try:
                deps += self.table.get(name).deployments
            except GatewayError:
                continue
        prices = [self._price(d) for d in deps] or [FREE]
        return Price(max(p.input for p in prices), max(p.output for p in prices))

    async def admit(self, call: Call, route: Route) -> None:
        """Check the caller's limits and reserve the call's largest possible use (403/429 if over)."""

        def estimate() -> tuple[int, int]:
            body = call.body
            if call.kind == "embedding":
                completion = 0
            else:
                limit = body.get("max_completion_tokens")
                if limit is None:
                    limit = body.get("max_tokens")
                # 0 is a real limit: a completion that only scores its prompt (echo) generates nothing
                if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
                    completion = limit
                else:
                    completion = self.default_max_tokens
                n = body.get("n")
                completion *= n if isinstance(n, int) and n > 0 else 1
            return call.body_bytes + completion, self.max_price(route).cost_micros(call.body_bytes, completion)

        call.ticket = await self.governor.admit(call.principal, call.model, estimate)

    async def embed(self, model: str, text: str) -> list[float]:
        """Embed one text with a model or route (for the semantic cache), on its first ready deployment."""
        route = self.table.get(model)
        order = route.order(None)
        if not order:
            raise GatewayError(503, f"every deployment of {model!r} is cooling down", code="deployments_unavailable")
        up = await self._upstream(order[0], route)
        result = await up.provider.embed({"input": [text]}, up.timeouts)
        return list(result["data"][0]["embedding"])

    # --- attempts ------------------------------------------------------------------------------

    @staticmethod
    async def _call(dep: Deployment, up: Upstream, op: Callable[[Upstream], Awaitable[Any]]) -> Any:
        """One attempt on one deployment, keeping its in-flight count, breaker and latency up to date."""
        health = dep.health
        health.breaker.acquire()
        health.inflight += 1
        started = time.perf_counter()
        try:
            result = await op(up)
        except UpstreamError as exc:
            if exc.kind in BREAKER_KINDS:
                health.breaker.failure()
            else:
                health.breaker.release()
            raise
        except BaseException:
            health.breaker.release()
            raise
        finally:
            health.inflight -= 1
        health.breaker.success()
        health.observe((time.perf_counter() - started) * 1000)
        return result

    async def prepare(
        self, call: Call, tasks: tuple[str, ...], body_bytes: int, guard: GuardHook | None = None
    ) -> Route:
        """Route a call, run the route's request guardrails and the input stage of the guardrail policy it
        falls under (which may redact the request: the upstream, the cache and the trace see the redacted one),
        and admit it under the limits; raises `GatewayError` or `GuardrailViolation`."""
        route = await self.route(call, tasks)
        if route.guards:
            text = request_text(call.body)
            for hook in route.guards:
                await hook.check_request(call.body, text)
        if guard is not None:
            call.guard = guard.open(call.principal, route.name, call.kind, call.origin)
            if call.guard is not None:
                body = await call.guard.check_input(call.kind, call.body)
                if body is not call.body:
                    call.body, call.body_raw = body, None
                    body_bytes = len(orjson.dumps(body))
        call.body_bytes = body_bytes
        await self.admit(call, route)
        return route

    async def complete(
        self, call: Call, route: Route, wait: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None
    ) -> dict[str, Any]:
        """A non-streamed answer (retries and fallbacks), with usage, output and the response guardrails
        applied to the call; `wait` wraps the wait (the HTTP route stops it when the client leaves)."""
        method = _METHODS[call.kind]

        async def op(up: Upstream) -> dict[str, Any]:
            result: dict[str, Any] = await getattr(up.provider, method)(call.body, up.timeouts)
            return result

        running = self.attempt(call, route, op)
        result: dict[str, Any] = await (wait(running) if wait is not None else running)
        call.set_usage(result.get("usage"))
        call.output = result
        if route.guards and call.kind != "embedding":
            answer = response_text(result)
            for guard in route.guards:
                await guard.check_response(answer)
        call.ttft_ms = (time.perf_counter() - call.t0) * 1000
        return result

    async def attempt(self, call: Call, route: Route, op: Callable[[Upstream], Awaitable[Any]]) -> Any:
        """Run `op` on the route's deployments in strategy order, retrying and falling back as configured."""
        last: UpstreamError | None = None
        context_floor: int | None = None
        chain: list[str | Route] = [route, *route.spec.fallbacks]
        cooling = []
        for item in chain:
            if isinstance(item, Route):
                current = item
            else:
                try:
                    current = self.table.get(item)
                except GatewayError:
                    continue  # a fallback that no longer exists is skipped, not fatal
            order = current.order(call.user)
            if context_floor is not None:
                order = [d for d in order if d.context_window is None or d.context_window > context_floor]
            if not order:
                cooling.append(current.name)
                continue
            retries = current.spec.retries
            tries = 0
            index = 0
            while tries <= retries:
                dep = order[index % len(order)]
                try:
                    up = await self._upstream(dep, current)
                except UpstreamError as exc:
                    last = exc
                    break
                call.attempts += 1
                call.deployment = dep.name
                call.upstream_model = up.upstream_model
                call.price = up.price
                try:
                    result = await self._call(dep, up, op)
                except UpstreamError as exc:
                    last = exc
                    if exc.kind not in FALLBACK_KINDS:
                        raise
                    if exc.kind == CONTEXT_WINDOW:
                        context_floor = max(context_floor or 0, dep.context_window or 0)
                        break
                    tries += 1
                    if tries > retries:
                        break
                    index += 1
                    if index < len(order):
                        continue  # another deployment of the route: no need to wait
                    delay = backoff_delay(tries - 1, current.spec.backoff, exc.retry_after, current.spec.max_retry_wait)
                    if delay is None:
                        break  # the upstream asks for a longer pause than this route waits
                    await asyncio.sleep(delay)
                    continue
                call.route = current.name
                return result
        if last is not None:
            raise last
        raise GatewayError(
            503,
            f"every deployment of {', '.join(cooling)} is cooling down after repeated failures; retry shortly",
            code="deployments_unavailable",
            headers={"Retry-After": str(int(route.spec.circuit.cooldown))},
        )

    # --- recording -----------------------------------------------------------------------------

    def record(self, call: Call) -> Record:
        """The trace and span rows of a finished call."""
        ended = utcnow()
        latency = (time.perf_counter() - call.t0) * 1000
        metrics.observe(call, latency / 1000)
        status = "ok" if call.error is None and call.status < 400 else "error"
        inp = as_plain(_clip((call.body_raw or orjson.dumps(call.body)).decode()))
        out = None if call.output is None else as_plain(_clip((call.output_raw or orjson.dumps(call.output)).decode()))
        p = call.principal
        meta: dict[str, Any] = {"request_id": call.request_id, "podium_user": p.user_name, "stream": call.stream}
        if call.prompt is not None:
            meta.update(call.prompt.meta())
        parent_span = call.parent.span_id if call.parent is not None else None
        # a chain's step leaves the trace's name, input and output to the chain; a client's span (remote)
        # may never send its own, so the call offers them, kept only while the trace has none
        owned = call.parent is not None and not call.parent.remote
        spans: list[dict[str, Any]] = []
        if call.retrieval is not None:
            meta["kb"] = call.retrieval.ref
            spans.append(_retriever_span(call.trace_id, call.retrieval, parent_span))
        tags: list[str] = []
        if call.guard is not None:
            meta["guard"] = call.guard.meta()
            spans.extend(guard_spans(call.guard, call.trace_id, parent_span))
            tags = call.guard.tags()
        trace: dict[str, Any] = {
            "id": call.trace_id,
            "project_id": p.project_id,
            "name": "" if owned else f"{call.kind} {call.model}",  # a part keeps its owner's name
            "session_id": call.session_id,
            "user_id": call.user,
            "key_id": p.key_id,
            "source": call.origin,
            "status": status,
            "start_time": call.started_at,
            "end_time": ended,
            "latency_ms": latency,
            "ttft_ms": call.ttft_ms,
            "model": call.model,
            "route": call.route,
            "deployment": call.deployment,
            "cache_status": call.cache,
            "attempts": call.attempts,
            "span_count": 1 + len(spans),
            "http_status": call.status,
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "cost_micros": call.cost_micros,
            "error": call.error,
            "tags": tags,
            "meta": meta,
            "input": None if owned else inp,  # a part leaves the trace's input and output to its owner
            "output": None if owned else out,
        }
        span: dict[str, Any] = {
            "id": new_id("spn"),
            "trace_id": call.trace_id,
            "parent_id": parent_span,
            "kind": "embedding" if call.kind == "embedding" else "llm",
            "name": call.deployment or call.model,
            "status": status,
            "start_time": call.started_at,
            "end_time": ended,
            "ttft_ms": call.ttft_ms,
            "model": call.upstream_model or call.model,
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "cost_micros": call.cost_micros,
            "error": call.error,
            "prompt_version_id": call.prompt.version_id if call.prompt is not None else None,
            "model_version_id": None,
            "dataset_version_id": None,
            "attributes": {
                "route": call.route,
                "attempts": call.attempts,
                "cache": call.cache,
                "cache_similarity": call.cache_similarity,
                **({"usage_estimated": True} if call.usage_estimated else {}),
            },
            "input": inp,
            "output": out,
        }
        return Record(
            trace=trace,
            spans=[span, *spans],
            counters=Governor.ledger(p, call.cost_micros, call.started_at),
            merge=parent_span is not None,
            child=parent_span is not None,
        )

    def _settle(self, call: Call) -> None:
        tokens = call.prompt_tokens + call.completion_tokens
        self.governor.settle(call.ticket, call.principal, call.cost_micros, tokens, call.started_at)

    async def finish(self, call: Call) -> None:
        """Settle the call's reservation and hand its record to the writer (waits only if its queue is full)."""
        self._settle(call)
        record = self.record(call)
        if not self.writer.put_nowait(record):  # the common case needs no coroutine
            await self.writer.submit(record)

    def finish_soon(self, call: Call) -> None:
        """Settle and hand the record over without awaiting (for the end of a stream, which may be being
        cancelled): queued now if there is room, else by a background task that waits for room."""
        self._settle(call)
        record = self.record(call)
        if not self.writer.put_nowait(record):
            task = asyncio.ensure_future(self.writer.submit(record))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)


def _retriever_span(trace_id: str, r: Retrieved, parent_id: str | None = None) -> dict[str, Any]:
    """The span of a call's retrieval: the query and the hits with their scores."""
    query = {"query": r.query, "kb": r.ref, "k": r.k, "mode": r.mode, "filters": r.filter}
    attributes: dict[str, Any] = {
        "kb": r.kb,
        "version": r.version,
        "version_id": r.version_id,
        "mode": r.mode,
        "k": r.k,
        "hits": len(r.hits),
        **r.meta,
    }
    if r.rerank_model is not None:
        attributes["rerank_model"] = r.rerank_model
    return {
        "id": new_id("spn"),
        "trace_id": trace_id,
        "parent_id": parent_id,
        "kind": "retriever",
        "name": f"retrieve {r.ref}",
        "status": "ok",
        "start_time": r.started_at,
        "end_time": r.ended_at,
        "ttft_ms": None,
        "model": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_micros": 0,
        "error": None,
        "prompt_version_id": None,
        "model_version_id": None,
        "dataset_version_id": r.dataset_version_id,
        "attributes": attributes,
        "input": as_plain(_clip(orjson.dumps(query).decode())),
        "output": as_plain(_clip(orjson.dumps({"hits": r.hits}).decode())),
    }


def _clip(text: str) -> str:
    if len(text) <= MAX_PAYLOAD:
        return text
    return text[:MAX_PAYLOAD] + f"…[truncated {len(text) - MAX_PAYLOAD} characters]"


def _a(word: str) -> str:
    """`word` with its indefinite article: "a chat", "an embedding"."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


async def first_then_rest(chunks: AsyncIterator[dict[str, Any]]) -> tuple[dict[str, Any] | None, AsyncIterator[Any]]:
    """Pull the first chunk (so failures before it can be retried), and hand back the rest."""
    iterator = chunks.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return None, iterator
    return first, iterator
