"""OTLP/HTTP at `/v1/traces` on SQLite and PostgreSQL: the real OpenTelemetry SDK and its OTLP/HTTP exporter
(protobuf, gzip) and hand-written OTLP/JSON land as Podium traces, with the GenAI (`gen_ai.*`) and
OpenInference attributes mapped to kinds, models, tokens, payloads, sessions and users; malformed bodies are
refused with the reason; `export_traces` sends stored traces to another live Podium over real HTTP, and retries
a busy collector (a loopback server) as its `Retry-After` asks."""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import select

from podium.core.retry import Backoff
from podium.tracing.ingest import ARTIFACT_KEY
from podium.tracing.otlp import export as otlp_export
from podium.tracing.otlp.export import ExportFailed, export_traces
from podium.tracing.store import Span, Trace
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, free_port, serve_for_module
from .scripted import Answer, scripted_server

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    serving = serve_for_module(backend, tmp_path_factory.mktemp(f"otlp-{backend}"))
    yield next(serving)
    next(serving, None)


@pytest.fixture(scope="module")
def other(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A second Podium, the target of exports."""
    serving = serve_for_module(backend, tmp_path_factory.mktemp(f"otlp-other-{backend}"))
    yield next(serving)
    next(serving, None)


def stored(live: LiveServer, trace_id: str) -> tuple[Trace, dict[str, Span]]:
    assert live.app.state.runtime.get(TraceWriter).flush(10)
    with live.platform.db.read_session() as s:
        trace = s.get(Trace, trace_id)
        assert trace is not None, f"trace {trace_id} not stored"
        spans = {sp.id: sp for sp in s.scalars(select(Span).where(Span.trace_id == trace_id))}
    return trace, spans


def provider(live: LiveServer, service: str, **exporter: Any) -> TracerProvider:
    """A real SDK TracerProvider exporting each span (OTLP/HTTP protobuf) to `live` as it ends."""
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    headers = {"Authorization": f"Bearer {live.admin_key}"}
    tp.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{live.url}/v1/traces", headers=headers, **exporter))
    )
    return tp


def hex_ids(span: Any) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def post_json(live: LiveServer, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with live.client() as c:
        return c.post("/v1/traces", content=content, headers={"content-type": "application/json", **headers})


def attr(key: str, value: Any) -> dict[str, Any]:
    """An OTLP/JSON KeyValue."""
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}  # int64 as a string, as OTLP/JSON writes it
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, list):
        v = {"arrayValue": {"values": [attr("", x)["value"] for x in value]}}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def json_span(trace: str, sid: str, parent: str = "", at: float = 0, dur: float = 1, **extra: Any) -> dict[str, Any]:
    start = T0_NS + int(at * 1e9)
    return {
        "traceId": trace,
        "spanId": sid,
        "parentSpanId": parent,
        "name": extra.pop("name", sid),
        "kind": extra.pop("kind", 1),
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(dur * 1e9)),
        "attributes": [attr(k, v) for k, v in extra.pop("attributes", {}).items()],
        **extra,
    }


def otlp_json(spans: list[dict[str, Any]], service: str = "json-app") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", service), attr("deployment.environment", "test")]},
                "scopeSpans": [{"scope": {"name": "handmade", "version": "0.1"}, "spans": spans}],
            }
        ]
    }


def test_the_sdk_exporter_sends_nested_gen_ai_spans(live: LiveServer) -> None:
    tp = provider(live, "support-bot")
    tracer = tp.get_tracer("acme.agent", "1.2")
    messages = [{"role": "user", "parts": [{"type": "text", "content": "where is my parcel?"}]}]
    with tracer.start_as_current_span(
        "invoke_agent support",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-1", "user.id": "u-9"},
    ) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 500,
                "gen_ai.input.messages": json.dumps(messages),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": []}]),
            },
        ) as llm:
            pass
        with tracer.start_as_current_span(
            "execute_tool track", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "track"}
        ) as tool:
            tool.set_status(Status(StatusCode.ERROR, "tracking service timed out"))
        with tracer.start_as_current_span(
            "embeddings",
            attributes={
                "gen_ai.operation.name": "embeddings",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 12,
            },
        ) as emb:
            pass
        with tracer.start_as_current_span("plain step") as plain:
            pass
    tp.shutdown()

    tid, root_id = hex_ids(root)
    trace, spans = stored(live, tid)
    ids = {name: hex_ids(s)[1] for name, s in (("llm", llm), ("tool", tool), ("emb", emb), ("plain", plain))}
    assert set(spans) == {root_id, *ids.values()} and trace.span_count == 5
    assert {spans[i].parent_id for i in ids.values()} == {root_id} and spans[root_id].parent_id is None
    assert [spans[ids[n]].kind for n in ("llm", "tool", "emb", "plain")] == ["llm", "tool", "embedding", "other"]
    assert spans[root_id].kind == "agent"

    chat = spans[ids["llm"]]
    assert chat.model == "gpt-4o-mini" and chat.prompt_tokens == 1000 and chat.completion_tokens == 500
    assert chat.cost_micros == 150 + 300  # the shipped price table: $0.15 / $0.60 per 1M tokens
    assert orjson.loads(chat.input) == messages
    assert orjson.loads(chat.output) == [{"role": "assistant", "parts": []}]
    a = chat.attributes
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.operation.name"] == "chat"
    assert a["service.name"] == "support-bot" and a["otel.scope.name"] == "acme.agent"
    assert a["otel.scope.version"] == "1.2" and a["otel.span_kind"] == "client"
    for used in ("gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.input.messages"):
        assert used not in a
    assert chat.start_time == datetime.fromtimestamp(llm.start_time // 1000 / 1e6, UTC)
    assert chat.end_time is not None and chat.end_time >= chat.start_time

    assert spans[ids["tool"]].status == "error" and spans[ids["tool"]].error == "tracking service timed out"
    assert spans[ids["emb"]].model == "text-embedding-3-small" and spans[ids["emb"]].prompt_tokens == 12

    assert trace.name == "invoke_agent support" and trace.source == "otlp"
    assert trace.session_id == "conv-1" and trace.user_id == "u-9"
    assert trace.prompt_tokens == 1012 and trace.completion_tokens == 500
    assert trace.status == "error" and trace.error == "tracking service timed out"
    assert trace.latency_ms is not None and trace.latency_ms >= 0


def test_otlp_json_with_hex_ids_legacy_attributes_and_events(live: LiveServer) -> None:
    tid = "5b8efff798038103d269b633813fc60c"
    root, child = "eee19b7ec3c1b174", "eee19b7ec3c1b173"
    link_trace = "0af7651916cd43dd8448eb211c80319c"
    body = otlp_json(
        [
            json_span(
                tid,
                child,
                root,
                at=1,
                kind=3,
                name="chat claude",
                attributes={
                    "gen_ai.system": "anthropic",
                    "gen_ai.request.model": "claude-3-5-haiku",
                    "gen_ai.usage.prompt_tokens": 40,
                    "gen_ai.usage.completion_tokens": 7,
                    "gen_ai.request.stop_sequences": ["END", "STOP"],
                    "llm.request.type": "chat",
                    "gen_ai.conversation.id": "conv-json",
                },
                events=[
                    {
                        "timeUnixNano": str(T0_NS + 1_100_000_000),
                        "name": "gen_ai.user.message",
                        "attributes": [attr("content", "hello?")],
                    },
                    {
                        "timeUnixNano": str(T0_NS + 1_900_000_000),
                        "name": "gen_ai.choice",
                        "attributes": [
                            attr("index", 0),
                            attr("finish_reason", "stop"),
                            attr("message", '{"role": "assistant", "content": "hi!"}'),
                        ],
                    },
                    {"timeUnixNano": str(T0_NS + 1_500_000_000), "name": "retry", "attributes": [attr("n", 2)]},
                ],
                links=[{"traceId": link_trace, "spanId": "00f067aa0ba902b7"}],
            ),
            json_span(
                tid,
                root,
                dur=3,
                name="answer",
                attributes={
                    "gen_ai.prompt": "say hi",
                    "gen_ai.completion": "hi!",
                    "enduser.id": "u-json",
                    "traceloop.span.kind": "workflow",
                },
                status={"code": 2, "message": "the user left"},
            ),
        ]
    )
    r = post_json(live, body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json() == {}, r.text
    trace, spans = stored(live, tid)
    assert set(spans) == {root, child} and spans[child].parent_id == root
    c = spans[child]
    assert c.kind == "llm" and c.model == "claude-3-5-haiku" and (c.prompt_tokens, c.completion_tokens) == (40, 7)
    assert orjson.loads(c.input) == [{"role": "user", "content": "hello?"}]
    assert orjson.loads(c.output) == [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi!"}}
    ]
    assert c.attributes["gen_ai.request.stop_sequences"] == ["END", "STOP"]
    assert c.attributes["service.name"] == "json-app" and c.attributes["deployment.environment"] == "test"
    assert c.attributes["otel.events"] == [
        {"name": "retry", "time": (T0 + timedelta(seconds=1.5)).isoformat(), "attributes": {"n": 2}}
    ]
    assert c.attributes["otel.links"] == [{"trace_id": link_trace, "span_id": "00f067aa0ba902b7"}]
    assert c.start_time == T0 + timedelta(seconds=1) and c.end_time == T0 + timedelta(seconds=2)
    r_ = spans[root]
    assert r_.kind == "chain" and r_.input == "say hi" and r_.output == "hi!"
    assert r_.status == "error" and r_.error == "the user left"
    assert trace.name == "answer" and trace.user_id == "u-json" and trace.session_id == "conv-json"
    assert trace.input == "say hi" and trace.output == "hi!"
    assert trace.start_time == T0 and trace.latency_ms == pytest.approx(3000)


def test_openinference_attributes(live: LiveServer) -> None:
    tp = provider(live, "rag-app")
    tracer = tp.get_tracer("openinference.instrumentation.test")
    kinds = ["RETRIEVER", "RERANKER", "EMBEDDING", "TOOL", "AGENT", "GUARDRAIL", "EVALUATOR", "UNKNOWN"]
    with tracer.start_as_current_span("rag query") as root:
        root.set_attributes(
            {
                "openinference.span.kind": "CHAIN",
                "input.value": '{"question": "what is OTLP?"}',
                "input.mime_type": "application/json",
                "output.value": "a protocol",
                "session.id": "sess-oi",
                "user.id": "u-oi",
                "tag.tags": ["docs", "beta"],
                "metadata": '{"team": "search", "tier": 2}',
            }
        )
        with tracer.start_as_current_span("llm") as llm:
            llm.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o",
                    "llm.token_count.prompt": 200,
                    "llm.token_count.completion": 20,
                    "llm.token_count.total": 220,
                    "llm.input_messages.0.message.role": "system",
                    "llm.input_messages.0.message.content": "be brief",
                    "llm.input_messages.1.message.role": "user",
                    "llm.input_messages.1.message.content": "what is OTLP?",
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": "a protocol",
                    "llm.invocation_parameters": '{"temperature": 0}',
                }
            )
        others = []
        for kind in kinds:
            with tracer.start_as_current_span(kind.lower(), attributes={"openinference.span.kind": kind}) as s:
                others.append(s)
    tp.shutdown()

    tid, root_id = hex_ids(root)
    trace, spans = stored(live, tid)
    r = spans[root_id]
    assert r.kind == "chain" and orjson.loads(r.input) == {"question": "what is OTLP?"} and r.output == "a protocol"
    assert "input.mime_type" not in r.attributes and "tag.tags" not in r.attributes
    assert trace.session_id == "sess-oi" and trace.user_id == "u-oi" and trace.tags == ["docs", "beta"]
    assert trace.meta == {"team": "search", "tier": 2}
    s = spans[hex_ids(llm)[1]]
    assert s.kind == "llm" and s.model == "gpt-4o" and (s.prompt_tokens, s.completion_tokens) == (200, 20)
    assert orjson.loads(s.input) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is OTLP?"},
    ]
    assert orjson.loads(s.output) == [{"role": "assistant", "content": "a protocol"}]
    assert s.attributes["llm.token_count.total"] == 220 and s.attributes["llm.invocation_parameters"]
    assert not any(k.startswith("llm.input_messages") for k in s.attributes)
    got = [spans[hex_ids(o)[1]].kind for o in others]
    assert got == ["retriever", "retriever", "embedding", "tool", "agent", "guardrail", "evaluator", "other"]


def test_a_gzipped_body_from_the_sdk_exporter_and_from_httpx(live: LiveServer) -> None:
    tp = provider(live, "gz", compression=Compression.Gzip)
    with tp.get_tracer("gz").start_as_current_span("zipped", attributes={"gen_ai.operation.name": "chat"}) as sp:
        pass
    tp.shutdown()
    tid, sid = hex_ids(sp)
    _, spans = stored(live, tid)
    assert spans[sid].kind == "llm" and spans[sid].name == "zipped"

    tid2, sid2 = "1" * 32, "2" * 16
    r = post_json(live, gzip.compress(orjson.dumps(otlp_json([json_span(tid2, sid2)]))), **{"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert list(stored(live, tid2)[1]) == [sid2]


def test_a_span_whose_parent_never_arrives_is_kept(live: LiveServer) -> None:
    tid, sid, ghost = "a" * 31 + "1", "b" * 15 + "1", "c" * 16
    assert post_json(live, otlp_json([json_span(tid, sid, ghost, name="orphan")])).status_code == 200
    trace, spans = stored(live, tid)
    assert spans[sid].parent_id == ghost and trace.name == "" and trace.span_count == 1


def test_spans_that_cannot_be_taken_are_counted_in_partial_success(live: LiveServer) -> None:
    tid = "d" * 32
    good = json_span(tid, "e" * 16)
    zero_trace = json_span("0" * 32, "f" * 16)
    no_start = json_span(tid, "1" * 15 + "f", startTimeUnixNano="0")
    r = post_json(live, otlp_json([good, zero_trace, no_start]))
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "trace_id must be 16 bytes" in partial["errorMessage"] and "start_time" in partial["errorMessage"]
    assert list(stored(live, tid)[1]) == ["e" * 16]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "words"),
    [
        ("application/x-protobuf", b"\x0a\xff\xff\xff\x0f", 400, "not a valid OTLP ExportTraceServiceRequest protobuf"),
        ("application/json", b"{nope", 400, "not valid JSON"),
        ("application/json", b"[1, 2]", 400, "resourceSpans"),
        ("application/json", b'{"resourceSpans": "many"}', 400, "OTLP/JSON"),
        (
            "application/json",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"endTimeUnixNano": "soon"}]}]}]}',
            400,
            "endTimeUnixNano",
        ),
        ("text/plain", b"hello", 415, "application/x-protobuf"),
    ],
)
def test_malformed_otlp_is_refused_with_the_reason(
    live: LiveServer, content_type: str, body: bytes, status: int, words: str
) -> None:
    with live.client() as c:
        r = c.post("/v1/traces", content=body, headers={"content-type": content_type})
    assert r.status_code == status and words in r.json()["error"]["message"], r.text


def test_a_bad_gzip_body_and_an_unknown_encoding_are_refused(live: LiveServer) -> None:
    r = post_json(live, b"not gzip at all", **{"content-encoding": "gzip"})
    assert r.status_code == 400 and "not valid gzip" in r.json()["error"]["message"]
    assert r.json()["error"]["type"] == "invalid_request_error", "a /v1 error is in OpenAI's shape"
    r = post_json(live, gzip.compress(b"{}")[:-6], **{"content-encoding": "gzip"})
    assert r.status_code == 400 and "truncated" in r.json()["error"]["message"]
    r = post_json(live, b"{}", **{"content-encoding": "br"})
    assert r.status_code == 400 and "'br' is not supported" in r.json()["error"]["message"]
    bomb = gzip.compress(b" " * (live.settings.max_body_bytes + 1))  # small on the wire, over the limit inflated
    r = post_json(live, bomb, **{"content-encoding": "gzip"})
    assert r.status_code == 413 and "decompressed body is larger" in r.json()["error"]["message"]


def test_a_protobuf_request_gets_a_protobuf_answer_and_keys_are_checked(live: LiveServer) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    empty = ExportTraceServiceRequest().SerializeToString()
    with live.client() as c:
        r = c.post("/v1/traces", content=empty, headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf" and r.content == b""
    with httpx.Client(base_url=live.url) as anonymous:
        r = anonymous.post("/v1/traces", content=empty, headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 401
    with live.client() as c:
        viewer = c.post("/api/keys", json={"name": "otlp-viewer", "role": "viewer"}).json()["key"]
    with live.client(viewer) as c:
        r = c.post("/v1/traces", content=empty, headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 403


def test_export_to_another_podium_keeps_ids_and_attributes(live: LiveServer, other: LiveServer) -> None:
    # one trace from OpenTelemetry (hex ids) ...
    tp = provider(live, "exported-app")
    tracer = tp.get_tracer("acme.export", "3.0")
    with (
        tracer.start_as_current_span(
            "invoke_agent planner", attributes={"gen_ai.operation.name": "invoke_agent", "session.id": "sess-x"}
        ) as root,
        tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 300,
                "gen_ai.usage.output_tokens": 30,
                "input.value": "plan my day",
                "gen_ai.request.max_tokens": 64,
            },
        ) as llm,
    ):
        llm.add_event("cache.miss", {"key": "k1"})
    tp.shutdown()
    otel_tid, _ = hex_ids(root)
    # ... and one from the Podium SDK ingest (Podium's own ids), with a payload large enough for the artifact store
    sdk_tid = "trc_export_" + live.platform.db.backend
    big = {"doc": "z" * 50_000}
    spans_in = [
        {
            "id": f"{sdk_tid}-root",
            "trace_id": sdk_tid,
            "kind": "chain",
            "name": "pipeline",
            "start_time": T0.isoformat(),
            "end_time": (T0 + timedelta(seconds=2)).isoformat(),
            "trace_name": "nightly pipeline",
            "user_id": "u-sdk",
            "tags": ["nightly"],
            "metadata": {"run": 7},
            "input": big,
            "output": "ok",
        },
        {
            "id": f"{sdk_tid}-ret",
            "trace_id": sdk_tid,
            "parent_id": f"{sdk_tid}-root",
            "kind": "retriever",
            "name": "search",
            "start_time": (T0 + timedelta(seconds=1)).isoformat(),
            "status": "error",
            "error": "index offline",
            "ttft_ms": 12.5,
            "cost_usd": 0.002,
            "attributes": {"k": 5, "filters": {"lang": "en"}},
        },
    ]
    with live.client() as c:
        assert c.post("/api/traces/ingest", json={"spans": spans_in}).status_code == 202
    source = {tid: stored(live, tid) for tid in (otel_tid, sdk_tid)}

    headers = {"Authorization": f"Bearer {other.admin_key}"}
    sent = export_traces(live.platform, f"{other.url}/v1/traces", trace_ids=[otel_tid, sdk_tid], headers=headers)
    assert sent == 4

    for tid, (src_trace, src_spans) in source.items():
        trace, spans = stored(other, tid)
        assert set(spans) == set(src_spans)
        for sid, src in src_spans.items():
            got = spans[sid]
            for column in (
                "parent_id",
                "kind",
                "name",
                "status",
                "error",
                "start_time",
                "end_time",
                "model",
                "prompt_tokens",
                "completion_tokens",
                "cost_micros",
                "ttft_ms",
            ):
                assert getattr(got, column) == getattr(src, column), (sid, column)
            assert got.attributes.items() >= src.attributes.items(), sid
            for side in ("input", "output"):
                if getattr(src, side) is None or ARTIFACT_KEY not in getattr(src, side):
                    assert getattr(got, side) == getattr(src, side), (sid, side)
        for column in ("name", "session_id", "user_id", "tags", "meta", "prompt_tokens", "cost_micros", "status"):
            assert getattr(trace, column) == getattr(src_trace, column), (tid, column)
        assert trace.source == "otlp"

    _, exported = stored(other, sdk_tid)
    marker = orjson.loads(exported[f"{sdk_tid}-root"].input)  # the full payload went across, stored as an artifact
    assert orjson.loads(other.platform.blobs.get(marker[ARTIFACT_KEY])) == big
    llm_attrs = stored(other, otel_tid)[1][hex_ids(llm)[1]].attributes
    assert llm_attrs["gen_ai.request.max_tokens"] == 64 and llm_attrs["otel.events"][0]["name"] == "cache.miss"

    # only traces started since a time; a refusing endpoint is an error naming its answer
    assert export_traces(live.platform, f"{other.url}/v1/traces", since=datetime.now(UTC) + timedelta(days=1)) == 0
    with pytest.raises(ExportFailed, match="401"):
        export_traces(live.platform, f"{other.url}/v1/traces", trace_ids=[sdk_tid], headers={"Authorization": "x"})


def _ingest_one(live: LiveServer, tid: str) -> None:
    span = {"id": f"{tid}-root", "trace_id": tid, "kind": "chain", "name": "retried", "start_time": T0.isoformat()}
    with live.client() as c:
        assert c.post("/api/traces/ingest", json={"spans": [span]}).status_code == 202
    stored(live, tid)


def test_export_retries_a_busy_collector_as_retry_after_asks(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    tid = "trc_retry_" + live.platform.db.backend
    _ingest_one(live, tid)
    ok = Answer(200, {"Content-Type": "application/x-protobuf"}, ExportTraceServiceResponse().SerializeToString())
    with (
        scripted_server(Answer(503, {"Retry-After": "1"}, b"busy"), then=ok) as collector,
        caplog.at_level(logging.WARNING, logger="podium.tracing.export"),
    ):
        assert export_traces(live.platform, f"{collector.url}/v1/traces", trace_ids=[tid]) == 1
    first, second = collector.received
    assert first.body == second.body
    request = ExportTraceServiceRequest.FromString(second.body)
    assert [s.name for s in request.resource_spans[0].scope_spans[0].spans] == ["retried"]
    waited = re.search(r"answered 503; retrying in ([\d.]+) s \(Retry-After 1\.00 s\)", caplog.text)
    assert waited is not None and float(waited[1]) >= 1.0, caplog.text


def test_export_gives_up_after_its_attempts(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tid = "trc_giveup_" + live.platform.db.backend
    _ingest_one(live, tid)
    monkeypatch.setattr(otlp_export, "BACKOFF", Backoff(initial=0.01, cap=0.05))  # the same policy, faster
    with scripted_server(then=Answer(429, {"Retry-After": "0"}, b"quota")) as collector:
        with pytest.raises(ExportFailed, match="answered 429: quota"):
            export_traces(live.platform, f"{collector.url}/v1/traces", trace_ids=[tid])
        assert len(collector.received) == otlp_export.ATTEMPTS
    with pytest.raises(ExportFailed, match="could not be reached"):
        export_traces(live.platform, f"http://127.0.0.1:{free_port()}/v1/traces", trace_ids=[tid])
