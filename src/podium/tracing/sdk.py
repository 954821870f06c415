"""The tracing SDK: `@podium.trace`, `with podium.span(...)`, `podium.update_trace(...)`.

Spans nest through a context variable: within a thread, and across asyncio tasks without help (a task
starts with a copy of its creator's context). A thread does not inherit its starter's context: wrap the
function it runs with `propagate(fn)`, or use `TracedThreadPoolExecutor`, and its spans nest under the
span that was current where `propagate` was called::

    with podium.span("fan-out"):
        with ThreadPoolExecutor() as pool:
            list(pool.map(podium.propagate(work), items))

Spans made by `@podium.trace` and `podium.span` are of kind "chain" unless told otherwise.
Finished spans go to a background exporter (`sdk_export`) that ships them to the server in batches;
`podium.flush()` sends what is queued, and an `atexit` hook does the same at exit. Inputs and outputs are
copied into JSON-safe values when recorded (anything else becomes its `repr`), with large values capped.
Tracing never changes what the traced code returns or raises.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from itertools import islice
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from podium.core.ids import new_id
from podium.tracing import sdk_export
from podium.tracing.kinds import SPAN_KINDS, SpanKind

log = logging.getLogger("podium.sdk")

KINDS = frozenset(SPAN_KINDS)
MAX_STRING = 100_000  # characters kept of one string in an input or output
MAX_ITEMS = 1_000  # items kept of one list or mapping
MAX_DEPTH = 12
MAX_YIELDED = 100  # items of a generator's output kept
MAX_NAME = 200

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


# --- JSON-safe copies -------------------------------------------------------------------------------


def to_json(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of `value`: containers copied (capped), known types converted, others `repr`ed."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else value[:MAX_STRING] + f"…[{len(value) - MAX_STRING} more]"
    if depth >= MAX_DEPTH:
        return _repr(value)
    if isinstance(value, Mapping):
        out = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more"
                break
            out[k if isinstance(k, str) else str(k)] = to_json(v, depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_json(v, depth + 1) for v in islice(value, MAX_ITEMS)]
        if len(value) > MAX_ITEMS:
            items.append(f"…{len(value) - MAX_ITEMS} more")
        return items
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_json(value.value, depth + 1)
    dump = getattr(value, "model_dump", None)  # pydantic models (the openai SDK's types among them)
    if callable(dump) and not isinstance(value, type):
        try:
            return to_json(dump(mode="json", exclude_none=True), depth + 1)
        except Exception:
            return _repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name, None), depth + 1) for f in dataclasses.fields(value)}
    return _repr(value)


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} (repr failed)>"
    return text if len(text) <= 1000 else text[:1000] + "…"


def _error_text(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --- traces and spans -------------------------------------------------------------------------------


class _TraceState:
    """What belongs to the trace rather than a span (name, user, session, tags, metadata), shared by its
    spans in this process; the root span carries it, or a later span if it changes after the root ended."""

    def __init__(self, trace_id: str):
        self.id = trace_id
        self.name: str | None = None
        self.user_id: str | None = None
        self.session_id: str | None = None
        self.tags: list[str] = []
        self.metadata: dict[str, Any] = {}
        self.root_ended = False
        self.changed = False
        self._lock = threading.Lock()

    def update(
        self,
        *,
        name: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        with self._lock:
            if name is not None:
                self.name = str(name)[:MAX_NAME]
            if user_id is not None:
                self.user_id = str(user_id)[:MAX_NAME]
            if session_id is not None:
                self.session_id = str(session_id)[:MAX_NAME]
            for tag in tags or ():
                if str(tag) not in self.tags:
                    self.tags.append(str(tag))
            if metadata:
                self.metadata.update(to_json(dict(metadata)))
            self.changed = True

    def fields(self, *, root: bool) -> dict[str, Any]:
        """The trace-level fields a span should carry (none for most non-root spans)."""
        with self._lock:
            if root:
                self.root_ended = True
            elif not (self.root_ended and self.changed):
                return {}
            self.changed = False
            out: dict[str, Any] = {
                "trace_name": self.name,
                "user_id": self.user_id,
                "session_id": self.session_id,
                "tags": list(self.tags) or None,
                "metadata": dict(self.metadata) or None,
            }
        return {k: v for k, v in out.items() if v is not None}


_CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar("podium_span", default=None)


class Span:
    """A span being recorded. Started when made; `end()` (or leaving its `with` block) sends it.

    As a context manager (`with` or `async with`) it is also the current span, so spans started inside
    it become its children."""

    def __init__(
        self,
        name: str,
        kind: SpanKind = "other",
        *,
        parent: Span | None = None,
        input: Any = None,
        attributes: Mapping[str, Any] | None = None,
        model: str | None = None,
        prompt_version_id: str | None = None,
        model_version_id: str | None = None,
        dataset_version_id: str | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"span kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
        self.id = new_id("spn")
        self.parent = parent
        self.parent_id = parent.id if parent is not None else None
        self.trace: _TraceState = parent.trace if parent is not None else _TraceState(new_id("trc"))
        self.name = str(name)[:MAX_NAME]
        self.kind: SpanKind = kind
        self.start_time = datetime.now(UTC)
        self._t0 = time.perf_counter()
        self.input = to_json(input)
        self.output: Any = None
        self.attributes: dict[str, Any] = to_json(dict(attributes)) if attributes else {}
        self.model = model
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd: float | None = None
        self.ttft_ms: float | None = None
        self.prompt_version_id = prompt_version_id
        self.model_version_id = model_version_id
        self.dataset_version_id = dataset_version_id
        self.status: Literal["ok", "error"] = "ok"
        self.error: str | None = None
        self.ended = False
        self._tokens: list[contextvars.Token[Span | None]] = []

    def __repr__(self) -> str:
        return f"<Span {self.name!r} {self.kind} {self.id} in {self.trace_id}>"

    @property
    def trace_id(self) -> str:
        """The id of the trace this span belongs to."""
        return self.trace.id

    # -- recording -----------------------------------------------------------------------------
    def set_input(self, value: Any) -> None:
        """Record the span's input (copied now, JSON-safe)."""
        self.input = to_json(value)

    def set_output(self, value: Any) -> None:
        """Record the span's output (copied now, JSON-safe)."""
        self.output = to_json(value)

    def set_attributes(self, attributes: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Add attributes (a mapping and/or keywords); later values replace earlier ones."""
        for key, value in {**(attributes or {}), **more}.items():
            self.attributes[str(key)] = to_json(value)

    def set_usage(
        self,
        *,
        model: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cost_usd: float | None = None,
    ) -> None:
        """Record the model and token usage; without `cost_usd` the server prices known models itself."""
        if model is not None:
            self.model = str(model)[:MAX_NAME]
        if prompt_tokens is not None:
            self.prompt_tokens = max(0, int(prompt_tokens))
        if completion_tokens is not None:
            self.completion_tokens = max(0, int(completion_tokens))
        if cost_usd is not None:
            self.cost_usd = max(0.0, float(cost_usd))

    def set_links(
        self,
        *,
        prompt_version_id: str | None = None,
        model_version_id: str | None = None,
        dataset_version_id: str | None = None,
    ) -> None:
        """Link the span to the prompt, model and dataset versions behind it (lineage)."""
        if prompt_version_id is not None:
            self.prompt_version_id = prompt_version_id
        if model_version_id is not None:
            self.model_version_id = model_version_id
        if dataset_version_id is not None:
            self.dataset_version_id = dataset_version_id

    def set_error(self, error: BaseException | str) -> None:
        """Mark the span failed, with an exception (its type and message) or a message."""
        self.status = "error"
        if isinstance(error, BaseException):
            self.error = _error_text(error)
            self.attributes["exception.type"] = type(error).__name__
            self.attributes["exception.message"] = to_json(str(error))
        else:
            self.error = str(error)

    def mark_first_token(self) -> None:
        """Record the time to first token (the first call counts)."""
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self._t0) * 1000

    def end(self, error: BaseException | None = None) -> None:
        """Finish the span (once; later calls do nothing) and queue it for export."""
        if self.ended:
            return
        if error is not None and not isinstance(error, GeneratorExit):
            self.set_error(error)
        self.ended = True
        end_time = self.start_time + timedelta(seconds=time.perf_counter() - self._t0)
        sdk_export.exporter().submit(self._payload(end_time))

    def _payload(self, end_time: datetime) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "trace_id": self.trace.id,
            "parent_id": self.parent_id,
            "kind": self.kind,
            "name": self.name,
            "start_time": self.start_time.isoformat(),
            "end_time": end_time.isoformat(),
            "status": self.status,
            "error": self.error,
            "input": self.input,
            "output": self.output,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "ttft_ms": self.ttft_ms,
            "prompt_version_id": self.prompt_version_id,
            "model_version_id": self.model_version_id,
            "dataset_version_id": self.dataset_version_id,
            "attributes": self.attributes,
        }
        data = {k: v for k, v in data.items() if v is not None}
        data.update(self.trace.fields(root=self.parent_id is None))
        return data

    # -- as the current span -------------------------------------------------------------------
    def _activate(self) -> None:
        self._tokens.append(_CURRENT.set(self))

    def _deactivate(self) -> None:
        token = self._tokens.pop() if self._tokens else None
        try:
            if token is None:
                raise ValueError
            _CURRENT.reset(token)
        except ValueError:  # entered in another context (e.g. another task): just restore the parent
            _CURRENT.set(self.parent)

    def __enter__(self) -> Span:
        self._activate()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._deactivate()
        self.end(exc)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def current_span() -> Span | None:
    """The span code runs inside, if any."""
    return _CURRENT.get()


def current_trace_id() -> str | None:
    """The id of the trace code runs inside, if any."""
    span = _CURRENT.get()
    return span.trace_id if span is not None else None


def span(
    name: str,
    kind: SpanKind = "chain",
    *,
    input: Any = None,
    model: str | None = None,
    prompt_version_id: str | None = None,
    model_version_id: str | None = None,
    dataset_version_id: str | None = None,
    **attributes: Any,
) -> Span:
    """A span under the current one (or the root of a new trace); use it as `with` / `async with`::

    with podium.span("retrieve", kind="retriever", top_k=5) as s:
        s.set_output(docs)
    """
    return Span(
        name,
        kind,
        parent=_CURRENT.get(),
        input=input,
        attributes=attributes,
        model=model,
        prompt_version_id=prompt_version_id,
        model_version_id=model_version_id,
        dataset_version_id=dataset_version_id,
    )


def update_trace(
    *,
    name: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Set fields of the current trace: its name, user, session; `tags` are added, `metadata` merged."""
    current = _CURRENT.get()
    if current is None:
        log.warning("podium.update_trace() called outside any span; nothing to update")
        return
    current.trace.update(name=name, user_id=user_id, session_id=session_id, tags=tags, metadata=metadata)


# --- the decorator ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Options:
    name: str | None
    kind: SpanKind
    tags: tuple[str, ...] | None
    metadata: Mapping[str, Any] | None
    user_id: str | None
    session_id: str | None
    capture_input: bool
    capture_output: bool


@overload
def trace(func: F, /) -> F: ...


@overload
def trace(
    func: None = None,
    /,
    *,
    name: str | None = None,
    kind: SpanKind = "chain",
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> Callable[[F], F]: ...


def trace(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    kind: SpanKind = "chain",
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> F | Callable[[F], F]:
    """Record each call of a function as a span: bare (`@podium.trace`) or with options
    (`@podium.trace(name=..., kind="tool")`). Works on functions, coroutines, generators and async
    generators (their span lasts the whole iteration; the output is the yielded items, capped). Inputs
    are the bound arguments; an exception marks the span failed and propagates unchanged. `tags`,
    `metadata`, `user_id` and `session_id` apply to the trace the call belongs to."""
    if kind not in KINDS:
        raise ValueError(f"span kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
    options = _Options(
        name, kind, tuple(tags) if tags else None, metadata, user_id, session_id, capture_input, capture_output
    )
    if func is None:
        return lambda f: _decorate(f, options)
    return _decorate(func, options)


def _decorate(func: F, options: _Options) -> F:
    name = str(options.name or getattr(func, "__qualname__", None) or getattr(func, "__name__", "call"))
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None

    def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
        s = Span(
            name,
            options.kind,
            parent=_CURRENT.get(),
            input=_arguments(signature, args, kwargs) if options.capture_input else None,
        )
        if options.tags or options.metadata or options.user_id or options.session_id:
            s.trace.update(
                tags=options.tags, metadata=options.metadata, user_id=options.user_id, session_id=options.session_id
            )
        return s

    def output(s: Span, value: Any) -> None:
        if options.capture_output:
            s.set_output(value)

    # The wrappers keep the function's nature (generator function, coroutine function...) for the
    # frameworks that look at it; a generator's span starts with its first step.
    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(func):
        wrapper = _traced_agen_function(func, start, options.capture_output)

    elif inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            return (yield from _traced_gen(start(args, kwargs), func(*args, **kwargs), options.capture_output))

    elif inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with start(args, kwargs) as s:
                result = await func(*args, **kwargs)
                output(s, result)
                return result

    else:

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            s = start(args, kwargs)
            s._activate()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                s._deactivate()
                s.end(exc)
                raise
            s._deactivate()
            if inspect.iscoroutine(result):  # an async function behind a plain decorator: trace the await
                return _awaited(s, result, output)
            output(s, result)
            s.end()
            return result

    return cast(F, wrapper)


async def _awaited(s: Span, coro: Any, output: Callable[[Span, Any], None]) -> Any:
    """Await `coro` with `s` current, then end `s`."""
    with s:
        result = await coro
        output(s, result)
        return result


def _arguments(signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The call's arguments by parameter name (`self` and `cls` left out), JSON-safe."""
    if signature is None:
        return to_json({"args": args, "kwargs": kwargs})
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:  # the call itself will fail the same way; record what was passed
        return to_json({"args": args, "kwargs": kwargs})
    out: dict[str, Any] = {}
    for i, (key, value) in enumerate(bound.arguments.items()):
        if i == 0 and key in ("self", "cls"):
            continue
        param = signature.parameters[key]
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[key] = value
    return to_json(out)


class _Yielded:
    """A generator's yielded items as its output: the first MAX_YIELDED, and the count."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.items: list[Any] = []
        self.count = 0

    def add(self, item: Any) -> None:
        self.count += 1
        if self.keep and len(self.items) < MAX_YIELDED:
            self.items.append(to_json(item))

    def finish(self, s: Span) -> None:
        if self.keep:
            s.output = self.items
        s.attributes["yielded"] = self.count


def _traced_gen(s: Span, gen: Generator[Any, Any, Any], keep: bool) -> Generator[Any, Any, Any]:
    """Drive `gen` with `s` current while it runs; `s` ends when it finishes, fails or is closed."""
    yielded = _Yielded(keep)
    method, value = "send", None
    while True:
        token = _CURRENT.set(s)
        try:
            item = gen.send(value) if method == "send" else gen.throw(cast(BaseException, value))
        except StopIteration as stop:
            yielded.finish(s)
            s.end()
            return stop.value
        except BaseException as exc:
            yielded.finish(s)
            s.end(exc)
            raise
        finally:
            _CURRENT.reset(token)
        yielded.add(item)
        try:
            value = yield item
            method = "send"
        except GeneratorExit:
            gen.close()
            yielded.finish(s)
            s.end()
            raise
        except BaseException as exc:
            method, value = "throw", exc


def _traced_agen_function(
    func: Callable[..., AsyncIterator[Any]], start: Callable[[tuple[Any, ...], dict[str, Any]], Span], keep: bool
) -> Callable[..., AsyncIterator[Any]]:
    """An async generator function running `func`'s generator as `_traced_gen` runs a generator (async
    generators cannot delegate with `yield from`, so the loop is here)."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        s = start(args, kwargs)
        gen = cast(Any, func(*args, **kwargs))
        yielded = _Yielded(keep)
        method, value = "send", None
        while True:
            token = _CURRENT.set(s)
            try:
                if method == "send":
                    item = await gen.asend(value)
                else:
                    item = await gen.athrow(value)
            except StopAsyncIteration:
                yielded.finish(s)
                s.end()
                return
            except BaseException as exc:
                yielded.finish(s)
                s.end(exc)
                raise
            finally:
                _CURRENT.reset(token)
            yielded.add(item)
            try:
                value = yield item
                method = "send"
            except GeneratorExit:
                await gen.aclose()
                yielded.finish(s)
                s.end()
                raise
            except BaseException as exc:
                method, value = "throw", exc

    return wrapper


# --- threads ----------------------------------------------------------------------------------------


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` bound to the current context (the current span among it), for running in another thread:
    `pool.submit(podium.propagate(fn), x)`, `threading.Thread(target=podium.propagate(fn))`. The wrapper
    may be called many times, concurrently too: each call runs in its own copy of the captured context."""
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


class TracedThreadPoolExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose tasks (`submit`, `map`) run in the submitter's context, so their spans
    nest under the span current at submission."""

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule `fn(*args, **kwargs)` in the submitter's context."""
        return super().submit(propagate(fn), *args, **kwargs)


# --- export settings --------------------------------------------------------------------------------


def configure(
    *,
    url: str | None = None,
    api_key: str | None = None,
    enabled: bool | None = None,
    flush_interval: float | None = None,
    batch_size: int | None = None,
    max_queue: int | None = None,
    block_seconds: float | None = None,
) -> None:
    """Where spans go and how: server `url` and `api_key` (default: `PODIUM_URL`, `PODIUM_API_KEY`,
    podium.toml, `<home>/admin.key`), `enabled` (default true; `PODIUM_TRACING_ENABLED=0` turns it off),
    seconds between sends, spans per request, spans buffered, and seconds a producer may wait for room."""
    sdk_export.configure(
        url=url,
        api_key=api_key,
        enabled=enabled,
        flush_interval=flush_interval,
        batch_size=batch_size,
        max_queue=max_queue,
        block_seconds=block_seconds,
    )


def flush(timeout: float = 10.0) -> bool:
    """Send every finished span to the server now; True if all were sent (or refused) within `timeout`."""
    return sdk_export.exporter().flush(timeout)
