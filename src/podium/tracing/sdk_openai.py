"""`podium.instrument_openai(client)`: spans for the calls an `openai.OpenAI` / `openai.AsyncOpenAI` client
makes, whatever server its `base_url` points at (OpenAI, the Podium gateway, any compatible server).

`chat.completions.create`, `completions.create` (both `llm` spans) and `embeddings.create` (`embedding`)
are wrapped on that client instance only; the `openai` package itself is never patched, and it is not
imported here. A streamed call (`stream=True`) returns a wrapper around the SDK's stream that behaves the
same; its span ends when the stream is exhausted, closed or fails, and records the time to the first
token and the joined output. Usage of a stream comes from its final chunk, which OpenAI sends only when
asked: pass `stream_options={"include_usage": True}`. Costs are left to the server's price table.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from podium.tracing.kinds import SpanKind
from podium.tracing.sdk import Span, current_span, to_json

C = TypeVar("C")
_MARK = "__podium_traced__"
_SKIP_PARAMS = {"model", "messages", "prompt", "input", "extra_headers", "extra_query", "extra_body", "timeout"}

# (attribute path on the client, span kind, span name, what the call is)
_TARGETS: tuple[tuple[tuple[str, ...], SpanKind, str, str], ...] = (
    (("chat", "completions"), "llm", "openai.chat.completions", "chat"),
    (("completions",), "llm", "openai.completions", "completion"),
    (("embeddings",), "embedding", "openai.embeddings", "embedding"),
)


def instrument_openai(client: C) -> C:
    """Trace `client`'s chat completions, completions and embeddings; returns the same client. Calling it
    again on the same client changes nothing."""
    for path, kind, name, call in _TARGETS:
        resource: Any = client
        try:
            for attr in path:
                resource = getattr(resource, attr)
            original = resource.create
        except AttributeError:
            continue
        if getattr(original, _MARK, False):
            continue
        base_url = str(getattr(client, "base_url", "") or "")
        if inspect.iscoroutinefunction(inspect.unwrap(original)):  # openai's async `create`s are wrapped
            wrapped = _async_wrapper(original, kind, name, call, base_url)
        else:
            wrapped = _sync_wrapper(original, kind, name, call, base_url)
        setattr(wrapped, _MARK, True)
        setattr(resource, "create", wrapped)  # noqa: B010 - an instance attribute shadowing the method
    return client


def _start(kind: SpanKind, name: str, call: str, base_url: str, kwargs: dict[str, Any]) -> Span:
    params = {k: v for k, v in kwargs.items() if k not in _SKIP_PARAMS and not _is_sentinel(v)}
    attributes = {"provider": "openai", "base_url": base_url, **params}
    if call == "chat":
        data: Any = kwargs.get("messages")
    elif call == "completion":
        data = kwargs.get("prompt")
    else:
        data = kwargs.get("input")
    model = kwargs.get("model")
    return Span(
        name,
        kind,
        parent=current_span(),
        input=None if _is_sentinel(data) else data,
        attributes=attributes,
        model=str(model) if isinstance(model, str) else None,
    )


def _is_sentinel(value: Any) -> bool:
    """openai's NOT_GIVEN / omit markers for absent parameters."""
    return type(value).__name__ in ("NotGiven", "Omit")


def _sync_wrapper(original: Callable[..., Any], kind: SpanKind, name: str, call: str, base_url: str) -> Any:
    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        s = _start(kind, name, call, base_url, kwargs)
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            s.end(exc)
            raise
        if inspect.isawaitable(result):  # an async method that did not look like one
            return _finish_later(result, s, call, kwargs)
        if kwargs.get("stream") is True and hasattr(result, "__next__"):
            return TracedStream(result, s, call)
        _record_response(s, call, result)
        s.end()
        return result

    return create


async def _finish_later(awaitable: Any, s: Span, call: str, kwargs: dict[str, Any]) -> Any:
    try:
        result = await awaitable
    except BaseException as exc:
        s.end(exc)
        raise
    if kwargs.get("stream") is True and hasattr(result, "__anext__"):
        return AsyncTracedStream(result, s, call)
    _record_response(s, call, result)
    s.end()
    return result


def _async_wrapper(original: Callable[..., Any], kind: SpanKind, name: str, call: str, base_url: str) -> Any:
    @functools.wraps(original)
    async def create(*args: Any, **kwargs: Any) -> Any:
        s = _start(kind, name, call, base_url, kwargs)
        try:
            awaitable = original(*args, **kwargs)
        except BaseException as exc:
            s.end(exc)
            raise
        return await _finish_later(awaitable, s, call, kwargs)

    return create


def _record_usage(s: Span, usage: Any) -> None:
    if usage is None:
        return
    s.set_usage(
        prompt_tokens=getattr(usage, "prompt_tokens", None) or 0,
        completion_tokens=getattr(usage, "completion_tokens", None) or 0,
    )


def _record_response(s: Span, call: str, response: Any) -> None:
    """Model, usage and output of a whole (not streamed) response; anything unexpected is left out."""
    try:
        model = getattr(response, "model", None)
        if isinstance(model, str) and model:
            s.set_usage(model=model)
        _record_usage(s, getattr(response, "usage", None))
        if call == "embedding":
            data = getattr(response, "data", None) or []
            dims = len(getattr(data[0], "embedding", None) or []) if data else 0
            s.set_output({"vectors": len(data), "dimensions": dims})
            return
        choices = getattr(response, "choices", None)
        if not choices:
            return
        if call == "chat":
            messages = [to_json(c.message) for c in choices]
            s.set_output(messages[0] if len(messages) == 1 else messages)
        else:
            texts = [c.text for c in choices]
            s.set_output(texts[0] if len(texts) == 1 else texts)
        reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
        if reasons:
            s.set_attributes(finish_reason=reasons[0] if len(reasons) == 1 else reasons)
        if getattr(response, "id", None):
            s.set_attributes(response_id=response.id)
    except Exception as exc:  # never let recording break the caller
        s.set_attributes(record_error=repr(exc))


class _Accumulator:
    """Joins a stream's chunks into the output a whole response would have had."""

    def __init__(self, s: Span, call: str):
        self.span = s
        self.call = call
        self.parts: dict[int, list[str]] = {}
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.finish: dict[int, str] = {}
        self.chunks = 0

    def add(self, chunk: Any) -> None:
        try:
            self._add(chunk)
        except Exception as exc:
            self.span.set_attributes(record_error=repr(exc))

    def _add(self, chunk: Any) -> None:
        self.chunks += 1
        model = getattr(chunk, "model", None)
        if isinstance(model, str) and model and self.chunks == 1:
            self.span.set_usage(model=model)
        _record_usage(self.span, getattr(chunk, "usage", None))
        for choice in getattr(chunk, "choices", None) or []:
            index = getattr(choice, "index", 0) or 0
            if self.call == "chat":
                delta = getattr(choice, "delta", None)
                piece = getattr(delta, "content", None)
                calls = getattr(delta, "tool_calls", None) or []
                for call in calls:
                    slot = self.tool_calls.setdefault(index, {}).setdefault(
                        call.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    slot["id"] = call.id or slot["id"]
                    if call.function is not None:
                        slot["function"]["name"] += call.function.name or ""
                        slot["function"]["arguments"] += call.function.arguments or ""
                if piece or calls:
                    self.span.mark_first_token()
            else:
                piece = getattr(choice, "text", None)
                if piece:
                    self.span.mark_first_token()
            if piece:
                self.parts.setdefault(index, []).append(piece)
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self.finish[index] = reason

    def finish_span(self, error: BaseException | None = None, *, complete: bool) -> None:
        s = self.span
        if s.ended:
            return
        indexes = sorted(set(self.parts) | set(self.tool_calls)) or [0]
        outputs: list[Any] = []
        for i in indexes:
            text = "".join(self.parts.get(i, []))
            if self.call == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": text or None}
                if i in self.tool_calls:
                    message["tool_calls"] = [self.tool_calls[i][k] for k in sorted(self.tool_calls[i])]
                outputs.append(message)
            else:
                outputs.append(text)
        s.set_output(outputs[0] if len(outputs) == 1 else outputs)
        reasons = [self.finish[i] for i in sorted(self.finish)]
        attributes: dict[str, Any] = {"stream": True, "chunks": self.chunks}
        if reasons:
            attributes["finish_reason"] = reasons[0] if len(reasons) == 1 else reasons
        if not complete and error is None:
            attributes["stream_incomplete"] = True
        s.set_attributes(attributes)
        s.end(error)


class _StreamWrapper:
    """What both stream wrappers share: the wrapped stream, the span's accumulator, attribute pass-through,
    and ending the span if the wrapper is dropped unfinished."""

    def __init__(self, stream: Any, s: Span, call: str):
        self._stream = stream
        self._acc = _Accumulator(s, call)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        acc = self.__dict__.get("_acc")
        if acc is not None:
            acc.finish_span(complete=False)


class TracedStream(_StreamWrapper):
    """An `openai.Stream` that records its chunks into a span; iterate, close or use it as the original."""

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._stream)
        except StopIteration:
            self._acc.finish_span(complete=True)
            raise
        except BaseException as exc:
            self._acc.finish_span(exc, complete=False)
            raise
        self._acc.add(chunk)
        return chunk

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying stream and end the span."""
        try:
            self._stream.close()
        finally:
            self._acc.finish_span(complete=False)


class AsyncTracedStream(_StreamWrapper):
    """An `openai.AsyncStream` that records its chunks into a span."""

    def __aiter__(self) -> AsyncTracedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._acc.finish_span(complete=True)
            raise
        except BaseException as exc:
            self._acc.finish_span(exc, complete=False)
            raise
        self._acc.add(chunk)
        return chunk

    async def __aenter__(self) -> AsyncTracedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the underlying stream and end the span."""
        try:
            await self._stream.close()
        finally:
            self._acc.finish_span(complete=False)
