"""The tracing SDK against a live server on SQLite and PostgreSQL: decorated functions, coroutines and
generators nest under the right parents (across asyncio tasks, and threads with `propagate`); failures are
recorded and re-raised unchanged; trace fields; `instrument_openai` on real `openai` clients pointed at a
fake upstream (sync, async, streamed), priced from the shipped table; the exporter keeps spans while the
server is away, drops only when full, and flushes at exit."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from sqlalchemy import select

import podium
from podium.core import sdkconfig
from podium.models.prices import lookup_price
from podium.tracing import sdk, sdk_export
from podium.tracing.store import SPAN_KINDS, Span, Trace
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, free_port, serve_for_module
from .fakes import FakeServer, start_fake_openai


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    serving = serve_for_module(backend, tmp_path_factory.mktemp(f"sdk-{backend}"))
    yield next(serving)
    next(serving, None)


@pytest.fixture(autouse=True)
def _send_to_live(live: LiveServer) -> Iterator[None]:
    podium.configure(url=live.url, api_key=live.admin_key, enabled=True, flush_interval=0.2)
    yield
    podium.flush(10)
    sdkconfig.reset()  # later modules' clients resolve their server from the environment again


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    server = start_fake_openai()
    yield server
    server.stop()


def stored_rows(live: LiveServer, trace_id: str) -> list[Span]:
    """A trace's spans in start order, once the SDK and the server's writer have flushed."""
    assert podium.flush(20)
    assert live.app.state.runtime.get(TraceWriter).flush(10)
    with live.platform.db.read_session() as s:
        return list(s.scalars(select(Span).where(Span.trace_id == trace_id).order_by(Span.start_time)))


def stored(live: LiveServer, trace_id: str) -> tuple[Trace, dict[str, Span]]:
    """The trace row and its spans by name (names unique within the trace)."""
    spans = stored_rows(live, trace_id)
    with live.platform.db.read_session() as s:
        trace = s.get(Trace, trace_id)
    assert trace is not None, trace_id
    by_name: dict[str, Span] = {}
    for span in spans:
        assert span.name not in by_name, f"two spans named {span.name}"
        by_name[span.name] = span
    return trace, by_name


def payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def depth(spans: dict[str, Span], name: str) -> int:
    by_id = {s.id: s for s in spans.values()}
    span, n = spans[name], 0
    while span.parent_id is not None:
        span, n = by_id[span.parent_id], n + 1
    return n


# --- nesting, inputs and outputs ------------------------------------------------------------------


@dataclass
class Query:
    text: str
    k: int


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


class Retriever:
    @podium.trace(kind="retriever")
    def search(self, query: Query, extra: Any = None) -> list[str]:
        with podium.span("embed", kind="embedding", input=query.text) as s:
            s.set_output([0.1, 0.2])
        return [f"doc{i}" for i in range(query.k)]


@podium.trace(name="answer", kind="agent")
def answer(question: str, *, top_k: int = 2, **options: Any) -> str:
    docs = Retriever().search(Query(question, top_k), extra={Opaque(), b"raw"} if options else None)
    with podium.span("format", style="short") as s:
        s.set_attributes({"docs": len(docs)}, final=True)
        s.set_output("ok")
    return "answer: " + ", ".join(docs)


def test_nested_spans_get_parents_inputs_and_outputs(live: LiveServer) -> None:
    with podium.span("request", kind="chain") as root:
        result = answer("what?", top_k=3, verbose=True)
        tid = root.trace_id
        assert podium.current_span() is root and podium.current_trace_id() == tid
    assert podium.current_span() is None
    assert result == "answer: doc0, doc1, doc2"
    trace, spans = stored(live, tid)
    assert set(spans) == {"request", "answer", "Retriever.search", "embed", "format"}
    assert trace.span_count == 5 and trace.name == "request" and trace.status == "ok"
    assert spans["request"].parent_id is None
    assert spans["answer"].parent_id == spans["request"].id
    assert spans["Retriever.search"].parent_id == spans["answer"].id
    assert spans["embed"].parent_id == spans["Retriever.search"].id
    assert spans["format"].parent_id == spans["answer"].id
    assert [depth(spans, n) for n in ("request", "answer", "Retriever.search", "embed")] == [0, 1, 2, 3]
    assert spans["answer"].kind == "agent" and spans["Retriever.search"].kind == "retriever"
    assert spans["embed"].kind == "embedding" and spans["format"].kind == "chain"
    # bound arguments by name (keywords flattened, `self` left out); output is the return value
    assert payload(spans["answer"].input) == {"question": "what?", "top_k": 3, "verbose": True}
    assert spans["answer"].output == result
    search_input = payload(spans["Retriever.search"].input)
    assert search_input["query"] == {"text": "what?", "k": 3}
    assert sorted(search_input["extra"]) == ["<3 bytes>", "<Opaque thing>"]
    assert payload(spans["Retriever.search"].output) == ["doc0", "doc1", "doc2"]
    assert spans["embed"].input == "what?" and payload(spans["embed"].output) == [0.1, 0.2]
    assert spans["format"].attributes == {"style": "short", "docs": 3, "final": True}
    for span in spans.values():
        assert span.status == "ok" and span.end_time is not None and span.end_time >= span.start_time
        assert span.id.startswith("spn_")
    assert tid.startswith("trc_")


def test_a_decorated_function_called_alone_is_the_root_of_its_own_trace(live: LiveServer) -> None:
    seen: list[str | None] = []

    @podium.trace
    def alone(x: int) -> int:
        seen.append(podium.current_trace_id())
        return x + 1

    assert alone(1) == 2 and alone(2) == 3
    assert seen[0] != seen[1]
    assert seen[0] is not None
    trace, spans = stored(live, seen[0])
    assert trace.name.endswith("alone") and payload(spans[trace.name].input) == {"x": 1}
    assert spans[trace.name].output == "2"  # JSON text of the return value


# --- asyncio ----------------------------------------------------------------------------------------


@podium.trace(kind="tool")
async def fetch(i: int) -> str:
    await asyncio.sleep(0.01 * (3 - i))  # finish in the reverse order of starting
    with podium.span(f"parse-{i}"):
        await asyncio.sleep(0)
    return f"page{i}"


@podium.trace(name="crawl")
async def crawl(n: int) -> list[str]:
    pages = await asyncio.gather(*(fetch(i) for i in range(n)))
    task = asyncio.create_task(fetch(n))
    return [*pages, await task]


def plain_decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return inner


@podium.trace
@plain_decorator
async def hidden_async(x: int) -> int:
    with podium.span("inside-hidden"):
        await asyncio.sleep(0)
    return x + 1


def test_async_functions_and_gathered_tasks_nest_under_their_caller(live: LiveServer) -> None:
    async def main() -> tuple[str, list[str]]:
        async with podium.span("job") as root:
            assert await hidden_async(1) == 2  # a coroutine behind a plain wrapper is awaited inside its span
            return root.trace_id, await crawl(3)

    tid, pages = asyncio.run(main())
    assert pages == ["page0", "page1", "page2", "page3"]
    rows = stored_rows(live, tid)
    by_id = {r.id: r for r in rows}
    hidden = next(r for r in rows if r.name == "hidden_async")
    assert hidden.output == "2" and by_id[hidden.parent_id].name == "job"
    assert next(r for r in rows if r.name == "inside-hidden").parent_id == hidden.id
    fetch_rows = {payload(r.input)["i"]: r for r in rows if r.name == "fetch"}
    assert sorted(fetch_rows) == [0, 1, 2, 3]
    crawl_row = next(r for r in rows if r.name == "crawl")
    assert by_id[crawl_row.parent_id].name == "job"
    for i, row in fetch_rows.items():
        assert row.parent_id == crawl_row.id and row.kind == "tool" and row.output == f"page{i}"
        parse = next(r for r in rows if r.name == f"parse-{i}")
        assert parse.parent_id == row.id  # each task's inner span under that task's own span
    assert len(rows) == 1 + 2 + 1 + 4 + 4


# --- generators -------------------------------------------------------------------------------------


@podium.trace(kind="retriever")
def numbers(n: int) -> Iterator[int]:
    for i in range(n):
        with podium.span(f"make-{i}"):
            pass
        yield i * 10


@podium.trace
async def anumbers(n: int) -> AsyncIterator[dict[str, int]]:
    for i in range(n):
        async with podium.span(f"amake-{i}"):
            await asyncio.sleep(0)
        yield {"i": i}


@podium.trace
def accumulate() -> Iterator[int]:
    total = 0
    while True:
        sent = yield total
        if sent is None:
            return
        total += sent


def test_generators_span_the_whole_iteration(live: LiveServer) -> None:
    assert inspect.isgeneratorfunction(numbers) and inspect.isasyncgenfunction(anumbers)
    assert inspect.iscoroutinefunction(fetch) and numbers.__name__ == "numbers"
    with podium.span("consumer") as root:
        got = []
        for value in numbers(3):
            with podium.span(f"use-{value}"):  # the consumer's own spans stay outside the generator's
                got.append(value)

        async def consume() -> list[dict[str, int]]:
            return [item async for item in anumbers(2)]

        agot = asyncio.run(consume())
        early = numbers(100)
        assert next(early) == 0
        early.close()  # stopped early: the span ends with what was yielded
        acc = accumulate()
        assert next(acc) == 0 and acc.send(5) == 5 and acc.send(2) == 7  # send() reaches the generator
        with pytest.raises(StopIteration):
            acc.send(None)
    assert got == [0, 10, 20] and agot == [{"i": 0}, {"i": 1}]
    rows = stored_rows(live, root.trace_id)
    by_name: dict[str, list[Span]] = {}
    for r in rows:
        by_name.setdefault(r.name, []).append(r)
    gen_full, gen_early = sorted(by_name["numbers"], key=lambda r: len(payload(r.output)), reverse=True)
    assert payload(gen_full.output) == [0, 10, 20] and gen_full.attributes["yielded"] == 3
    assert payload(gen_early.output) == [0] and gen_early.status == "ok"
    assert gen_full.parent_id == root.id and gen_full.kind == "retriever"
    assert payload(gen_full.input) == {"n": 3}
    for i in range(3):
        makes = by_name[f"make-{i}"]
        assert gen_full.id in {m.parent_id for m in makes}
        assert by_name[f"use-{i * 10}"][0].parent_id == root.id
    agen = by_name["anumbers"][0]
    assert payload(agen.output) == [{"i": 0}, {"i": 1}] and agen.parent_id == root.id
    assert {r.parent_id for r in by_name["amake-0"] + by_name["amake-1"]} == {agen.id}
    assert payload(by_name["accumulate"][0].output) == [0, 5, 7]


# --- threads ----------------------------------------------------------------------------------------


@podium.trace(kind="tool")
def work(i: int) -> int:
    with podium.span(f"step-{i}"):
        return i * i


def test_threads_nest_with_propagate_and_the_traced_executor(live: LiveServer) -> None:
    with podium.span("fan-out") as root:
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(podium.propagate(work), range(4))) == [0, 1, 4, 9]
            assert pool.submit(podium.propagate(work), 4).result() == 16
        with podium.TracedThreadPoolExecutor(2) as traced:
            assert list(traced.map(work, [5, 6])) == [25, 36]
        thread = threading.Thread(target=podium.propagate(work), args=(7,))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(1) as plain:  # without propagation a thread starts a trace of its own
            other = plain.submit(lambda: (work(8), podium.current_trace_id())).result()
    rows = stored_rows(live, root.trace_id)
    works = {payload(r.input)["i"]: r for r in rows if r.name == "work"}
    assert sorted(works) == [0, 1, 2, 3, 4, 5, 6, 7]
    for i, row in works.items():
        assert row.parent_id == root.id
        step = next(r for r in rows if r.name == f"step-{i}")
        assert step.parent_id == row.id
    assert other[1] is None
    assert not any(r.name == "step-8" for r in rows)


# --- failures ---------------------------------------------------------------------------------------


class QuotaError(RuntimeError):
    pass


@podium.trace
def fails(limit: int) -> None:
    raise QuotaError(f"over quota: {limit}")


@podium.trace
async def afails() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


@podium.trace
def gen_fails() -> Iterator[int]:
    yield 1
    raise ValueError("broke mid-way")


def test_errors_are_recorded_and_re_raised_unchanged(live: LiveServer) -> None:
    raised: list[BaseException] = []
    with pytest.raises(QuotaError) as info, podium.span("outer") as root:
        try:
            fails(5)
        except QuotaError as exc:
            raised.append(exc)
        with pytest.raises(KeyError):
            asyncio.run(afails())
        with pytest.raises(ValueError, match="broke mid-way"):
            list(gen_fails())
        with podium.span("guarded"):
            raise raised[0]
    assert info.value is raised[0] and info.value.__traceback__ is not None
    trace, spans = stored(live, root.trace_id)
    assert spans["fails"].status == "error" and spans["fails"].error == "QuotaError: over quota: 5"
    assert spans["fails"].attributes["exception.type"] == "QuotaError"
    assert spans["afails"].status == "error" and spans["afails"].error == "KeyError: 'missing'"
    assert spans["gen_fails"].status == "error" and payload(spans["gen_fails"].output) == [1]
    assert spans["guarded"].status == "error" and spans["outer"].status == "error"
    assert trace.status == "error" and trace.error is not None


# --- trace fields, links, usage ---------------------------------------------------------------------


@podium.trace(tags=["beta"], metadata={"team": "support"})
def handle(ticket: str) -> str:
    podium.update_trace(user_id="u-42", session_id="s-9", tags=["vip", "beta"], metadata={"channel": "mail"})
    with podium.span(
        "draft", kind="llm", prompt_version_id="prv_1", model_version_id="mdl_1", dataset_version_id="dsv_1"
    ) as s:
        s.set_usage(model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=500)
    with podium.span("billed", kind="llm") as s:
        s.set_usage(model="some-local-model", prompt_tokens=5, completion_tokens=5, cost_usd=0.002)
        s.set_links(prompt_version_id="prv_2")
    return "drafted"


def test_update_trace_links_and_usage(live: LiveServer) -> None:
    with podium.span("ticket") as root:
        handle("T-1")
        podium.update_trace(name="support ticket")
    trace, spans = stored(live, root.trace_id)
    assert trace.name == "support ticket" and trace.user_id == "u-42" and trace.session_id == "s-9"
    assert trace.tags == ["beta", "vip"] and trace.meta == {"team": "support", "channel": "mail"}
    draft = spans["draft"]
    assert (draft.prompt_version_id, draft.model_version_id, draft.dataset_version_id) == ("prv_1", "mdl_1", "dsv_1")
    price = lookup_price("gpt-4o-mini")
    assert price is not None
    assert draft.cost_micros == price.cost_micros(1000, 500) == 450
    assert spans["billed"].cost_micros == 2000 and spans["billed"].prompt_version_id == "prv_2"
    assert trace.cost_micros == 2450 and trace.prompt_tokens == 1005 and trace.completion_tokens == 505


def test_update_trace_after_the_root_ended_is_still_sent(live: LiveServer) -> None:
    with podium.span("root") as root:
        late = podium.span("late")  # ends after its parent, as a detached task might
    with late:
        podium.update_trace(user_id="late-user")
    trace, _ = stored(live, root.trace_id)
    assert trace.user_id == "late-user"


# --- instrument_openai ------------------------------------------------------------------------------


def test_instrument_openai_sync_and_streaming(live: LiveServer, upstream: FakeServer) -> None:
    client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="sk-fake", max_retries=0)
    assert podium.instrument_openai(client) is client
    assert podium.instrument_openai(client) is client  # a second call changes nothing
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    with podium.span("chatbot") as root:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0.5)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        done = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say")
        vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "bcd"])
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "fail:500"}])
    assert reply.choices[0].message.content == "echo: hi there" and "".join(pieces) == "echo: hi there"
    assert done.choices[0].text == " completed" and len(vectors.data) == 2
    rows = stored_rows(live, root.trace_id)
    chats = [r for r in rows if r.name == "openai.chat.completions"]
    assert len(chats) == 3
    plain, streamed, failed = chats
    price = lookup_price("gpt-4o-mini")
    assert price is not None
    for span in (plain, streamed):
        assert span.kind == "llm" and span.model == "gpt-4o-mini" and span.parent_id == root.id
        assert (span.prompt_tokens, span.completion_tokens) == (11, 7)
        assert span.cost_micros == price.cost_micros(11, 7) > 0
        assert payload(span.input) == messages
        assert payload(span.output)["content"] == "echo: hi there"
        assert span.attributes["base_url"].startswith(upstream.url)
    assert plain.attributes["temperature"] == 0.5 and plain.attributes["finish_reason"] == "stop"
    assert plain.ttft_ms is None
    assert streamed.attributes["stream"] is True and streamed.ttft_ms is not None
    assert streamed.end_time is not None and streamed.end_time >= streamed.start_time
    assert failed.status == "error" and "InternalServerError" in (failed.error or "")
    completion = next(r for r in rows if r.name == "openai.completions")
    assert completion.kind == "llm" and completion.output == " completed" and completion.input == "say"
    assert (completion.prompt_tokens, completion.completion_tokens) == (3, 1)
    embedding = next(r for r in rows if r.name == "openai.embeddings")
    assert embedding.kind == "embedding" and embedding.prompt_tokens == 2
    assert payload(embedding.output) == {"vectors": 2, "dimensions": 3}
    assert payload(embedding.input) == ["a", "bcd"]
    with live.platform.db.read_session() as s:
        trace = s.get(Trace, root.trace_id)
    assert trace is not None and trace.cost_micros >= 2 * price.cost_micros(11, 7)


def test_instrument_openai_async_clients(live: LiveServer, upstream: FakeServer) -> None:
    async def main() -> tuple[str, list[str]]:
        client = podium.instrument_openai(
            openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="sk-fake", max_retries=0)
        )

        @podium.trace(name="ask", kind="agent")
        async def ask(question: str) -> str:
            r = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
            )
            return r.choices[0].message.content or ""

        async with podium.span("async-bot") as root:
            answers = list(await asyncio.gather(ask("one"), ask("two")))
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "streamed words"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            answers.append(text)
            await client.embeddings.create(model="text-embedding-3-small", input="x")
        await client.close()
        return root.trace_id, answers

    tid, answers = asyncio.run(main())
    assert answers == ["echo: one", "echo: two", "echo: streamed words"]
    rows = stored_rows(live, tid)
    asks = {payload(r.input)["question"]: r for r in rows if r.name == "ask"}
    chats = [r for r in rows if r.name == "openai.chat.completions"]
    assert len(chats) == 3 and sorted(asks) == ["one", "two"]
    for question, ask_row in asks.items():
        (llm,) = [c for c in chats if c.parent_id == ask_row.id]
        assert payload(llm.input) == [{"role": "user", "content": question}]
        assert payload(llm.output)["content"] == f"echo: {question}"
        assert (llm.prompt_tokens, llm.completion_tokens, llm.model) == (11, 7, "gpt-4o-mini")
        assert llm.cost_micros > 0
    streamed = next(c for c in chats if c.attributes.get("stream"))
    assert payload(streamed.output)["content"] == "echo: streamed words" and streamed.completion_tokens == 7
    assert streamed.ttft_ms is not None and streamed.attributes["finish_reason"] == "stop"
    assert any(r.name == "openai.embeddings" and r.kind == "embedding" for r in rows)


def test_an_abandoned_stream_still_ends_its_span(live: LiveServer, upstream: FakeServer) -> None:
    client = podium.instrument_openai(openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0))
    with (
        podium.span("reader") as root,
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c d"}], stream=True
        ) as stream,
    ):
        first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    (span,) = [r for r in stored_rows(live, root.trace_id) if r.name == "openai.chat.completions"]
    assert span.attributes["stream_incomplete"] is True and span.status == "ok"
    assert span.prompt_tokens == 0  # no usage chunk was read


# --- export -----------------------------------------------------------------------------------------


def test_spans_wait_for_an_unreachable_server_and_drop_only_when_full(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    podium.configure(url=dead, max_queue=5, block_seconds=0.05)
    try:
        with podium.span("kept") as root:
            for i in range(3):
                with podium.span(f"child-{i}"):
                    pass
        assert not podium.flush(1)  # nobody answers: the spans stay queued
        assert sdk_export.exporter().stats()["queued"] == 4
        with caplog.at_level(logging.WARNING, logger="podium.sdk"):
            dropped_before = sdk_export.exporter().stats()["dropped"]
            with podium.span("overflow"), podium.span("too-many"):  # the fifth fits; "overflow" does not
                pass
            assert sdk_export.exporter().stats()["dropped"] == dropped_before + 1
        assert "queue full" in caplog.text
    finally:
        podium.configure(url=live.url, max_queue=10_000, block_seconds=0.5)
    _, spans = stored(live, root.trace_id)  # the server is back: the kept spans arrive
    assert set(spans) == {"kept", "child-0", "child-1", "child-2"}


def test_tracing_can_be_turned_off(live: LiveServer) -> None:
    podium.configure(enabled=False)
    try:
        with podium.span("invisible") as s:
            pass
        assert podium.flush(5)
    finally:
        podium.configure(enabled=True)
    with podium.span("visible") as marker:
        pass
    stored(live, marker.trace_id)
    with live.platform.db.read_session() as db:
        assert db.get(Trace, s.trace_id) is None


SCRIPT = """
import sys
import podium

@podium.trace(name="script-main", user_id="from-script")
def main():
    with podium.span("inner", kind="tool"):
        pass
    print(podium.current_trace_id())

main()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "sqlalchemy", "fastapi", "transformers", "openai"})
print(",".join(heavy) or "light")
"""


def test_the_sdk_knows_the_servers_span_kinds() -> None:
    assert set(SPAN_KINDS) == sdk.KINDS


def test_a_script_reads_env_settings_and_flushes_at_exit(live: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "traced.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update(PODIUM_URL=live.url, PODIUM_API_KEY=live.admin_key)
    result = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    tid, heavy = result.stdout.split()
    assert heavy == "light"
    assert result.stderr == ""
    trace, spans = stored(live, tid)
    assert set(spans) == {"script-main", "inner"} and trace.user_id == "from-script"
