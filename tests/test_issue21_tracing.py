"""Issue 21, tracing, on SQLite and PostgreSQL, through the public interfaces and real client libraries:

- a span re-sent (in one batch, across batches, over OTLP and the ingest API) changes no total: not the
  trace's span count, tokens or cost, nor the aggregates read from the rollup;
- an application instrumented with OpenTelemetry (the real SDK, opentelemetry-instrumentation-openai-v2 or
  openinference-instrumentation-openai, the `openai` SDK) calling the gateway with a W3C `traceparent` makes
  one trace: the gateway's span is a child of the client's span under the client's trace id, and the call's
  usage is counted once (the gateway's span owns it), whichever part arrives first; a traceparent never
  writes into another project's trace; a malformed one is ignored;
- span inputs and outputs answer as JSON; `/v1/traces` and `/v1/logs` errors are in OpenAI's shape;
- OTel GenAI latest-convention messages (`parts`, `gen_ai.system_instructions`) become chat messages,
  OpenInference's first-token event gives the time to first token, and `POST /v1/logs` (OTLP logs,
  protobuf or JSON, gzip) attaches GenAI events to their spans, project by project.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from podium.gateway.table import RouteTable
from podium.tracing.parts import scoped_trace_id
from podium.tracing.store import Span, Trace
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, project_key, serve_for_module, sign_in_http
from .fakes import FakeServer, start_fake_openai

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000
PRICE = {"input": 2.0, "output": 8.0}  # USD per million tokens: the fake's 11 + 7 tokens cost 78 micro-dollars
GATEWAY_COST = 11 * 2 + 7 * 8


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    server = start_fake_openai()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory, upstream: FakeServer) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp(f"issue21-{backend}")
    for server in serve_for_module(backend, folder):
        deployment = {
            "name": "a",
            "provider": "openai",
            "base_url": upstream.url + "/v1",
            "model": "up-a",
            "price": PRICE,
        }
        with server.client() as c:
            r = c.post("/api/routes", json={"name": "traced", "deployments": [deployment]})
            assert r.status_code == 201, r.text
        server.app.state.runtime.get(RouteTable).refresh()
        yield server


def flush(live: LiveServer) -> None:
    assert live.app.state.runtime.get(TraceWriter).flush(20)


def stored(live: LiveServer, trace_id: str) -> tuple[Trace, dict[str, Span]]:
    flush(live)
    with live.platform.db.read_session() as s:
        trace = s.get(Trace, trace_id)
        assert trace is not None, f"trace {trace_id} not stored"
        spans = {sp.id: sp for sp in s.scalars(select(Span).where(Span.trace_id == trace_id))}
    return trace, spans


def totals(trace: Trace) -> tuple[int, int, int, int]:
    return trace.span_count, trace.prompt_tokens, trace.completion_tokens, trace.cost_micros


def aggregate(live: LiveServer, key: str | None = None, **params: Any) -> tuple[int, int, int, int]:
    """count, prompt tokens, completion tokens and cost over all time, from `/api/traces/aggregate`."""
    flush(live)
    with live.client(key) as c:
        r = c.get("/api/traces/aggregate", params={"bucket": "day", **params})
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    keys = ("count", "prompt_tokens", "completion_tokens", "cost_micros")
    return tuple(sum(row[k] for row in rows) for k in keys)  # type: ignore[return-value]


def attr(key: str, value: Any) -> dict[str, Any]:
    """An OTLP/JSON KeyValue."""
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def otlp_span(trace: str, sid: str, parent: str = "", at: float = 0, dur: float = 1, **extra: Any) -> dict[str, Any]:
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


def otlp(spans: list[dict[str, Any]]) -> dict[str, Any]:
    resource = {"attributes": [attr("service.name", "app")]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}


def post_otlp(live: LiveServer, spans: list[dict[str, Any]], key: str | None = None) -> httpx.Response:
    with live.client(key) as c:
        r = c.post("/v1/traces", content=orjson.dumps(otlp(spans)), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    return r


def llm_attrs(tokens_in: int = 100, tokens_out: int = 20, cost: float | None = 0.5) -> dict[str, Any]:
    found: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "some-model",
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
    }
    if cost is not None:
        found["podium.cost_usd"] = cost
    return found


def hex_id(n: int, size: int) -> str:
    return format(n, f"0{size}x")


# --- 1. a re-sent span changes nothing ----------------------------------------------------------------


def test_a_span_posted_three_times_counts_once(live: LiveServer) -> None:
    tid = hex_id(0x2101, 32)
    root, llm = hex_id(0x11, 16), hex_id(0x12, 16)
    spans = [
        otlp_span(tid, root, name="agent", dur=3),
        otlp_span(tid, llm, root, at=1, attributes=llm_attrs()),
    ]
    before = aggregate(live)
    post_otlp(live, spans)
    once = stored(live, tid)[0]
    assert totals(once) == (2, 100, 20, 500_000)
    after_one = aggregate(live)
    for _ in range(2):  # an exporter's retries
        post_otlp(live, spans)
    trace, rows = stored(live, tid)
    assert totals(trace) == (2, 100, 20, 500_000) and set(rows) == {root, llm}
    assert aggregate(live) == after_one
    assert after_one == (before[0] + 1, before[1] + 100, before[2] + 20, before[3] + 500_000)


def test_a_span_re_sent_in_one_batch_and_across_batches_with_new_spans(live: LiveServer) -> None:
    tid = hex_id(0x2102, 32)
    root, a, b = hex_id(0x21, 16), hex_id(0x22, 16), hex_id(0x23, 16)
    span_a = otlp_span(tid, a, root, at=1, attributes=llm_attrs(10, 1, 0.01))
    span_b = otlp_span(tid, b, root, at=2, attributes=llm_attrs(30, 3, 0.03))
    before = aggregate(live)
    post_otlp(live, [span_a, span_a, span_a])  # the same span three times in one request
    assert totals(stored(live, tid)[0]) == (1, 10, 1, 10_000)
    post_otlp(live, [span_a, span_b])  # a re-send with a new span beside it: only the new one counts
    post_otlp(live, [otlp_span(tid, root, name="root", dur=4), span_b])
    trace, rows = stored(live, tid)
    assert totals(trace) == (3, 40, 4, 40_000) and set(rows) == {root, a, b}
    assert trace.name == "root"
    assert aggregate(live) == (before[0] + 1, before[1] + 40, before[2] + 4, before[3] + 40_000)


def test_re_sent_spans_queued_together_in_the_writer_count_once(live: LiveServer) -> None:
    """Several requests re-sending one span, queued before the writer takes them: one batch holds them all."""
    tid = "trc_resend_" + live.platform.db.backend
    body = {
        "spans": [
            {
                "id": f"{tid}-llm",
                "trace_id": tid,
                "name": "call",
                "kind": "llm",
                "model": "m",
                "start_time": T0.isoformat(),
                "end_time": (T0 + timedelta(seconds=1)).isoformat(),
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "cost_usd": 0.002,
            }
        ]
    }
    with live.client() as c:
        for _ in range(5):
            assert c.post("/api/traces/ingest", json=body).status_code == 202
    trace, rows = stored(live, tid)
    assert totals(trace) == (1, 5, 2, 2_000) and list(rows) == [f"{tid}-llm"]


# --- 2. one call, one trace -------------------------------------------------------------------------


def instrumented_client(live: LiveServer, instrumentation: str) -> Iterator[tuple[Any, Any, Any]]:
    """A tracer provider exporting to `live` over OTLP/HTTP, the named OpenAI instrumentation on it, and an
    `openai` client of the gateway that propagates the current span as `traceparent` (what
    opentelemetry-instrumentation-httpx does; here an httpx event hook, as a user may write)."""
    import openai
    from opentelemetry import propagate
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"app-{instrumentation}"}))
    exporter = OTLPSpanExporter(endpoint=f"{live.url}/v1/traces", headers={"Authorization": f"Bearer {live.admin_key}"})
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    if instrumentation == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        instrumentor: Any = OpenAIInstrumentor()
    else:
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor

        instrumentor = OpenInferenceInstrumentor()
    instrumentor.instrument(tracer_provider=provider)

    def inject(request: httpx.Request) -> None:
        propagate.inject(request.headers)

    http = httpx.Client(event_hooks={"request": [inject]}, timeout=30)
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.admin_key, http_client=http, max_retries=0)
    try:
        yield provider, client, provider.get_tracer("app")
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
        http.close()


@pytest.mark.parametrize("instrumentation", ["openai-v2", "openinference"])
def test_an_instrumented_app_calling_the_gateway_makes_one_trace(
    live: LiveServer, instrumentation: str, upstream: FakeServer
) -> None:
    before = aggregate(live)
    for provider, client, tracer in instrumented_client(live, instrumentation):
        with tracer.start_as_current_span("answer question") as root:
            answer = client.chat.completions.create(
                model="traced", messages=[{"role": "user", "content": "hello there"}]
            )
        assert answer.choices[0].message.content == "echo: hello there"
        tid = format(root.get_span_context().trace_id, "032x")
        root_id = format(root.get_span_context().span_id, "016x")
        # the gateway's part is written first; the client's spans arrive after it
        flush(live)
        assert provider.force_flush(30)
    sent = upstream.headers[-1]
    assert "traceparent" not in {k.lower() for k in sent}, "the caller's context is not passed upstream"

    trace, spans = stored(live, tid)
    by_parent = {sp.parent_id: sp for sp in spans.values()}
    client_span = by_parent[root_id]
    gateway_span = by_parent[client_span.id]
    assert client_span.kind == "llm" and client_span.prompt_tokens == 11  # the client saw the usage too
    assert gateway_span.kind == "llm" and gateway_span.model == "up-a" and gateway_span.cost_micros == GATEWAY_COST
    assert gateway_span.attributes["route"] == "traced"
    assert len(spans) == 3 and trace.span_count == 3
    # one model call, counted once: the gateway's span owns the usage
    assert (trace.prompt_tokens, trace.completion_tokens, trace.cost_micros) == (11, 7, GATEWAY_COST)
    assert trace.name == "answer question" and trace.route == "traced" and trace.source == "otlp"
    assert aggregate(live) == (before[0] + 1, before[1] + 11, before[2] + 7, before[3] + GATEWAY_COST)
    with live.client() as c:
        r = c.get("/api/traces", params={"limit": 500})
    assert sum(1 for t in r.json()["traces"] if t["id"] == tid) == 1


def test_the_client_span_arriving_first_is_uncounted_when_the_gateway_part_comes(live: LiveServer) -> None:
    """The other order, with spans written by hand: the client's llm span (with usage) is stored first, then
    the gateway call under it moves the usage to the gateway's span; the trace's latency stays the root's."""
    tid, root, llm = hex_id(0x2103, 32), hex_id(0x31, 16), hex_id(0x32, 16)
    before = aggregate(live)
    post_otlp(
        live,
        [
            otlp_span(tid, root, name="job", dur=30),
            otlp_span(tid, llm, root, at=1, attributes=llm_attrs(11, 7, 1.0)),
        ],
    )
    assert totals(stored(live, tid)[0]) == (2, 11, 7, 1_000_000)
    headers = {"traceparent": f"00-{tid}-{llm}-01"}
    with live.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "traced", "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
        )
        assert r.status_code == 200 and r.headers["x-podium-trace-id"] == tid
        # a second call under the same client span (a retry): its usage counts, the client's stays out
        r = c.post(
            "/v1/chat/completions",
            json={"model": "traced", "messages": [{"role": "user", "content": "again"}], "stream": True},
            headers=headers,
        )
        assert r.status_code == 200
    trace, spans = stored(live, tid)
    gateway = [sp for sp in spans.values() if sp.parent_id == llm]
    assert len(gateway) == 2 and all(sp.cost_micros == GATEWAY_COST for sp in gateway)
    assert totals(trace) == (4, 22, 14, 2 * GATEWAY_COST)
    assert trace.name == "job" and trace.latency_ms == pytest.approx(30_000)  # the owner's, not the call's
    assert aggregate(live) == (before[0] + 1, before[1] + 22, before[2] + 14, before[3] + 2 * GATEWAY_COST)


def test_a_traceparent_alone_gives_a_trace_of_the_call(live: LiveServer) -> None:
    """A client that propagates context but exports its spans elsewhere: the trace has the caller's id and
    the call's name, input, output and latency."""
    tid, parent = hex_id(0x2104, 32), hex_id(0x41, 16)
    with live.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "traced", "messages": [{"role": "user", "content": "alone"}]},
            headers={"traceparent": f"00-{tid}-{parent}-00"},  # not sampled by the caller: still recorded
        )
    assert r.status_code == 200
    trace, spans = stored(live, tid)
    (span,) = spans.values()
    assert span.parent_id == parent and trace.name == "chat traced" and trace.latency_ms is not None
    assert "alone" in (trace.input or "") and "echo: alone" in (trace.output or "")
    assert totals(trace) == (1, 11, 7, GATEWAY_COST)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # an all-zero trace id
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",  # an all-zero span id
        "ff-" + "a" * 32 + "-" + "1" * 16 + "-01",  # version ff is invalid
        "00-" + "g" * 32 + "-" + "1" * 16 + "-01",  # not hex
        "00-" + "a" * 32 + "-" + "1" * 16 + "-01-extra",  # version 00 has exactly four fields
    ],
)
def test_a_malformed_traceparent_is_ignored(live: LiveServer, header: str) -> None:
    with live.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "traced", "messages": [{"role": "user", "content": "x"}]},
            headers={"traceparent": header},
        )
    assert r.status_code == 200, r.text
    tid = r.headers["x-podium-trace-id"]
    assert tid.startswith("trc_")
    _, spans = stored(live, tid)
    assert [sp.parent_id for sp in spans.values()] == [None]


def test_a_later_traceparent_version_is_read_by_its_first_fields(live: LiveServer) -> None:
    tid, parent = hex_id(0x2105, 32), hex_id(0x51, 16)
    with live.client() as c:
        r = c.post(
            "/v1/embeddings",
            json={"model": "traced", "input": "vectors"},
            headers={"traceparent": f"01-{tid}-{parent}-01-future-fields"},
        )
    assert r.status_code == 200, r.text
    _, spans = stored(live, tid)
    assert [sp.parent_id for sp in spans.values()] == [parent]


def test_a_traceparent_never_writes_into_another_projects_trace(live: LiveServer) -> None:
    tid, root = hex_id(0x2106, 32), hex_id(0x61, 16)
    post_otlp(live, [otlp_span(tid, root, name="theirs", attributes=llm_attrs(5, 1, 0.001))])
    theirs_before = stored(live, tid)[0]
    other = project_key(live, "intruders-21")
    with live.client(other) as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "traced", "messages": [{"role": "user", "content": "sneak"}]},
            headers={"traceparent": f"00-{tid}-{root}-01"},
        )
        assert r.status_code == 200, r.text
    trace, spans = stored(live, tid)
    assert totals(trace) == totals(theirs_before) and list(spans) == [root] and trace.name == "theirs"
    # the caller's call is kept, in a trace of its own project under a scoped id
    scoped, scoped_spans = stored(live, scoped_trace_id(tid, trace_project(live, "intruders-21")))
    assert scoped.name == "chat traced" and totals(scoped) == (1, 11, 7, GATEWAY_COST)
    assert [sp.parent_id for sp in scoped_spans.values()] == [root]
    with live.client(other) as c:
        assert c.get(f"/api/traces/{tid}").status_code == 404
        assert c.get(f"/api/traces/{scoped.id}").status_code == 200


def trace_project(live: LiveServer, name: str) -> str:
    with live.client() as c:
        r = c.get("/api/projects")
    return str(next(p["id"] for p in r.json() if p["name"] == name))


def test_two_instrumentation_layers_of_one_call_count_it_once(live: LiveServer) -> None:
    """Two llm spans of the same call (two instrumentations, nested) and a tool span with usage: the inner
    llm span owns the call's usage; the tool's own usage still counts."""
    tid, root, outer, inner, tool = hex_id(0x2107, 32), *(hex_id(n, 16) for n in (0x71, 0x72, 0x73, 0x74))
    post_otlp(
        live,
        [
            otlp_span(tid, inner, outer, at=1.1, attributes=llm_attrs(40, 4, 0.04)),
            otlp_span(tid, root, name="job", dur=9),
        ],
    )
    post_otlp(
        live,
        [
            otlp_span(tid, outer, root, at=1, attributes=llm_attrs(40, 4, 0.04)),
            otlp_span(
                tid, tool, root, at=3, attributes={"gen_ai.operation.name": "execute_tool", **llm_attrs(3, 1, 0.001)}
            ),
        ],
    )
    trace, _ = stored(live, tid)
    assert totals(trace) == (4, 43, 5, 41_000)


# --- 8. span payloads as JSON; OTLP errors in OpenAI's shape ------------------------------------------


def test_span_inputs_and_outputs_answer_as_json(live: LiveServer) -> None:
    tid = "trc_json_" + live.platform.db.backend
    span = {
        "trace_id": tid,
        "id": f"{tid}-a",
        "name": "a",
        "start_time": T0.isoformat(),
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "output": "plain text, { not JSON",
    }
    with live.client() as c:
        assert c.post("/api/traces/ingest", json={"spans": [span]}).status_code == 202
        flush(live)
        got = c.get(f"/api/traces/{tid}/spans").json()["spans"][0]
        r = c.post(
            "/v1/chat/completions", json={"model": "traced", "messages": [{"role": "user", "content": "as json"}]}
        )
        flush(live)
        gateway = c.get(f"/api/traces/{r.headers['x-podium-trace-id']}/spans").json()["spans"][0]
    assert got["input"] == {"messages": [{"role": "user", "content": "hi"}]}
    assert got["output"] == "plain text, { not JSON"
    assert gateway["input"]["messages"] == [{"role": "user", "content": "as json"}]
    assert gateway["output"]["choices"][0]["message"]["content"] == "echo: as json"


def _openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_otlp_endpoint_errors_are_in_openais_shape(live: LiveServer, path: str) -> None:
    js = {"content-type": "application/json"}
    with httpx.Client(base_url=live.url, timeout=30) as anonymous:
        assert _openai_error(anonymous.post(path, content=b"{}", headers=js), 401)["type"] == "authentication_error"
    viewer = project_key(live, "default", role="viewer")
    with live.client(viewer) as c:
        assert _openai_error(c.post(path, content=b"{}", headers=js), 403)["code"]
    with live.client() as c:
        assert _openai_error(c.post(path, content=b"x", headers={"content-type": "text/plain"}), 415)
        error = _openai_error(c.post(path, content=b"[1", headers=js), 400)
        assert error["type"] == "invalid_request_error" and "not valid JSON" in error["message"]
        assert _openai_error(c.post(path, content=b"nope", headers={**js, "content-encoding": "gzip"}), 400)
        huge = b" " * (live.settings.max_body_bytes + 10)
        assert "larger than the limit" in _openai_error(c.post(path, content=huge, headers=js), 413)["message"]


def test_a_trace_id_of_another_project_over_otlp_is_refused_in_openais_shape(live: LiveServer) -> None:
    tid = hex_id(0x2108, 32)
    post_otlp(live, [otlp_span(tid, hex_id(0x81, 16))])
    other = project_key(live, "intruders-21")
    with live.client(other) as c:
        r = c.post(
            "/v1/traces",
            content=orjson.dumps(otlp([otlp_span(tid, hex_id(0x82, 16))])),
            headers={"content-type": "application/json"},
        )
    assert "another project" in _openai_error(r, 409)["message"]


# --- 5. GenAI latest-convention messages, first token, OTLP logs ---------------------------------------

LATEST_IN = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
    },
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 57°F"}]},
]
LATEST_OUT = [
    {"role": "assistant", "parts": [{"type": "text", "content": "It is rainy in Paris."}], "finish_reason": "stop"}
]
INSTRUCTIONS = [{"type": "text", "content": "You are a weather bot."}]


def span_page(live: LiveServer, trace_id: str, key: str | None = None) -> dict[str, dict[str, Any]]:
    flush(live)
    with live.client(key) as c:
        r = c.get(f"/api/traces/{trace_id}/spans")
    assert r.status_code == 200, r.text
    return {sp["id"]: sp for sp in r.json()["spans"]}


def span_html(live: LiveServer, trace_id: str, span_id: str) -> str:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert sign_in_http(c, live.admin_key).status_code == 303
        r = c.get(f"/traces/{trace_id}/spans/{span_id}")
    assert r.status_code == 200, r.text
    return r.text


def test_latest_convention_messages_are_chat_messages_on_the_trace_page(live: LiveServer) -> None:
    tid, sid = hex_id(0x2109, 32), hex_id(0x91, 16)
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.input.messages": orjson.dumps(LATEST_IN).decode(),
        "gen_ai.output.messages": orjson.dumps(LATEST_OUT).decode(),
        "gen_ai.system_instructions": orjson.dumps(INSTRUCTIONS).decode(),
    }
    post_otlp(live, [otlp_span(tid, sid, attributes=attributes)])
    span = span_page(live, tid)[sid]
    assert span["input"] == [{"role": "system", "parts": INSTRUCTIONS}, *LATEST_IN]
    assert span["output"] == LATEST_OUT
    assert not any(k.startswith("gen_ai.input") or k.startswith("gen_ai.system_instr") for k in span["attributes"])
    html = span_html(live, tid, sid)
    assert '<div class="msg role-system" data-role="system">' in html
    assert '<div class="msg-text">You are a weather bot.</div>' in html
    assert '<div class="msg-text">Weather in Paris?</div>' in html
    assert "get_weather" in html and "rainy, 57°F" in html  # tool parts shown beside their bubbles
    assert '<div class="msg-text">It is rainy in Paris.</div>' in html
    assert "&#34;parts&#34;" not in html and '"parts"' not in html  # not raw JSON


def test_openinference_first_token_event_gives_the_time_to_first_token(live: LiveServer) -> None:
    for provider, client, tracer in instrumented_client(live, "openinference"):
        with tracer.start_as_current_span("streamed") as root:
            stream = client.chat.completions.create(
                model="traced", messages=[{"role": "user", "content": "one two three"}], stream=True
            )
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "echo: one two three"
        tid = format(root.get_span_context().trace_id, "032x")
        assert provider.force_flush(30)
    _, spans = stored(live, tid)
    root_id = format(root.get_span_context().span_id, "016x")
    client_span = next(sp for sp in spans.values() if sp.parent_id == root_id)
    assert client_span.kind == "llm" and client_span.ttft_ms is not None
    assert 0 <= client_span.ttft_ms <= (client_span.end_time - client_span.start_time).total_seconds() * 1000
    events = client_span.attributes.get("otel.events") or []
    assert any(e["name"] == "First Token Stream Event" for e in events)


def log_provider(live: LiveServer, key: str | None = None) -> Any:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    provider = LoggerProvider()
    exporter = OTLPLogExporter(
        endpoint=f"{live.url}/v1/logs",
        headers={"Authorization": f"Bearer {key or live.admin_key}"},
        compression=Compression.Gzip,
    )
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider


def test_content_sent_as_otlp_logs_shows_on_its_span(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """opentelemetry-instrumentation-openai-v2 with content captured as events only: its log record (the
    latest conventions' `gen_ai.client.inference.operation.details`) reaches `/v1/logs` through the SDK's
    OTLP log exporter (gzip) and gives the client's span its messages. (The older per-message events are
    sent by hand in the next test: this instrumentation on opentelemetry-util-genai 1.x emits only these.)"""
    import openai
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    mode = "latest"
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVENT_ONLY")
    tracer_provider = TracerProvider()
    headers = {"Authorization": f"Bearer {live.admin_key}"}
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{live.url}/v1/traces", headers=headers))
    )
    logs = log_provider(live)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, logger_provider=logs)
    try:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.admin_key, max_retries=0)
        tracer = tracer_provider.get_tracer("app")
        with tracer.start_as_current_span(f"logs-{mode}") as root:
            client.chat.completions.create(
                model="traced",
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"content as logs ({mode})"},
                ],
            )
        assert logs.force_flush(30) and tracer_provider.force_flush(30)
    finally:
        instrumentor.uninstrument()
        logs.shutdown()
        tracer_provider.shutdown()
    tid = format(root.get_span_context().trace_id, "032x")
    spans = span_page(live, tid)
    (llm,) = [sp for sp in spans.values() if sp["kind"] == "llm"]
    assert llm["events"], "the log records are attached to the client's span"
    text = orjson.dumps(llm["input"]).decode()
    assert f"content as logs ({mode})" in text and "Be brief." in text
    assert "echo: content as logs" in orjson.dumps(llm["output"]).decode()
    html = span_html(live, tid, llm["id"])
    assert f'<div class="msg-text">content as logs ({mode})</div>' in html
    assert '<div class="msg-text">Be brief.</div>' in html


def otlp_logs(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": records}]}]}


def log_record(trace: str, span: str, name: str, body: Any, at: float = 0.5) -> dict[str, Any]:
    record: dict[str, Any] = {"timeUnixNano": str(T0_NS + int(at * 1e9)), "eventName": name}
    if trace:
        record["traceId"] = trace
    if span:
        record["spanId"] = span
    if body is not None:
        record["body"] = {"kvlistValue": {"values": [attr(k, v) for k, v in body.items()]}}
    return record


def post_logs(live: LiveServer, body: dict[str, Any], key: str | None = None, **headers: str) -> httpx.Response:
    content = orjson.dumps(body)
    if headers.get("content-encoding") == "gzip":
        content = gzip.compress(content)
    with live.client(key) as c:
        return c.post("/v1/logs", content=content, headers={"content-type": "application/json", **headers})


def test_otlp_logs_json_are_project_scoped_kept_once_and_bounded(live: LiveServer) -> None:
    tid, sid = hex_id(0x210A, 32), hex_id(0xA1, 16)
    records = [
        log_record(tid, sid, "gen_ai.user.message", {"content": "asked in a log"}),
        log_record(tid, sid, "gen_ai.choice", {"index": 0, "finish_reason": "stop"}, at=0.9),
        log_record("", "", "app.started", None),  # no span: not kept
    ]
    r = post_logs(live, otlp_logs(records), **{"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    assert "names no trace and span" in r.json()["partialSuccess"]["errorMessage"]
    assert post_logs(live, otlp_logs(records[:2])).status_code == 200  # re-sent: kept once
    # another project's records with the same ids never show in this trace
    other = project_key(live, "intruders-21")
    sneaky = [log_record(tid, sid, "gen_ai.user.message", {"content": "injected"})]
    assert post_logs(live, otlp_logs(sneaky), other).status_code == 200
    post_otlp(live, [otlp_span(tid, sid, attributes={"gen_ai.operation.name": "chat"})])  # the span comes last
    span = span_page(live, tid)[sid]
    assert [e["name"] for e in span["events"]] == ["gen_ai.user.message", "gen_ai.choice"]
    assert span["input"] == [{"role": "user", "content": "asked in a log"}]
    assert "injected" not in orjson.dumps(span).decode()
    # bounds: too many records in one request, and a body nested too deep (rejected alone)
    many = otlp_logs([log_record(tid, sid, "e", None)] * 10_001)
    assert "at most 10000" in _openai_error(post_logs(live, many), 400)["message"]
    deep: Any = {"stringValue": "x"}
    for _ in range(40):
        deep = {"arrayValue": {"values": [deep]}}
    record = {**log_record(tid, sid, "gen_ai.user.message", None), "body": deep}
    r = post_logs(live, otlp_logs([record]))
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedLogRecords"] == "1"
