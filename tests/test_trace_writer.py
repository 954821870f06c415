"""The batched trace writer on real databases, inserting in its thread and in a child process: nothing
lost at shutdown with a full queue, backpressure instead of drops, spill to disk when the database fails
and replay on the next start, a killed writer process restarted without loss."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, text

from podium.core.db import utcnow
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.gateway.store import SPEND_COUNTER, Spend, add_spend
from podium.tracing.store import Span, Trace
from podium.tracing.writer import Record, TraceWriter

from .conftest import make_settings, prepared_platform


def record(i: int, spend: int = 0) -> Record:
    now = utcnow()
    tid = new_id("trc")
    trace: dict[str, Any] = {"id": tid, "name": f"t{i}", "start_time": now, "end_time": now, "input": "x" * 1000}
    span: dict[str, Any] = {"id": new_id("spn"), "trace_id": tid, "kind": "llm", "start_time": now}
    return Record(
        trace=trace, spans=[span], counters=[(SPEND_COUNTER, ("key", "key_1", "d:2026-11-24"), spend)] if spend else []
    )


def counts(platform: Platform) -> tuple[int, int]:
    with platform.db.read_session() as s:
        return (
            s.scalar(select(func.count()).select_from(Trace)) or 0,
            s.scalar(select(func.count()).select_from(Span)) or 0,
        )


@pytest.fixture(params=["thread", "process"])
def process(request: pytest.FixtureRequest) -> bool:
    """Whether the writer inserts through its child process."""
    return bool(request.param == "process")


def make_platform(backend_url: str, tmp_path: Path) -> Platform:
    platform, _ = prepared_platform(make_settings(tmp_path / "home", backend_url))
    return platform


def test_close_drains_a_full_queue(backend_url: str, tmp_path: Path, process: bool) -> None:
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill", max_queue=500, batch_size=100, process=process)
    for i in range(500):  # the thread is not running yet: the queue is full
        assert writer.put_nowait(record(i))
    assert not writer.put_nowait(record(999))  # full: refused, never silently dropped
    writer.start()
    writer.close()
    assert counts(platform) == (500, 500)
    assert writer.dropped == 0 and writer.spilled == 0


def test_submit_waits_for_room_instead_of_dropping(backend_url: str, tmp_path: Path, process: bool) -> None:
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill", max_queue=100, batch_size=50, interval=0.01, process=process)
    writer.start()

    async def burst() -> None:
        await asyncio.gather(*(writer.submit(record(i)) for i in range(2000)))

    asyncio.run(burst())
    assert writer.flush(30)
    writer.close()
    assert counts(platform) == (2000, 2000)


def test_spend_deltas_add_up(backend_url: str, tmp_path: Path, process: bool) -> None:
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill", batch_size=7, process=process)
    writer.add_counter(SPEND_COUNTER, add_spend)
    writer.start()
    threads = [threading.Thread(target=lambda: [writer.put(record(i, spend=3)) for i in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    with platform.db.read_session() as s:
        assert s.scalar(select(Spend.spent_micros)) == 4 * 50 * 3
    assert writer.committed[SPEND_COUNTER] == {("key", "key_1", "d:2026-11-24"): 4 * 50 * 3}


def test_a_failing_database_spills_and_the_next_start_replays(backend_url: str, tmp_path: Path, process: bool) -> None:
    platform = make_platform(backend_url, tmp_path)
    with platform.db.session() as s:
        s.execute(text("ALTER TABLE spans RENAME TO spans_away"))
    writer = TraceWriter(platform.db, tmp_path / "spill", retries=1, process=process)
    writer.add_counter(SPEND_COUNTER, add_spend)
    writer.start()
    for i in range(30):
        writer.put(record(i, spend=2))
    writer.close()
    assert writer.spilled == 90 and writer.dropped == 0
    assert list((tmp_path / "spill").glob("traces-*.jsonl"))
    with platform.db.read_session() as s:  # the failed batch left nothing half-written
        assert s.scalar(select(func.count()).select_from(Trace)) == 0
    with platform.db.session() as s:
        s.execute(text("ALTER TABLE spans_away RENAME TO spans"))
    again = TraceWriter(platform.db, tmp_path / "spill")
    again.add_counter(SPEND_COUNTER, add_spend)
    assert again.replay_spill() == 30
    assert counts(platform) == (30, 30)
    with platform.db.read_session() as s:  # the spend deltas came back with their traces
        assert s.scalar(select(Spend.spent_micros)) == 60
    assert not list((tmp_path / "spill").glob("traces-*.jsonl"))


def test_a_killed_writer_process_is_restarted_and_nothing_is_lost(backend_url: str, tmp_path: Path) -> None:
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill", batch_size=10, interval=0.01, process=True)
    writer.add_counter(SPEND_COUNTER, add_spend)
    writer.start()
    for i in range(20):
        writer.put(record(i, spend=1))
    assert writer.flush(30)
    child = writer._process._proc  # type: ignore[union-attr]
    assert child is not None and child.poll() is None and child.pid != os.getpid()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    for i in range(20, 50):
        writer.put(record(i, spend=1))
    writer.close()
    assert counts(platform) == (50, 50)
    assert writer.dropped == 0 and writer.spilled == 0
    with platform.db.read_session() as s:
        assert s.scalar(select(Spend.spent_micros)) == 50
    assert child.returncode == -signal.SIGKILL
    assert writer._process._proc is None  # type: ignore[union-attr]  # closed with the writer


def test_a_counter_sink_must_be_importable_for_the_writer_process(backend_url: str, tmp_path: Path) -> None:
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill", process=True)
    with pytest.raises(ValueError, match="module-level function"):
        writer.add_counter("local", lambda s, backend, deltas: None)


def test_a_failing_batch_among_pipelined_ones_is_retried_alone(backend_url: str, tmp_path: Path, process: bool) -> None:
    """One batch the database refuses (a trace id that already exists) between good ones: with the writer
    process, batches are pipelined, so the others' answers are read, the bad one is retried, its one bad
    record is dead-lettered, and everything else is committed once."""
    platform = make_platform(backend_url, tmp_path)
    records = [record(i, spend=1) for i in range(200)]
    taken = records[95].trace
    assert taken is not None
    with platform.db.session() as s:
        s.add(Trace(id=taken["id"], name="already here", start_time=taken["start_time"]))
    writer = TraceWriter(platform.db, tmp_path / "spill", batch_size=10, retries=1, process=process)
    writer.add_counter(SPEND_COUNTER, add_spend)
    writer.start()
    for r in records:
        writer.put(r)
    writer.close()
    assert writer.dropped == 0 and writer.spilled == 0
    letters = dead_letters(tmp_path / "spill")
    assert len(letters) == 1 and taken["id"] in letters[0]["record"]
    assert "UNIQUE" in letters[0]["reason"] or "unique" in letters[0]["reason"]
    assert writer.written + writer.dead_lettered == 600  # a trace, a span and a spend delta each
    assert counts(platform) == (200, 199)  # the one already there, and 199 of the records
    with platform.db.read_session() as s:
        assert s.scalar(select(Spend.spent_micros)) == 199


def test_the_sink_never_takes_a_dead_childs_missing_answer_for_another_batch(backend_url: str, tmp_path: Path) -> None:
    """A child killed while a batch is in flight: the next send refuses rather than starting a new child
    whose answer would be read as the lost batch's; the lost batch's answer raises, then writes resume."""
    from podium.tracing.sink import ProcessSink
    from podium.tracing.writer import _rows

    platform = make_platform(backend_url, tmp_path)
    sink = ProcessSink(platform.db.url, {})
    first, second = [record(i) for i in range(2)]
    sink.send(*_rows([first]))
    proc = sink._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(RuntimeError, match="answers owed"):
        sink.send(*_rows([second]))
    try:
        sink.receive()  # the first batch's answer: "ok" if the child answered before dying, else an error
        committed_first = True
    except RuntimeError:
        committed_first = False
    sink.write(*_rows([second]))  # a new child, in step
    assert sink._proc is not None and sink._proc.pid != proc.pid
    sink.close()
    assert counts(platform) == (1 + committed_first, 1 + committed_first)


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    return value


def dead_letters(spill: Path) -> list[dict[str, Any]]:
    files = (spill / "dead-letters").glob("*.jsonl")
    return [orjson.loads(line) for p in files for line in p.read_bytes().splitlines()]


def test_poison_records_are_dead_lettered_and_the_rest_land(backend_url: str, tmp_path: Path, process: bool) -> None:
    # a record nested past what JSON encoders write, and one whose trace id is already stored (the database
    # refuses it), in one batch with good records: the good ones and their spend land, the two go to the
    # dead-letter file with the reason, and the writer goes on
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill", batch_size=1_000, interval=0.2, retries=1, process=process)
    writer.add_counter(SPEND_COUNTER, add_spend)
    taken = record(0)
    writer.start()
    writer.put(taken)
    assert writer.flush(30)
    batch = [record(i, spend=5) for i in range(1, 31)]
    assert batch[6].spans
    batch[6].spans[0]["attributes"] = deep(300)
    duplicate = record(7, spend=5)
    assert duplicate.trace is not None and taken.trace is not None
    duplicate.trace["id"] = taken.trace["id"]
    batch[21] = duplicate
    for r in batch:
        writer.put(r)
    assert writer.flush(60)
    assert counts(platform) == (29, 29)  # the first record and 28 good ones
    with platform.db.read_session() as s:
        assert s.scalar(select(Spend.spent_micros)) == 28 * 5
    letters = dead_letters(tmp_path / "spill")
    assert len(letters) == 2 and writer.dead_lettered == 6 and writer.dropped == 0 and writer.spilled == 0
    reasons = " ".join(letter["reason"] for letter in letters)
    assert "Recursion" in reasons or "recursion" in reasons, reasons
    assert any(taken.trace["id"] in (letter.get("record") or "") for letter in letters)
    writer.put(record(99))  # still alive
    assert writer.flush(30)
    writer.close()
    assert counts(platform) == (30, 30)


def test_a_failing_database_spills_good_records_and_dead_letters_unspillable_ones(
    backend_url: str, tmp_path: Path, process: bool
) -> None:
    platform = make_platform(backend_url, tmp_path)
    with platform.db.session() as s:
        s.execute(text("ALTER TABLE spans RENAME TO spans_away"))
    writer = TraceWriter(platform.db, tmp_path / "spill", retries=0, process=process)
    writer.start()
    batch = [record(i) for i in range(10)]
    batch[3].spans[0]["attributes"] = deep(300)  # cannot even be written to the spill file
    for r in batch:
        writer.put(r)
    assert writer.flush(30)
    writer.put(record(50))  # the writer goes on after the unspillable record
    writer.close()
    assert writer.spilled == 20 and writer.dead_lettered == 2 and writer.dropped == 0
    assert len(dead_letters(tmp_path / "spill")) == 1


def test_a_replayed_spill_file_with_poison_lands_the_rest(backend_url: str, tmp_path: Path) -> None:
    # before, a spilled batch holding one record the database refuses failed again at every start
    platform = make_platform(backend_url, tmp_path)
    stored_one = record(0)
    first = TraceWriter(platform.db, tmp_path / "spill")
    first.put(stored_one)
    first.close()
    with platform.db.session() as s:
        s.execute(text("ALTER TABLE spans RENAME TO spans_away"))
    writer = TraceWriter(platform.db, tmp_path / "spill", retries=0)
    writer.start()
    batch = [record(i) for i in range(1, 9)]
    clash = record(9)
    assert clash.trace is not None and stored_one.trace is not None
    clash.trace["id"] = stored_one.trace["id"]
    for r in [*batch[:4], clash, *batch[4:]]:
        writer.put(r)
    writer.close()
    assert writer.spilled == 18
    with platform.db.session() as s:
        s.execute(text("ALTER TABLE spans_away RENAME TO spans"))
    again = TraceWriter(platform.db, tmp_path / "spill")
    assert again.replay_spill() == 9
    assert counts(platform) == (9, 9)  # the stored one and the eight good ones
    assert again.dead_lettered == 2 and len(dead_letters(tmp_path / "spill")) == 1
    assert not list((tmp_path / "spill").glob("traces-*.jsonl"))  # nothing left to fail at the next start


def test_a_part_never_merges_into_another_projects_trace(backend_url: str, tmp_path: Path) -> None:
    # the ingest refuses such parts; this is the writer's own guard for a race between two projects
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill")
    now = utcnow()

    def part(project: str, tokens: int) -> Record:
        trace = {"id": "trc_shared", "project_id": project, "name": "t", "start_time": now, "prompt_tokens": tokens}
        return Record(trace=trace, merge=True)

    writer.put(part("prj_a", 5))
    writer.put(part("prj_b", 999))
    writer.put(part("prj_a", 1))
    writer.close()
    with platform.db.read_session() as s:
        trace = s.get(Trace, "trc_shared")
        assert trace is not None and trace.project_id == "prj_a" and trace.prompt_tokens == 6


def test_soak_mixed_good_and_poisonous_records(backend_url: str, tmp_path: Path) -> None:
    """10,000 records through the writer process, one in twenty poisonous (nested past what JSON encoders
    write, or a trace id already stored), in batches of every size: afterwards the writer is alive, every good
    record and its spend landed once, and the dead letters are exactly the poison sent."""
    platform = make_platform(backend_url, tmp_path)
    writer = TraceWriter(platform.db, tmp_path / "spill", batch_size=300, interval=0.01, retries=0, process=True)
    writer.add_counter(SPEND_COUNTER, add_spend)
    stored_one = record(-1)
    writer.start()
    writer.put(stored_one)
    assert writer.flush(30)
    assert stored_one.trace is not None
    good = poison = 0
    for i in range(10_000):
        r = record(i, spend=1)
        if i % 20 == 7:
            r.spans[0]["attributes"] = deep(300)
            poison += 1
        elif i % 20 == 13:
            assert r.trace is not None
            r.trace["id"] = stored_one.trace["id"]
            poison += 1
        else:
            good += 1
        writer.put(r)
        if i % 997 == 0:
            assert writer.flush(60)  # batches of every size, not only full ones
    assert writer.flush(120)
    writer.put(record(10_000))  # alive
    writer.close()
    assert counts(platform) == (1 + good + 1, 1 + good + 1)
    with platform.db.read_session() as s:
        assert s.scalar(select(Spend.spent_micros)) == good
    assert len(dead_letters(tmp_path / "spill")) == poison == 1_000
    assert writer.dropped == 0 and writer.spilled == 0
