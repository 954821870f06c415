"""The worker's OpenAI-compatible HTTP API (served on a unix socket): chat, completions, embeddings,
tokenize, models, health. One model per worker process."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from podium.core import sse
from podium.models.worker.api import Constraint, Event, Finished, QueueFull, SeqRequest, TokenOut
from podium.models.worker.constrain import Grammars
from podium.models.worker.detok import TextStream
from podium.models.worker.engine import Job
from podium.models.worker.protocol import (
    RequestError,
    SamplingParams,
    ToolRequest,
    check_supported,
    parse_messages,
    parse_response_format,
    parse_sampling,
    parse_tools,
)
from podium.models.worker.scoring import PromptScores, score_prompt
from podium.models.worker.toolcalls import (
    CallStream,
    parse_calls,
    repeated_call,
    template_knows_tools,
    with_tools_in_prompt,
)

DEFAULT_MAX_TOKENS = 2048


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def _error(message: str, *, status: int = 400, param: str | None = None, code: str = "invalid_request") -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        kind = "rate_limit_error"
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return _json({"error": {"message": message, "type": kind, "param": param, "code": code}}, status, headers)


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("request body must be a JSON object")
    return data


@dataclass
class WorkerState:
    """What the worker serves."""

    model_name: str
    version_id: str
    task: str
    lm: Any = None  # LoadedLM
    engine: Any = None  # Engine
    embedder: Any = None  # EmbedBatcher
    started: float = 0.0
    grammars: Grammars | None = None  # built on the first constrained request

    def get_grammars(self) -> Grammars:
        """The grammar compiler for this model's tokenizer."""
        if self.grammars is None:
            self.grammars = Grammars(self.lm.tokenizer, int(self.lm.model.config.vocab_size), list(self.lm.eos_ids))
        return self.grammars


class _Seq:
    """A sequence's events, bridged from the engine thread into the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.loop = loop

    def emit(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


def build_app(state: WorkerState) -> Starlette:
    """The ASGI app for one loaded model."""

    async def healthz(request: Request) -> Response:
        info: dict[str, Any] = {"status": "ok", "model": state.model_name, "version_id": state.version_id}
        if state.engine is not None:
            info["engine"] = state.engine.stats()
        return _json(info)

    async def models(request: Request) -> Response:
        return _json(
            {
                "object": "list",
                "data": [
                    {"id": state.model_name, "object": "model", "created": int(state.started), "owned_by": "podium"}
                ],
            }
        )

    # --- generation ------------------------------------------------------------------------------

    def prompt_ids_chat(body: dict[str, Any], tools: ToolRequest | None) -> list[int]:
        messages = parse_messages(body)
        tok = state.lm.tokenizer
        listed: list[dict[str, Any]] | None = None
        if tools is not None and tools.choice != "none":
            if template_knows_tools(tok):
                listed = [{"type": "function", "function": f} for f in tools.functions]
            else:
                messages = with_tools_in_prompt(messages, tools.functions)
        try:
            ids = tok.apply_chat_template(messages, tools=listed, add_generation_prompt=True, tokenize=True)
        except Exception as exc:
            raise RequestError(f"cannot apply the model's chat template: {exc}", "messages") from None
        if hasattr(ids, "keys") and "input_ids" in ids:
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def prompt_ids_text(body: dict[str, Any]) -> list[int]:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            elif prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
                vocab = int(state.lm.model.config.vocab_size)
                for i, t in enumerate(prompt):
                    if not 0 <= t < vocab:
                        raise RequestError(
                            f"prompt[{i}] is token id {t}, outside this model's vocabulary of {vocab} tokens",
                            "prompt",
                        )
                return [int(t) for t in prompt]
            else:
                raise RequestError("'prompt' must be a string, a list of one string, or a list of token ids", "prompt")
        if not isinstance(prompt, str):
            raise RequestError("'prompt' is required and must be a string", "prompt")
        return [int(i) for i in state.lm.tokenizer.encode(prompt, add_special_tokens=False)]

    def budget(prompt: list[int], params: SamplingParams, field: str = "messages") -> int:
        """How many tokens to generate; a 400 naming `field` (the prompt's) or max_tokens if they do not fit,
        in OpenAI's words with its code `context_length_exceeded` (clients such as litellm recognise them).
        max_tokens 0 (scoring the prompt, with echo) lets the prompt fill the whole context window."""
        ctx = int(state.lm.context_length)
        what = "messages" if field == "messages" else "prompt"
        opening = f"This model's maximum context length is {ctx} tokens."
        if len(prompt) > ctx or (len(prompt) == ctx and params.max_tokens != 0):
            rest = "" if len(prompt) > ctx else ", which leaves no room for the completion"
            raise RequestError(
                f"{opening} However, your {what} resulted in {len(prompt)} tokens{rest}."
                f" Please reduce the length of the {what}.",
                field,
                code="context_length_exceeded",
            )
        room = ctx - len(prompt)
        if params.max_tokens is None:
            return min(room, DEFAULT_MAX_TOKENS)
        if params.max_tokens > room:
            raise RequestError(
                f"{opening} However, you requested {len(prompt) + params.max_tokens} tokens ({len(prompt)} in the"
                f" {what}, {params.max_tokens} in the completion). Please reduce the length of the {what} or"
                " completion.",
                "max_tokens",
                code="context_length_exceeded",
            )
        return params.max_tokens

    def submit(
        prompt: list[int], params: SamplingParams, max_new: int, constraint: Callable[[], Constraint] | None = None
    ) -> list[tuple[SeqRequest, _Seq]]:
        vocab = int(state.lm.model.config.vocab_size)
        for token in params.logit_bias:
            if not 0 <= token < vocab:
                raise RequestError(
                    f"'logit_bias' names token {token}, outside this model's vocabulary of {vocab} tokens", "logit_bias"
                )
        loop = asyncio.get_running_loop()
        seqs = []
        base_id = uuid.uuid4().hex[:12]
        for i in range(params.n):
            bridge = _Seq(loop)
            seed = None if params.seed is None else params.seed + i
            req = SeqRequest(
                id=f"{base_id}-{i}",
                prompt_ids=prompt,
                max_new_tokens=max_new,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=seed,
                eos_ids=state.lm.eos_ids,
                logprobs=params.logprobs,
                emit=bridge.emit,
                presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
                logit_bias=params.logit_bias or None,
                constraint=constraint() if constraint is not None else None,
            )
            seqs.append((req, bridge))
        try:
            state.engine.submit_many([r for r, _ in seqs])
        except QueueFull:
            raise RequestError(
                "the model is busy (its request queue is full); retry shortly", status=429, code="queue_full"
            ) from None
        return seqs

    def cancel_all(seqs: list[tuple[SeqRequest, _Seq]]) -> None:
        for req, _ in seqs:
            state.engine.cancel(req)

    def submit_scoring(prompt: list[int], top: int) -> Job:
        """Score the prompt's tokens on the engine thread (see `scoring`)."""
        engine = state.engine
        model = state.lm.model

        def make(backend: Any, slot: int) -> Any:
            return score_prompt(backend, model, prompt, top, slot=slot, chunk=engine.prefill_budget)

        try:
            job: Job = engine.submit_job(Job(make))
        except QueueFull:
            raise RequestError(
                "the model is busy (its request queue is full); retry shortly", status=429, code="queue_full"
            ) from None
        return job

    async def wait_scoring(job: Job | None) -> PromptScores | None:
        if job is None:
            return None
        try:
            scores: PromptScores = await asyncio.wrap_future(job.future)
        except Exception as exc:  # a bug or OOM in the forward pass (the sequences were not touched)
            raise RuntimeError(f"scoring the prompt failed: {type(exc).__name__}: {exc}") from exc
        finally:
            job.cancel()  # a no-op once it is done; stops it when the request is cancelled
        return scores

    def token_text(token_id: int) -> str:
        return str(state.lm.tokenizer.decode([token_id]))

    def chat_logprob_entry(ev: TokenOut) -> dict[str, Any]:
        tok = token_text(ev.token_id)
        entry: dict[str, Any] = {"token": tok, "logprob": ev.logprob, "bytes": list(tok.encode())}
        entry["top_logprobs"] = [
            {"token": (t := token_text(i)), "logprob": lp, "bytes": list(t.encode())} for i, lp in (ev.top or [])
        ]
        return entry

    async def run_collect(
        seqs: list[tuple[SeqRequest, _Seq]], params: SamplingParams, calling: bool = False
    ) -> list[tuple[str, str, list[TokenOut], int]]:
        """Wait for every sequence; returns (text, finish_reason, tokens, count) per choice. With tools on, an
        answer that repeats one of its calls ends before the repeat (`toolcalls.repeated_call`)."""

        async def one(req: SeqRequest, bridge: _Seq) -> tuple[str, str, list[TokenOut], int]:
            stream = TextStream(state.lm.tokenizer, params.stop)
            tokens: list[TokenOut] = []
            pieces: list[str] = []
            while True:
                ev = await bridge.queue.get()
                if isinstance(ev, TokenOut):
                    tokens.append(ev)
                    pieces.append(stream.push(ev.token_id))
                    if calling and ">" in pieces[-1]:
                        text = "".join(pieces)
                        cut = repeated_call(text)
                        if cut is not None:
                            state.engine.cancel(req)
                            return text[:cut], "stop", tokens, len(tokens)
                    if stream.stopped:
                        state.engine.cancel(req)
                        return "".join(pieces), "stop", tokens, len(tokens)
                    continue
                if ev.reason == "error":
                    raise RuntimeError(ev.error or "generation failed")
                pieces.append(stream.finish())
                reason = "length" if ev.reason == "length" else "stop"
                return "".join(pieces), reason, tokens, len(tokens)

        return list(await asyncio.gather(*(one(r, b) for r, b in seqs)))

    async def await_or_disconnect(request: Request, coro: Any, seqs: list[tuple[SeqRequest, _Seq]]) -> Any:
        task = asyncio.ensure_future(coro)

        async def watch() -> None:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            task.cancel()
            cancel_all(seqs)
            raise asyncio.CancelledError()
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()
                cancel_all(seqs)

    def usage(prompt: list[int], completion: int) -> dict[str, int]:
        return {"prompt_tokens": len(prompt), "completion_tokens": completion, "total_tokens": len(prompt) + completion}

    async def output_constraint(body: dict[str, Any], tools: ToolRequest | None) -> Callable[[], Constraint] | None:
        """A maker of per-sequence matchers for `response_format` or tool calls (compiled on a worker thread),
        or None when the output is free."""
        fmt = parse_response_format(body)
        calling = tools is not None and tools.choice != "none"
        if fmt is not None and calling:
            raise RequestError(
                "'response_format' and 'tools' cannot be combined on a local model; send one of them"
                " (or tool_choice 'none')",
                "response_format",
                code="unsupported_parameter",
            )
        if fmt is None and not calling:
            return None
        grammars = state.get_grammars()
        if fmt is not None:
            compiled = await asyncio.to_thread(grammars.for_format, fmt)
        else:
            assert tools is not None
            compiled = await asyncio.to_thread(grammars.for_tools, tools)
        return lambda: grammars.constraint(compiled)

    async def chat_completions(request: Request) -> Response:
        if state.engine is None:
            return _error(f"{state.model_name} is an embedding model; use /v1/embeddings", status=400)
        try:
            body = await _body(request)
            check_supported(body)
            params = parse_sampling(body, chat=True)
            tools = parse_tools(body)
            prompt = prompt_ids_chat(body, tools)
            max_new = budget(prompt, params)
            constraint = await output_constraint(body, tools)
            seqs = submit(prompt, params, max_new, constraint)
        except RequestError as exc:
            return _error(exc.message, status=exc.status, param=exc.param, code=exc.code)
        created = int(time.time())
        cid = "chatcmpl-" + uuid.uuid4().hex
        model = str(body.get("model") or state.model_name)
        calling = tools is not None and tools.choice != "none"
        if params.stream:
            return StreamingResponse(
                chat_stream(seqs, params, prompt, cid, created, model, calling), media_type="text/event-stream"
            )
        try:
            results = await await_or_disconnect(request, run_collect(seqs, params, calling), seqs)
        except RuntimeError as exc:
            return _error(f"generation failed: {exc}", status=500, code="engine_error")
        choices = []
        for i, (text, reason, tokens, _) in enumerate(results):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calling:
                content, calls = parse_calls(text)
                if calls:
                    message = {"role": "assistant", "content": content or None, "tool_calls": calls}
                    reason = "tool_calls" if reason == "stop" else reason
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": reason, "logprobs": None}
            if params.logprobs is not None:
                choice["logprobs"] = {"content": [chat_logprob_entry(t) for t in tokens]}
            choices.append(choice)
        return _json(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": state.version_id,
                "choices": choices,
                "usage": usage(prompt, sum(r[3] for r in results)),
            }
        )

    async def chat_stream(
        seqs: list[tuple[SeqRequest, _Seq]],
        params: SamplingParams,
        prompt: list[int],
        cid: str,
        created: int,
        model: str,
        calling: bool = False,
    ) -> AsyncIterator[bytes]:
        def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            data.update(extra)
            return sse.frame(data)

        completion = 0
        try:
            for i in range(len(seqs)):
                yield frame([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            merged: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()

            async def pump(i: int, bridge: _Seq) -> None:
                while True:
                    ev = await bridge.queue.get()
                    await merged.put((i, ev))
                    if isinstance(ev, Finished):
                        return

            pumps = [asyncio.ensure_future(pump(i, b)) for i, (_, b) in enumerate(seqs)]
            streams = [TextStream(state.lm.tokenizer, params.stop) for _ in seqs]
            splitters = [CallStream() if calling else None for _ in seqs]
            called = [0] * len(seqs)
            made: list[set[tuple[str, str]]] = [set() for _ in seqs]  # calls already sent, to stop at a repeat
            repeated = [False] * len(seqs)

            def deltas(i: int, text: str, lp: dict[str, Any] | None, end: bool = False) -> list[bytes]:
                """Frames for new text: content, and whole tool calls when tools are on."""
                splitter = splitters[i]
                if splitter is None:
                    return [frame([{"index": i, "delta": {"content": text}, "finish_reason": None, "logprobs": lp}])]
                out = []
                for piece in splitter.push(text) + (splitter.finish() if end else []):
                    if repeated[i]:
                        break
                    if isinstance(piece, str):
                        out.append(frame([{"index": i, "delta": {"content": piece}, "finish_reason": None}]))
                    else:
                        key = (piece["function"]["name"], piece["function"]["arguments"])
                        if key in made[i]:  # a repeat ends the answer (see toolcalls.repeated_call)
                            repeated[i] = True
                            state.engine.cancel(seqs[i][0])
                            break
                        made[i].add(key)
                        call = {"index": called[i], **piece}
                        called[i] += 1
                        out.append(frame([{"index": i, "delta": {"tool_calls": [call]}, "finish_reason": None}]))
                if lp is not None and not out:
                    out.append(frame([{"index": i, "delta": {}, "finish_reason": None, "logprobs": lp}]))
                return out

            def finish_reason(i: int, reason: str) -> str:
                return "tool_calls" if called[i] and reason == "stop" else reason

            open_count = len(seqs)
            while open_count:
                i, ev = await merged.get()
                stream = streams[i]
                if isinstance(ev, TokenOut):
                    if stream.stopped:
                        continue
                    completion += 1
                    delta = stream.push(ev.token_id)
                    lp = {"content": [chat_logprob_entry(ev)]} if params.logprobs is not None else None
                    if delta or lp:
                        for chunk in deltas(i, delta, lp, end=stream.stopped):
                            yield chunk
                    if stream.stopped:
                        state.engine.cancel(seqs[i][0])
                        yield frame([{"index": i, "delta": {}, "finish_reason": finish_reason(i, "stop")}])
                    continue
                open_count -= 1
                if ev.reason == "error":
                    err = {"message": f"generation failed: {ev.error}", "type": "server_error", "code": "engine_error"}
                    yield sse.frame({"error": err})
                    return
                if stream.stopped:
                    continue
                for chunk in deltas(i, stream.finish(), None, end=True):
                    yield chunk
                reason = finish_reason(i, "length" if ev.reason == "length" else "stop")
                yield frame([{"index": i, "delta": {}, "finish_reason": reason}])
            for p in pumps:
                p.cancel()
            if params.include_usage:
                yield frame([], usage=usage(prompt, completion))
            yield sse.DONE
        finally:
            cancel_all(seqs)

    def prompt_logprobs(prompt: list[int], scores: PromptScores | None) -> dict[str, list[Any]]:
        """The echoed prompt's part of a text completion's `logprobs` (empty lists if it was not scored);
        `text_offset` counts characters from the start of the prompt."""
        part: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        if scores is None:
            return part
        at = 0
        for token_id, logprob, top in zip(prompt, scores.logprobs, scores.top, strict=True):
            text = token_text(token_id)
            part["tokens"].append(text)
            part["token_logprobs"].append(logprob)
            part["top_logprobs"].append(None if top is None else {token_text(i): v for i, v in top})
            part["text_offset"].append(at)
            at += len(text)
        return part

    def text_logprobs(head: dict[str, list[Any]], start: int, tokens: list[TokenOut]) -> dict[str, list[Any]]:
        """A text completion's `logprobs`: `head` (the scored prompt's, or empty) then the generated tokens,
        whose `text_offset` starts at `start`, the prompt's length in characters (as OpenAI's)."""
        out = {k: list(v) for k, v in head.items()}
        at = start
        for t in tokens:
            text = token_text(t.token_id)
            out["tokens"].append(text)
            out["token_logprobs"].append(t.logprob)
            out["top_logprobs"].append({token_text(k): v for k, v in (t.top or [])})
            out["text_offset"].append(at)
            at += len(text)
        return out

    async def completions(request: Request) -> Response:
        if state.engine is None:
            return _error(f"{state.model_name} is an embedding model; use /v1/embeddings", status=400)
        job: Job | None = None
        try:
            body = await _body(request)
            check_supported(body, chat=False)
            echo = body.get("echo")
            if echo is not None and not isinstance(echo, bool):
                raise RequestError("'echo' must be true or false", "echo")
            raw_max = body.get("max_tokens")
            score_only = type(raw_max) is int and raw_max == 0  # generate nothing: echo (and score) the prompt
            if score_only and not echo:
                raise RequestError(
                    "'max_tokens' must be at least 1; 0 (generate nothing) needs 'echo': true", "max_tokens"
                )
            params = parse_sampling(
                {k: v for k, v in body.items() if k != "max_tokens"} if score_only else body, chat=False
            )
            if score_only:
                params.max_tokens = 0
            scoring = bool(echo) and params.logprobs is not None
            if scoring and params.stream:
                raise RequestError("echo with logprobs is not supported when streaming", "stream")
            prompt = prompt_ids_text(body)
            if not prompt:
                raise RequestError("'prompt' is empty; a completion needs at least one token", "prompt")
            max_new = budget(prompt, params, "prompt")
            if raw_max is None:
                max_new = min(max_new, 16)  # OpenAI's default for text completions
            job = submit_scoring(prompt, params.logprobs or 0) if scoring else None
            seqs = submit(prompt, params, max_new) if max_new > 0 else []
        except RequestError as exc:
            if job is not None:
                job.cancel()
            return _error(exc.message, status=exc.status, param=exc.param, code=exc.code)
        created = int(time.time())
        cid = "cmpl-" + uuid.uuid4().hex
        model = str(body.get("model") or state.model_name)
        prefix = str(state.lm.tokenizer.decode(prompt)) if echo else ""
        if params.stream:
            return StreamingResponse(
                text_stream(seqs, params, prompt, cid, created, model, prefix), media_type="text/event-stream"
            )

        async def collect() -> tuple[list[tuple[str, str, list[TokenOut], int]], PromptScores | None]:
            scored = asyncio.ensure_future(wait_scoring(job))
            try:
                results = await run_collect(seqs, params) if seqs else [("", "length", [], 0)] * params.n
                return results, await scored
            finally:
                scored.cancel()  # generation failed or the client left: stop the scoring too

        try:
            results, scores = await await_or_disconnect(request, collect(), seqs)
        except RuntimeError as exc:
            return _error(f"generation failed: {exc}", status=500, code="engine_error")
        choices = []
        if params.logprobs is not None:
            head = prompt_logprobs(prompt, scores)
            start = len(prefix) if echo else len(str(state.lm.tokenizer.decode(prompt)))
        for i, (text, reason, tokens, _) in enumerate(results):
            lp = text_logprobs(head, start, tokens) if params.logprobs is not None else None
            choices.append({"index": i, "text": prefix + text, "finish_reason": reason, "logprobs": lp})
        return _json(
            {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage(prompt, sum(r[3] for r in results)),
            }
        )

    async def text_stream(
        seqs: list[tuple[SeqRequest, _Seq]],
        params: SamplingParams,
        prompt: list[int],
        cid: str,
        created: int,
        model: str,
        prefix: str,
    ) -> AsyncIterator[bytes]:
        def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": choices}
            data.update(extra)
            return sse.frame(data)

        completion = 0
        try:
            if not seqs:  # max_tokens 0: the echoed prompt only
                for i in range(params.n):
                    yield frame([{"index": i, "text": prefix, "finish_reason": "length"}])
            for i, (req, bridge) in enumerate(seqs):
                stream = TextStream(state.lm.tokenizer, params.stop)
                if prefix:
                    yield frame([{"index": i, "text": prefix, "finish_reason": None}])
                while True:
                    ev = await bridge.queue.get()
                    if isinstance(ev, TokenOut):
                        completion += 1
                        delta = stream.push(ev.token_id)
                        if delta:
                            yield frame([{"index": i, "text": delta, "finish_reason": None}])
                        if stream.stopped:
                            state.engine.cancel(req)
                            yield frame([{"index": i, "text": "", "finish_reason": "stop"}])
                            break
                        continue
                    if ev.reason == "error":
                        err = {"message": f"generation failed: {ev.error}", "type": "server_error"}
                        yield sse.frame({"error": err})
                        return
                    rest = stream.finish()
                    reason = "length" if ev.reason == "length" else "stop"
                    yield frame([{"index": i, "text": rest, "finish_reason": reason}])
                    break
            if params.include_usage:
                yield frame([], usage=usage(prompt, completion))
            yield sse.DONE
        finally:
            cancel_all(seqs)

    # --- embeddings --------------------------------------------------------------------------------

    async def embeddings(request: Request) -> Response:
        from podium.models.worker.embedder import decode_ids, parse_input

        if state.embedder is None:
            return _error(f"{state.model_name} is not an embedding model", status=400, param="model")
        try:
            body = await _body(request)
            found = parse_input(body.get("input"))  # token ids are read as OpenAI cl100k_base ids (cl100k.py)
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise RequestError("'encoding_format' must be 'float' or 'base64'", "encoding_format")
            dims = body.get("dimensions")
            if dims is not None and dims != state.embedder.dimensions:
                raise RequestError(
                    f"this model makes {state.embedder.dimensions}-dimensional embeddings;"
                    " 'dimensions' cannot change it",
                    "dimensions",
                )
            texts = await asyncio.to_thread(decode_ids, found) if found.ids else found.texts
        except RequestError as exc:
            return _error(exc.message, status=exc.status, param=exc.param, code=exc.code)
        vectors, tokens = await state.embedder.embed(texts)
        data = []
        for i, vec in enumerate(vectors):
            value: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if fmt == "base64" else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        return _json(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or state.model_name),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def tokenize(request: Request) -> Response:
        try:
            body = await _body(request)
            if state.embedder is not None:
                raw = body.get("prompt", body.get("input", ""))
                texts = [raw] if isinstance(raw, str) else list(raw)
                count = sum(state.embedder.count(t) for t in texts)
                return _json({"count": count, "max_model_len": state.embedder.max_tokens})
            ids = prompt_ids_chat(body, parse_tools(body)) if "messages" in body else prompt_ids_text(body)
        except RequestError as exc:
            return _error(exc.message, status=exc.status, param=exc.param, code=exc.code)
        return _json({"count": len(ids), "tokens": ids, "max_model_len": state.lm.context_length})

    routes = [
        Route("/healthz", healthz),
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/tokenize", tokenize, methods=["POST"]),
    ]
    return Starlette(routes=routes)
