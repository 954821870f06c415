"""One Retry-After parser and one backoff policy (`core.retry`), and the SDK's span exporter honouring a
server's `Retry-After` (as an HTTP date) against a real loopback server that rate-limits it once."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import orjson
import pytest

from podium.core.retry import Backoff, parse_retry_after
from podium.tracing.sdk_export import ExportConfig, Exporter

from .scripted import Answer, scripted_server

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 2 ", 2.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("Tue, 01 Dec 2026 12:00:30 GMT", 30.0),
        ("Tuesday, 01-Dec-26 12:01:00 GMT", 60.0),  # RFC 850, still allowed by HTTP
        ("Tue, 01 Dec 2026 11:59:00 GMT", 0.0),  # already past: go now
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_backoff_grows_with_jitter_honours_retry_after_and_is_capped() -> None:
    policy = Backoff(initial=0.5, cap=8.0)
    for attempt, ceiling in enumerate((0.5, 1.0, 2.0, 4.0, 8.0, 8.0)):
        delays = {policy.delay(attempt) for _ in range(200)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert len(delays) > 1  # jittered: clients that failed together do not retry together
    assert policy.delay(0, retry_after=3.0) == 3.0  # at least what the server asked
    assert policy.delay(0, retry_after=60.0) == 8.0  # never more than the cap
    assert 4.0 <= policy.delay(100) <= 8.0  # no overflow far out


def test_the_span_exporter_waits_as_retry_after_asks(caplog: pytest.LogCaptureFixture) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    span = {"id": "spn_retry", "trace_id": "trc_retry", "name": "rate-limited", "kind": "chain"}
    with (
        scripted_server(Answer(429, {"Retry-After": when}, b'{"error": {"message": "slow down"}}')) as server,
        caplog.at_level(logging.DEBUG, logger="podium.sdk"),
    ):
        exporter = Exporter(ExportConfig(url=server.url, api_key="pk-test", flush_interval=0.05))
        try:
            assert exporter.submit(span)
            assert exporter.flush(30)
        finally:
            exporter.shutdown(5)
    assert exporter.stats() == {"queued": 0, "sent": 1, "dropped": 0}
    first, second = server.received
    assert first.path == second.path == "/api/traces/ingest"
    assert first.headers["Authorization"] == "Bearer pk-test"
    assert first.body == second.body and orjson.loads(second.body)["spans"][0]["id"] == "spn_retry"
    asked = float(re.search(r"answered 429; spans kept for retry \(Retry-After ([\d.]+) s\)", caplog.text)[1])
    waited = float(re.search(r"retrying 1 spans in ([\d.]+) s", caplog.text)[1])
    assert 1.0 < asked <= 3.0 and waited >= asked


def test_a_flush_waits_out_retry_after_and_a_new_configuration_does_not() -> None:
    span = {"id": "spn_hold", "trace_id": "trc_hold", "name": "held", "kind": "chain"}
    with scripted_server(Answer(503, {"Retry-After": "25"}, b"maintenance")) as server:
        config = ExportConfig(url=server.url, api_key="pk-test", flush_interval=0.05)
        exporter = Exporter(config)
        try:
            assert exporter.submit(span)
            assert not exporter.flush(1)  # sent once, refused
            assert not exporter.flush(1)  # the server asked for 25 s: flushing again does not cut that short
            assert len(server.received) == 1
            exporter.reconfigure(config)  # new settings (podium.configure): try again at once
            assert exporter.flush(20)
        finally:
            exporter.shutdown(5)
        assert len(server.received) == 2 and server.received[0].body == server.received[1].body
