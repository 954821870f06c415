"""Span ingest over HTTP (`POST /api/traces/ingest`) on SQLite and PostgreSQL: a trace sent in parts is
merged into one row with summed totals; orphans stay; a resent batch is kept once; large payloads go to
the artifact store; oversized attributes are truncated; bad spans are refused naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from podium.tracing.ingest import ARTIFACT_KEY, MAX_ATTRIBUTE_CHARS
from podium.tracing.store import Span, Trace
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, serve_for_module

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    serving = serve_for_module(backend, tmp_path_factory.mktemp(f"ingest-{backend}"))
    yield next(serving)
    next(serving, None)


def span(
    trace: str, sid: str, parent: str | None = None, at: float = 0, dur: float = 1, **extra: Any
) -> dict[str, Any]:
    start = T0 + timedelta(seconds=at)
    return {
        "id": sid,
        "trace_id": trace,
        "parent_id": parent,
        "name": sid,
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(seconds=dur)).isoformat(),
        **extra,
    }


def send(live: LiveServer, spans: list[dict[str, Any]]) -> dict[str, Any]:
    with live.client() as c:
        r = c.post("/api/traces/ingest", json={"spans": spans})
    assert r.status_code == 202, r.text
    result: dict[str, Any] = r.json()
    return result


def stored(live: LiveServer, trace_id: str) -> tuple[Trace, list[Span]]:
    assert live.app.state.runtime.get(TraceWriter).flush(10)
    with live.platform.db.read_session() as s:
        trace = s.get(Trace, trace_id)
        assert trace is not None
        spans = list(s.scalars(select(Span).where(Span.trace_id == trace_id).order_by(Span.start_time)))
    return trace, spans


def test_a_trace_sent_in_parts_is_one_row_with_totals(live: LiveServer) -> None:
    tid = "trc_parts_" + live.platform.db.backend
    # the children arrive first, the root (with the trace's name, user and output) last
    send(
        live,
        [
            span(
                tid,
                f"{tid}-llm1",
                f"{tid}-root",
                at=1,
                kind="llm",
                model="gpt-4o-mini",
                prompt_tokens=1000,
                completion_tokens=500,
            ),
            span(tid, f"{tid}-tool", f"{tid}-root", at=2, kind="tool", status="error", error="timeout"),
        ],
    )
    assert send(
        live,
        [
            span(
                tid,
                f"{tid}-llm2",
                f"{tid}-root",
                at=3,
                kind="llm",
                prompt_tokens=10,
                completion_tokens=5,
                cost_usd=0.25,
            ),
            span(
                tid,
                f"{tid}-root",
                None,
                at=0,
                dur=5,
                kind="agent",
                trace_name="answer ticket",
                user_id="u-7",
                session_id="s-1",
                tags=["beta"],
                metadata={"team": "support"},
                input={"q": "hi"},
                output="done",
            ),
        ],
    ) == {"spans": 2, "traces": 1}
    trace, spans = stored(live, tid)
    assert len(spans) == 4 and trace.span_count == 4
    assert trace.name == "answer ticket" and trace.user_id == "u-7" and trace.session_id == "s-1"
    assert trace.tags == ["beta"] and trace.meta == {"team": "support"}
    assert trace.prompt_tokens == 1010 and trace.completion_tokens == 505
    # gpt-4o-mini from the shipped price table ($0.15 / $0.60 per 1M) plus the explicit $0.25
    assert trace.cost_micros == 150 + 300 + 250_000
    assert trace.status == "error" and trace.error == "timeout"
    assert trace.start_time == T0 and trace.end_time == T0 + timedelta(seconds=5)
    assert trace.latency_ms == pytest.approx(5000)
    assert trace.output == "done" and orjson.loads(trace.input) == {"q": "hi"}
    assert trace.source == "sdk" and trace.project_id


def test_orphans_stay_and_a_resent_batch_is_kept_once(live: LiveServer) -> None:
    tid = "trc_orphan_" + live.platform.db.backend
    batch = [span(tid, f"{tid}-a", "never-arrives", kind="llm", prompt_tokens=3)]
    send(live, batch)
    send(live, batch)  # a client retry
    trace, spans = stored(live, tid)
    assert [s.id for s in spans] == [f"{tid}-a"] and spans[0].parent_id == "never-arrives"
    assert trace.name == ""  # no root span yet


def test_large_payloads_go_to_the_artifact_store_and_attributes_are_truncated(live: LiveServer) -> None:
    tid = "trc_big_" + live.platform.db.backend
    big = "x" * 100_000
    send(live, [span(tid, f"{tid}-r", input=big, attributes={"doc": "y" * 10_000, "n": 3})])
    _, spans = stored(live, tid)
    marker = orjson.loads(spans[0].input)
    assert marker["bytes"] == 100_000 and marker["preview"] == "x" * 1000
    assert live.platform.blobs.get(marker[ARTIFACT_KEY]) == big.encode()
    attrs = spans[0].attributes
    assert attrs["n"] == 3 and attrs["doc"].startswith("y" * MAX_ATTRIBUTE_CHARS) and "truncated 5904" in attrs["doc"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{nope", "not valid JSON"),
        (b'{"spans": 3}', '"spans" array'),
        (b'{"spans": [{"trace_id": "t"}]}', "spans[0].start_time"),
        (b'{"spans": [{"trace_id": "t", "start_time": "2026-11-24T00:00:00Z", "kind": "robot"}]}', "spans[0].kind"),
        (b'{"spans": [{"trace_id": "a b", "start_time": "2026-11-24T00:00:00Z"}]}', "spans[0].trace_id"),
    ],
)
def test_bad_spans_are_refused_naming_the_field(live: LiveServer, body: bytes, words: str) -> None:
    with live.client() as c:
        r = c.post("/api/traces/ingest", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"a": value}
    return value


SPAN0 = '{"trace_id": "t", "start_time": "2026-11-24T00:00:00Z", '


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("cost_usd", 1e300, "spans[0].cost_usd"),
        ("prompt_tokens", 2**40, "spans[0].prompt_tokens"),
        ("ttft_ms", "NaN", "spans[0].ttft_ms"),
        ("attributes", nested(300), "nested deeper than 32 levels"),
        ("input", [nested(40)], "nested deeper than 32 levels"),
        ("user_id", "u" * 300, "spans[0].user_id"),
        ("model", "m" * 201, "spans[0].model"),
        ("tags", ["t" * 201], "200 characters"),
    ],
)
def test_out_of_bounds_fields_are_refused_at_the_edge(live: LiveServer, field: str, value: Any, words: str) -> None:
    # each of these once reached the writer and failed its batch (or killed it)
    body = {"spans": [span("trc_bounds", "spn_bounds", **{field: value})]}
    with live.client() as c:
        r = c.post("/api/traces/ingest", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


def test_nul_characters_are_cleaned_not_refused(live: LiveServer) -> None:
    # PostgreSQL stores no NUL: a span carrying one in any text lands with U+FFFD in its place
    tid = "trc_nul"
    send(
        live,
        [
            span(
                tid,
                "spn_nul",
                user_id="bad\x00user",
                model="m\x00",
                error="e\x00",
                status="error",
                input="in\x00put",
                attributes={"k\x00": ["v\x00"]},
                metadata={"note": "a\x00b"},
                tags=["t\x00"],
            )
        ],
    )
    trace, spans = stored(live, tid)
    assert trace.user_id == "bad\ufffduser" and trace.model == "m\ufffd" and trace.tags == ["t\ufffd"]
    assert spans[0].input == "in\ufffdput" and spans[0].attributes == {"k\ufffd": ["v\ufffd"]}
    assert trace.meta == {"note": "a\ufffdb"} and spans[0].error == "e\ufffd"


def test_a_forged_artifact_marker_reads_back_as_the_text_sent(live: LiveServer) -> None:
    # before, a span whose input was a marker naming any stored blob made the payload endpoint read that blob
    secret = live.platform.blobs.put(b"another project's payload, or a model file")
    forged = orjson.dumps({ARTIFACT_KEY: secret, "bytes": 42, "preview": "p"}).decode()
    tid = "trc_forged"
    send(live, [span(tid, "spn_forged", input=forged, output={ARTIFACT_KEY: secret, "bytes": 42})])
    stored(live, tid)
    with live.client() as c:
        got = c.get(f"/api/traces/{tid}/payload", params={"span": "spn_forged", "field": "input"})
        out = c.get(f"/api/traces/{tid}/payload", params={"span": "spn_forged", "field": "output"})
    assert got.status_code == 200 and got.text == forged, got.text
    assert out.status_code == 200 and orjson.loads(out.content) == {ARTIFACT_KEY: secret, "bytes": 42}
    assert b"another project" not in got.content + out.content


def test_a_trace_id_of_another_project_is_refused(live: LiveServer) -> None:
    # before, a part sent with another project's trace id merged into that project's trace
    tid = "trc_theirs"
    send(live, [span(tid, "spn_theirs_root", prompt_tokens=5)])
    stored(live, tid)
    with live.client() as c:
        assert c.post("/api/projects", json={"name": "intruders"}).status_code == 201
        assert (
            c.post("/api/users", json={"name": "mallory", "role": "member", "project": "intruders"}).status_code == 201
        )
        key = c.post("/api/keys", json={"name": "m", "user": "mallory", "project": "intruders"}).json()["key"]
    with live.client(key) as c:
        r = c.post(
            "/api/traces/ingest", json={"spans": [span(tid, "spn_intruder", "spn_theirs_root", prompt_tokens=999)]}
        )
    assert r.status_code == 409 and "another project" in r.json()["error"]["message"], r.text
    trace, spans = stored(live, tid)
    assert trace.prompt_tokens == 5 and [s.id for s in spans] == ["spn_theirs_root"]


def test_soak_mixed_good_and_poisonous_requests(live: LiveServer) -> None:
    """200 ingest requests of 50 spans, one in ten carrying a poisonous span (nested too deep, a cost of
    1e300, a NUL-laden name over its width): those are refused whole (400) at the edge, every other span lands,
    and the writer is alive with no dead letter and nothing spilled."""
    writer = live.app.state.runtime.get(TraceWriter)
    before = (writer.dead_lettered, writer.spilled, writer.dropped)
    poisons = [{"attributes": nested(300)}, {"cost_usd": 1e300}, {"name": "\x00" * 300}]
    sent: list[str] = []
    refused = 0
    with live.client() as c:
        for i in range(200):
            spans = [span(f"trc_soak_{i}_{j}", f"spn_soak_{i}_{j}", user_id="u\x00ser") for j in range(50)]
            if i % 10 == 3:
                spans[25] = {**spans[25], **poisons[i % 3]}
            r = c.post("/api/traces/ingest", content=json.dumps({"spans": spans}),
                       headers={"content-type": "application/json"})  # fmt: skip
            if i % 10 == 3:
                assert r.status_code == 400, r.text
                refused += 1
            else:
                assert r.status_code == 202, r.text
                sent += [sp["trace_id"] for sp in spans]
    assert writer.flush(60) and refused == 20
    with live.platform.db.read_session() as s:
        stored_ids = set(s.scalars(select(Trace.id).where(Trace.id.like("trc_soak_%"))))
    assert stored_ids == set(sent)  # every good span's trace, none of a refused request's
    assert (writer.dead_lettered, writer.spilled, writer.dropped) == before


def test_viewers_may_not_send_spans(live: LiveServer) -> None:
    with live.client() as c:
        viewer = c.post("/api/keys", json={"name": "v", "role": "viewer"}).json()["key"]
    with live.client(viewer) as c:
        r = c.post("/api/traces/ingest", json={"spans": []})
    assert r.status_code == 403
