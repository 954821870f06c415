"""The gateway's request service: one `Gateway` object owns a call end to end.

A call is authenticated, its prompt reference rendered, its fields checked, then it is routed, checked by
the route's request guardrails and admitted under the caller's limits; it is answered from the cache or
by an upstream (retries, fallbacks, breakers), streamed or not, checked by the response guardrails; its
reservation is settled and its record handed to the trace writer. `/v1` only parses HTTP and writes the
`Answer` back; the prompt playground runs the same calls through the same object (without the cache).

Nothing here touches the database: keys, routes, limits and prompts come from in-memory snapshots, and a
key that misses the key cache is looked up in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from podium.core.errors import PodiumError
from podium.core.identity import Authenticator, Principal
from podium.gateway.cache import Lookup, as_chunks
from podium.gateway.chaining import PREFIX as CHAIN_PREFIX
from podium.gateway.chaining import ChainServer, is_chain
from podium.gateway.chaining import chunks as chain_chunks
from podium.gateway.chaining import completion as chain_completion
from podium.gateway.dispatch import Call, Dispatcher, TraceParent, Upstream, first_then_rest
from podium.gateway.errors import GatewayError, as_gateway_error
from podium.gateway.guarding import GUARD_ORIGIN, GuardHook, StreamGuard
from podium.gateway.guardrails import Guardrail, GuardrailViolation
from podium.gateway.prompting import PromptResolver, PromptUse
from podium.gateway.retrieval import (
    Retrieved,
    Retriever,
    parse_spec,
    query_of,
    render_context,
    with_context_message,
    with_context_variable,
)
from podium.gateway.table import Route
from podium.models.providers.base import UpstreamError

TASKS = {"chat": ("chat",), "completion": ("chat", "completion"), "embedding": ("embedding",)}
MAX_NAME = 200  # the width of the traces table's `model` and `user_id`: longer ones would be refused there
KEEPALIVE = None  # an item of `Answer.stream` that means "still waiting": a comment line on the wire
Gone = Callable[[], Awaitable[None]]  # completes when the client has gone away


@dataclass(slots=True)
class Incoming:
    """A parsed `/v1` request: what the caller sent, and how it came (read, never changed)."""

    kind: str  # chat, completion or embedding
    body: dict[str, Any]
    body_bytes: int  # size on the wire: an upper bound of the prompt's tokens
    request_id: str | None = None
    session_id: str | None = None
    cache_control: str | None = None
    raw: bytes | None = None  # the body as sent, when there is one: recorded as is, not serialised again


@dataclass
class Answer:
    """What to send back: a JSON body with its status, or a stream of chunk objects (`KEEPALIVE` for a
    keep-alive comment while waiting). `call` is the call as recorded (tokens, cost, trace id, route)."""

    status: int
    headers: dict[str, str]
    call: Call | None
    body: Any = None
    stream: AsyncIterator[dict[str, Any] | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None  # `body` serialised (once, for the trace and the response alike)


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _check_texts(value: Any, field: str) -> None:
    """`prompt` and `input` as OpenAI takes them: a string, or a non-empty array of strings, of token ids, or of
    token-id arrays."""
    if isinstance(value, str):
        return
    many = isinstance(value, list) and bool(value)
    nested = many and all(isinstance(v, list) and v and _is_tokens(v) for v in value)
    if many and (all(isinstance(v, str) for v in value) or _is_tokens(value) or nested):
        return
    raise GatewayError(
        400,
        f"'{field}' must be a string, or a non-empty array of strings, of token ids or of token-id arrays",
        code="invalid_type",
        param=field,
    )


def check_fields(kind: str, body: dict[str, Any]) -> str:
    """The checks every upstream would make anyway, done here so bad input never costs an upstream call;
    returns the requested model name."""
    if kind == "chat":
        messages = body.get("messages")
        if messages is None:
            raise GatewayError(400, "'messages' is required", code="missing_field", param="messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(400, "'messages' must be a non-empty array", code="invalid_type", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise GatewayError(
                    400, f"messages[{i}] must be an object with a 'role'", code="invalid_type", param=f"messages[{i}]"
                )
    elif kind == "completion":
        if "prompt" not in body:
            raise GatewayError(400, "'prompt' is required", code="missing_field", param="prompt")
        _check_texts(body["prompt"], "prompt")
    elif "input" not in body:
        raise GatewayError(400, "'input' is required", code="missing_field", param="input")
    else:
        _check_texts(body["input"], "input")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise GatewayError(400, "'stream' must be a boolean", code="invalid_type", param="stream")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise GatewayError(400, "'user' must be a string", code="invalid_type", param="user")
    if user is not None and (len(user) > MAX_NAME or "\x00" in user):
        raise GatewayError(
            400, f"'user' must be at most {MAX_NAME} characters, without NUL", code="invalid_value", param="user"
        )
    model = body.get("model")
    if model is None:
        raise GatewayError(400, "'model' is required", code="missing_field", param="model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "'model' must be a non-empty string", code="invalid_type", param="model")
    if len(model) > MAX_NAME or "\x00" in model:
        raise GatewayError(
            400, f"'model' must be at most {MAX_NAME} characters, without NUL", code="invalid_value", param="model"
        )
    return model.strip()


class Gateway:
    """The request service: authenticate, then `handle` a call from its body to its `Answer`."""

    def __init__(self, dispatcher: Dispatcher, keys: Authenticator, keepalive: float = 15.0):
        self.dispatcher = dispatcher
        self.keys = keys
        self.keepalive = keepalive
        self.prompts: PromptResolver | None = None  # the prompts domain plugs its resolver in at setup
        self.retriever: Retriever | None = None  # the knowledge-base domain plugs its retriever in at setup
        self.chains: ChainServer | None = None  # the chains domain plugs in what runs `chain:` models
        self.guard: GuardHook | None = None  # the guard domain plugs in its policies at setup

    async def check_model(self, principal: Principal, kind: str, model: str) -> str:
        """The route a call of `kind` to `model` would take for `principal` (its name), without making the call:
        for services that check a model before queueing work that calls it. `GatewayError` as `/v1` would say
        it (404 naming the known models and routes, 400 for a model of another task)."""
        route = await self.dispatcher.resolve(model, principal, TASKS[kind])
        return route.name

    async def authenticate(self, raw_key: str | None) -> Principal:
        """The caller behind a key; a miss of the key cache is read off the event loop (401 if invalid)."""
        try:
            return await self.keys.authenticate_async(raw_key)
        except PodiumError as exc:
            raise GatewayError.from_podium(exc) from None

    async def handle(
        self,
        principal: Principal,
        incoming: Incoming,
        *,
        gone: Gone | None = None,
        use_cache: bool = True,
        prompt: PromptUse | None = None,
        origin: str = "gateway",
        parent: TraceParent | None = None,
    ) -> Answer:
        """Run one call. Failures become error answers in OpenAI's shape; the call is always recorded once
        it is known which model it asked for. `gone` lets a non-streamed call stop when the client leaves;
        `prompt` links the call to the prompt version the caller rendered itself (the playground); `origin`
        marks the trace's source (evaluations' own calls are `eval`, so they are told apart from traffic).
        A call that retrieved knowledge-base chunks answers with their `citations`. With `parent`, the call is
        recorded as a step of the parent's trace (a chain run's model call)."""
        if incoming.kind == "chat" and is_chain(incoming.body):
            return await self._chain(principal, incoming, origin)
        answer = await self._handle(principal, incoming, gone, use_cache, prompt, origin, parent)
        call = answer.call
        if call is not None and call.retrieval is not None and answer.status == 200:
            _cite(answer, call.retrieval)
        return answer

    async def _handle(
        self,
        principal: Principal,
        incoming: Incoming,
        gone: Gone | None,
        use_cache: bool,
        prompt: PromptUse | None,
        origin: str,
        parent: TraceParent | None = None,
    ) -> Answer:
        dispatcher = self.dispatcher
        kind, body = incoming.kind, incoming.body
        if principal.role == "viewer":  # calls cost money: reading is not enough
            exc = GatewayError(
                403, "a viewer key may list models but not call them; use a member key", code="permission_denied"
            )
            return Answer(exc.status, exc.headers, None, body=exc.body())
        retrieved: Retrieved | None = None
        try:
            used = prompt
            context = None
            if "retrieval" in body:  # retrieval-augmented: find the chunks, then put them into the request
                body, retrieved, context = await self._retrieve(principal, kind, body)
            if kind == "chat" and "prompt" in body:  # a prompt reference: render it into the request
                if self.prompts is None:
                    raise GatewayError(400, "prompt references are not served by this gateway", code="invalid_prompt")
                body, used = await self.prompts.apply(body, incoming.session_id, principal)
            if context is not None:
                body = with_context_message(body, context)
            model = check_fields(kind, body)
        except GatewayError as exc:
            return Answer(exc.status, exc.headers, None, body=exc.body())
        call = Call(
            kind=kind,
            body=body,
            principal=principal,
            model=model,
            stream=body.get("stream") is True and kind != "embedding",
            request_id=incoming.request_id,
            session_id=incoming.session_id,
            prompt=used,
            body_raw=incoming.raw if body is incoming.body else None,
            origin=origin,
            retrieval=retrieved,
            parent=parent,
        )
        # a rendered prompt reference changed the body: its size is what goes upstream
        body_bytes = incoming.body_bytes if body is incoming.body else len(orjson.dumps(body))
        try:
            guard = self.guard if origin != GUARD_ORIGIN else None  # a scanner's own calls are not checked again
            route = await dispatcher.prepare(call, TASKS[kind], body_bytes, guard)
            found = Lookup("none")
            if use_cache:  # a policy's redactions are in `call.body`: the cache keys on what the upstream sees
                found = await dispatcher.cache.lookup(
                    route.spec.cache, route.name, kind, call.body, incoming.cache_control, principal.project_id
                )
                call.cache = found.status
                if found.answer is not None:
                    shown = found.answer
                    if call.guard is not None and kind != "embedding":
                        shown = await call.guard.check_output(shown)
                    answer = self._from_cache(call, found, shown)
                    await dispatcher.finish(call)
                    return answer
            if call.stream:
                return await self._stream(call, route, found)
            result = await dispatcher.complete(call, route, _watching(gone) if gone is not None else None)
            shown = result  # what the client sees: the policy's output stage applied, placeholders restored
            if call.guard is not None and kind != "embedding":
                shown = await call.guard.check_output(result)
            if found.key is not None or found.vector is not None:
                await dispatcher.cache.store(found, route.spec.cache.ttl, result)
            call.output_raw = orjson.dumps(result)
            answer = Answer(200, call.headers(), call, body=shown, raw=call.output_raw if shown is result else None)
        except (GatewayError, UpstreamError, GuardrailViolation) as exc:
            answer = self._failed(call, exc)
        except ClientGone:
            call.status = 499
            call.error = "the client disconnected before the answer was ready"
            answer = Answer(499, {}, call)
        except BaseException as exc:  # a bug or a cancellation still settles the reservation and records
            if not isinstance(exc, asyncio.CancelledError):
                call.status, call.error = 500, f"{type(exc).__name__}: {exc}"
            else:
                call.status, call.error = 499, "the call was cancelled"
            await dispatcher.finish(call)
            raise
        await dispatcher.finish(call)
        return answer

    async def _chain(self, principal: Principal, incoming: Incoming, origin: str) -> Answer:
        """A chat request whose model is `chain:<ref>`: the chain's run, answered as a completion."""
        body = incoming.body
        try:
            if principal.role == "viewer":
                raise GatewayError(
                    403, "a viewer key may list models but not call them; use a member key", code="permission_denied"
                )
            if self.chains is None:
                raise GatewayError(400, "chains are not served by this gateway", code="model_not_found", param="model")
            answer = await self.chains.complete(principal, str(body["model"])[len(CHAIN_PREFIX) :], body, origin)
        except GatewayError as exc:
            return Answer(exc.status, exc.headers, None, body=exc.body())
        extra = {"cost_micros": answer.cost_micros}
        if body.get("stream") is True:
            return Answer(200, answer.headers(), None, stream=chain_chunks(body, answer), extra=extra)
        return Answer(200, answer.headers(), None, body=chain_completion(body, answer), extra=extra)

    async def _retrieve(
        self, principal: Principal, kind: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], Retrieved, str]:
        """The request without its `retrieval` field (the context passed as a prompt reference's variable), what
        was retrieved, and the rendered context."""
        if kind != "chat":
            raise GatewayError(400, "'retrieval' is only taken by chat completions", code="invalid_retrieval")
        spec = parse_spec(body["retrieval"])
        if self.retriever is None:
            raise GatewayError(400, "knowledge-base retrieval is not served by this gateway", code="invalid_retrieval")
        retrieved = await self.retriever.retrieve(principal, spec, query_of(body, spec))
        context = render_context(retrieved)
        rest = {k: v for k, v in body.items() if k != "retrieval"}
        return with_context_variable(rest, context), retrieved, context

    # --- answers -------------------------------------------------------------------------------------

    @staticmethod
    def _failed(call: Call, exc: GatewayError | UpstreamError | GuardrailViolation) -> Answer:
        error = as_gateway_error(exc)
        call.status = error.status
        call.error = error.message
        headers = {**call.headers(), **error.headers} if call.route else dict(error.headers)
        return Answer(error.status, headers, call, body=error.body())

    @staticmethod
    def _from_cache(call: Call, found: Lookup, shown: dict[str, Any]) -> Answer:
        """Answer from the cache (`shown`: the hit as the client sees it): no upstream call, cost $0 (tokens are
        still counted)."""
        hit = found.answer
        assert hit is not None
        call.cache = found.status
        call.cache_similarity = found.similarity
        call.set_usage(hit.get("usage"))
        call.cost_micros = 0
        call.output = hit
        call.ttft_ms = (time.perf_counter() - call.t0) * 1000
        if call.stream:
            opts = call.body.get("stream_options")
            chunks = as_chunks(shown, bool(isinstance(opts, dict) and opts.get("include_usage")))
            return Answer(200, call.headers(), call, stream=_replay(chunks))
        return Answer(200, call.headers(), call, body=shown)

    async def _stream(self, call: Call, route: Route, found: Lookup) -> Answer:
        """Stream from the first deployment that yields a first chunk; keep-alives while waiting. A failure
        before the first chunk within the keep-alive interval is still a plain error answer."""
        dispatcher = self.dispatcher
        body = call.body
        opts = body.get("stream_options")
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        store = None
        if found.key is not None or found.vector is not None:

            async def store(result: dict[str, Any]) -> None:
                await dispatcher.cache.store(found, route.spec.cache.ttl, result)

        async def op(up: Upstream) -> tuple[dict[str, Any] | None, AsyncIterator[Any]]:
            source = (
                up.provider.chat_stream(body, up.timeouts)
                if call.kind == "chat"
                else up.provider.complete_stream(body, up.timeouts)
            )
            opened = await first_then_rest(source)
            call.ttft_ms = (time.perf_counter() - call.t0) * 1000
            return opened

        opening = asyncio.ensure_future(dispatcher.attempt(call, route, op))
        done, _ = await asyncio.wait({opening}, timeout=self.keepalive)
        if done:  # the first token came quickly: a failure can still be a plain HTTP error, with full headers
            try:
                opening.result()
            except (GatewayError, UpstreamError) as exc:
                answer = self._failed(call, exc)
                await dispatcher.finish(call)
                return answer
            headers = call.headers()
        else:  # headers go now; keep-alives follow until the first token
            headers = {"x-podium-trace-id": call.trace_id, "x-podium-route": route.name}
            if call.prompt is not None:
                headers["x-podium-prompt-version"] = call.prompt.ref
            if call.retrieval is not None:
                headers.update(call.retrieval.headers())
        chunks = _StreamRelay(call, dispatcher, opening, include_usage, self.keepalive, route.guards, store)
        return Answer(200, headers, call, stream=chunks.run())


def _cite(answer: Answer, retrieved: Retrieved) -> None:
    """Add the `citations` extension field to an answer: beside `choices` in a response body, in the first chunk
    of a stream."""
    citations = retrieved.citations()
    if isinstance(answer.body, dict) and "choices" in answer.body:
        answer.body = {**answer.body, "citations": citations}
        answer.raw = None
    elif answer.stream is not None:
        answer.stream = _cited(answer.stream, citations)


async def _cited(
    stream: AsyncIterator[dict[str, Any] | None], citations: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any] | None]:
    first = True
    async for chunk in stream:
        if first and isinstance(chunk, dict) and "choices" in chunk:
            chunk = {**chunk, "citations": citations}
            first = False
        yield chunk


async def _replay(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any] | None]:
    for chunk in chunks:
        yield chunk


WATCH_AFTER = 0.05  # seconds a non-streamed call runs before the client's connection is watched


def _watching(gone: Gone, after: float = WATCH_AFTER) -> Callable[[Awaitable[Any]], Awaitable[Any]]:
    """A wrapper that runs an awaitable until it finishes or the client goes away (`ClientGone`). The
    awaitable runs in the caller's task; the client is watched (one more task) only once it has run for
    `after` seconds, so the many calls that take less cost a timer, not a task."""

    async def wait(running: Awaitable[Any]) -> Any:
        me = asyncio.current_task()
        assert me is not None
        active, left = True, False
        watcher: asyncio.Future[None] | None = None

        def on_gone(task: asyncio.Future[None]) -> None:
            nonlocal left
            if active and not task.cancelled() and task.exception() is None:
                left = True
                me.cancel()

        def watch() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(gone())
            watcher.add_done_callback(on_gone)

        timer = asyncio.get_running_loop().call_later(after, watch)
        try:
            return await running
        except asyncio.CancelledError:
            if left and me.uncancel() == 0:  # cancelled by the watcher alone: the client went away
                raise ClientGone() from None
            raise
        finally:
            active = False
            timer.cancel()
            if watcher is not None:
                watcher.cancel()

    return wait


def _assembled(kind: str, meta: dict[str, Any], text: str, finish_reason: str, usage: Any) -> dict[str, Any]:
    """A streamed answer put back together as the non-streamed response, for the cache."""
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        obj = "chat.completion"
    else:
        choice, obj = {"index": 0, "text": text, "logprobs": None}, "text_completion"
    choice["finish_reason"] = finish_reason
    return {**meta, "object": obj, "choices": [choice], "usage": usage}


GUARD_WINDOW = 2_000  # characters before a chunk that streaming guardrails see again with it


def _tail(pieces: list[str], n: int) -> str:
    """The last `n` characters of the streamed text (read from its last pieces only)."""
    taken: list[str] = []
    size = 0
    for piece in reversed(pieces):
        taken.append(piece)
        size += len(piece)
        if size >= n:
            break
    text = "".join(reversed(taken))
    return text[-n:]


@dataclass
class _StreamRelay:
    """Relays an upstream stream to the client: usage is recorded, and sent in a chunk of its own only if the
    client asked (`stream_options.include_usage`); response guardrails see the text as it grows, and the record
    is handed over when it ends."""

    call: Call
    dispatcher: Dispatcher
    opening: asyncio.Future[Any]
    include_usage: bool
    keepalive: float
    guards: list[Guardrail]
    store: Callable[[dict[str, Any]], Awaitable[None]] | None
    pieces: list[str] = field(default_factory=list)
    # the policy's output stage, per choice: checks, holds back and restores the text (None: closed)
    checkers: dict[int, StreamGuard | None] = field(default_factory=dict)

    async def _checked(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """The chunk with each choice's text as the policy lets it out (checked, perhaps held back or restored; at
        the finish, with what was held back); the upstream's text stays in `_upstream`."""
        guard = self.call.guard
        assert guard is not None
        choices = []
        for c in chunk.get("choices") or []:
            index = c.get("index", 0)
            if index not in self.checkers:
                self.checkers[index] = guard.stream()
            checker = self.checkers[index]
            if checker is None:  # this choice has finished
                choices.append(c)
                continue
            delta = c.get("delta")
            chat = isinstance(delta, dict)
            text = delta.get("content") if isinstance(delta, dict) else c.get("text")
            out = await checker.feed(text) if isinstance(text, str) else ""
            if c.get("finish_reason"):
                self.checkers[index] = None
                out += await checker.close()
            c = {**c, "_upstream": text if isinstance(text, str) else ""}
            if chat:
                if isinstance(text, str) or out:
                    c["delta"] = {**delta, "content": out}
            elif isinstance(text, str) or out:
                c["text"] = out
            choices.append(c)
        return {**chunk, "choices": choices}

    async def run(self) -> AsyncIterator[dict[str, Any] | None]:
        call = self.call
        finish_reason = None
        plain = True  # one choice of plain text: the assembled answer can be cached
        meta: dict[str, Any] = {}
        usage: Any = None
        rest: AsyncIterator[Any] | None = None
        pieces = self.pieces
        try:
            while not (await asyncio.wait({self.opening}, timeout=self.keepalive))[0]:
                yield KEEPALIVE
            try:
                first, rest = self.opening.result()
            except (GatewayError, UpstreamError) as exc:
                error = exc if isinstance(exc, GatewayError) else GatewayError.from_upstream(exc)
                call.status, call.error = error.status, error.message
                yield error.body()
                return
            assert rest is not None
            held: dict[str, Any] | None = None  # the finish chunk, sent once the usage is in (recorded whole)
            try:
                async for chunk in _chained(first, rest):
                    meta = meta or {k: chunk.get(k) for k in ("id", "created", "model")}
                    if not chunk.get("choices") and chunk.get("usage") is not None:
                        usage = chunk["usage"]
                        call.set_usage(usage)
                        if held is not None:
                            yield held
                            held = None
                        if self.include_usage:  # only when asked, as OpenAI does; it is recorded either way
                            yield chunk
                        continue
                    if held is not None:
                        yield held
                        held = None
                    if "usage" in chunk:  # on a chunk of text (some upstreams put it on their last one)
                        if chunk["usage"] is not None:
                            usage = chunk["usage"]
                            call.set_usage(usage)
                        if not self.include_usage:
                            chunk = {k: v for k, v in chunk.items() if k != "usage"}
                    choices = chunk.get("choices") or []
                    if call.guard is not None and choices:
                        chunk = await self._checked(chunk)
                        choices = chunk.get("choices") or []
                    for c in choices:
                        delta = c.get("delta") or {}
                        if c.get("index", 0) != 0 or (isinstance(delta, dict) and delta.get("tool_calls")):
                            plain = False
                        text = c.get("_upstream")
                        if text is None:
                            text = delta.get("content") if isinstance(delta, dict) else None
                        if text is None:
                            text = c.get("text")
                        c.pop("_upstream", None)
                        if isinstance(text, str):
                            pieces.append(text)
                            if self.guards and text:  # the new text and what came just before it, not it all
                                window = _tail(pieces, len(text) + GUARD_WINDOW)
                                for guard in self.guards:
                                    await guard.check_response(window)
                        if c.get("finish_reason"):
                            finish_reason = c["finish_reason"]
                    if choices and choices[-1].get("finish_reason"):
                        held = chunk
                        continue
                    yield chunk
                for index, checker in self.checkers.items():  # choices the upstream ended without a finish reason
                    if checker is not None:
                        self.checkers[index] = None
                        tail = await checker.close()
                        if tail:
                            yield _text_chunk(call.kind, meta, tail, index)
                if held is not None:
                    yield held
                if self.store is not None and plain and finish_reason:
                    await self.store(_assembled(call.kind, meta, "".join(pieces), finish_reason, usage))
            except UpstreamError as exc:
                error = GatewayError.from_upstream(exc)
                call.status, call.error = error.status, f"failed mid-stream: {error.message}"
                yield error.body()
            except GuardrailViolation as exc:
                error = as_gateway_error(exc)
                call.status, call.error = error.status, error.message
                yield error.body()
        except (asyncio.CancelledError, GeneratorExit):
            call.status = 499
            call.error = "the client disconnected during the stream"
            call.estimate_usage("".join(pieces))  # the upstream worked (and bills) until then
            if not self.opening.done():
                self.opening.cancel()
            raise
        finally:
            call.output = {"content": "".join(pieces), "finish_reason": finish_reason}
            if rest is not None and hasattr(rest, "aclose"):
                with contextlib.suppress(BaseException):
                    await rest.aclose()
            self.dispatcher.finish_soon(call)


def _text_chunk(kind: str, meta: dict[str, Any], text: str, index: int = 0) -> dict[str, Any]:
    """A chunk carrying only text (what a policy held back until the upstream's stream ended)."""
    if kind == "chat":
        choice: dict[str, Any] = {"index": index, "delta": {"content": text}, "finish_reason": None}
        return {**meta, "object": "chat.completion.chunk", "choices": [choice]}
    choice = {"index": index, "text": text, "finish_reason": None}
    return {**meta, "object": "text_completion", "choices": [choice]}


async def _chained(first: dict[str, Any] | None, rest: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    if first is not None:
        yield first
    async for c in rest:
        yield c
