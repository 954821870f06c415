"""One bounded queue and one batched writer thread per process: traces, spans and counter deltas (the
gateway's spend ledger) reach the database in batches, off the request path.

- `submit` (event loop) never waits while the queue has room; when it is full the caller waits for room
  (backpressure), so a burst slows requests down instead of dropping records.
- The queue is a `deque` that producers append to without waking the thread (no lock, no notify: those cost
  about a tenth of a gateway call's CPU with `queue.Queue`). The thread takes a batch (at most `batch_size`
  rows) every `interval` seconds, or at once when `batch_size` records are waiting: a batch has a fixed cost
  (a transaction, counter upserts, a round trip to the writer process), so fewer, fuller batches cost the
  database side less per record. `flush` and `close` wake it; `close` drains everything (SIGTERM).
- Each batch also updates the trace rollup (`podium.tracing.rollup`) in its transaction, whichever way it is
  written (thread, child process, replay of a spill), so aggregates never count a trace that is not stored.
- A batch the database refuses is retried. If the database still does not take the tables' rows (it is
  down, the disk is full, a table is missing), the batch is spilled to a JSON-lines file under
  `<home>/spill/`, replayed by `replay_spill` on the next start. If the database works, the batch holds
  poison: it is halved until the records it refuses are alone; those go to a dead-letter file
  (`<home>/spill/dead-letters/`, one JSON line per record with the database's reason) and the rest land.
  Replays isolate poison the same way, so one bad record never blocks a spill file.
- The thread survives anything: an unexpected error is logged, the records in hand are dead-lettered and
  the loop goes on. A record is never dropped silently: `podium_trace_rows_dead_lettered_total` counts the
  dead letters, and `podium_trace_rows_dropped_total` any row that could be neither written, spilled nor
  dead-lettered (target: zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import os
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.orm import Session

from podium.core.db import Database
from podium.core.ids import ulid
from podium.tracing import parts, rollup
from podium.tracing.sink import ProcessSink, callable_name
from podium.tracing.store import Span, Trace

log = logging.getLogger("podium.tracing.writer")

QUEUE_DEPTH = Gauge("podium_trace_queue_depth", "Records waiting in the trace writer's queue.", multiprocess_mode="sum")
BATCHES = Counter("podium_trace_batches_total", "Batches the trace writer committed.")
ROWS_WRITTEN = Counter("podium_trace_rows_written_total", "Rows the trace writer committed.", ["table"])
ROWS_SPILLED = Counter("podium_trace_rows_spilled_total", "Rows spilled to a local file because the database failed.")
ROWS_DROPPED = Counter("podium_trace_rows_dropped_total", "Rows lost: neither written nor spilled (target: 0).")
DEAD_LETTERED = Counter(
    "podium_trace_rows_dead_lettered_total", "Rows the database refused for their content, kept in a dead-letter file."
)
WRITER_ERRORS = Counter("podium_trace_writer_errors_total", "Unexpected errors the trace writer's thread survived.")
BACKPRESSURE = Counter("podium_trace_backpressure_total", "Times a request waited for room in the trace queue.")

_TIME_FIELDS = ("start_time", "end_time")


CounterKey = tuple[str, ...]
# Adds summed deltas to a counter table inside the writer's transaction: (session, backend, {key: delta}).
CounterSink = Callable[[Session, str, dict[CounterKey, int]], None]


@dataclass
class Record:
    """What one unit of work leaves behind: a trace row, its span rows, and counter deltas to add
    (`(counter name, key, delta)`; each counter's sink is registered with `TraceWriter.add_counter`)."""

    trace: dict[str, Any] | None = None
    spans: list[dict[str, Any]] = field(default_factory=list)
    counters: list[tuple[str, CounterKey, int]] = field(default_factory=list)
    # the trace row is a part of the trace (spans arriving in several batches, as from the SDK or OTLP):
    # it is merged into an existing row (totals added, times widened) instead of inserted; see
    # `podium.tracing.parts` for how re-sent spans, usage seen twice and other projects' ids are settled
    merge: bool = False
    # a part that is a step under another producer's span (a gateway call under a client's `traceparent`
    # or a chain step): it fills the trace's name, input, output, latency and model only while the trace has
    # none, so the owner's root part wins whichever arrives first (`CHILD_MERGE_RULES`)
    child: bool = False

    def size(self) -> int:
        """Rows this record writes."""
        return (1 if self.trace else 0) + len(self.spans) + len(self.counters)


_STOP = object()


@dataclass
class _Sent:
    """A batch sent to the writer process, with the rows it was sent as."""

    batch: list[Record]
    traces: list[dict[str, Any]]
    spans: list[dict[str, Any]]
    counters: dict[str, dict[CounterKey, int]]


class TraceWriter:
    """The per-process bounded queue and batched writer."""

    def __init__(
        self,
        db: Database,
        spill_dir: Path,
        *,
        max_queue: int = 50_000,
        batch_size: int = 1_000,
        interval: float = 0.05,
        retries: int = 3,
        process: bool = False,
    ):
        self.db = db
        self.spill_dir = spill_dir
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self.retries = retries
        # appended by producers (a deque's append and popleft are atomic), taken by the thread alone
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()  # set to make the thread look now rather than at its next interval
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()  # guards the two counts below
        self._taken = 0  # records the thread took from the queue so far
        self._finished = 0  # records committed or spilled so far
        self.written = 0
        self.spilled = 0
        self.dropped = 0
        self.dead_lettered = 0
        self._inflight: deque[_Sent] = deque()  # sent to the writer process, answers not read yet
        self._hand: list[Record] = []  # taken from the queue, not yet sent, written or spilled
        self._sinks: dict[str, CounterSink] = {}
        # per counter, what this process has committed so far (readers use it to tell their own
        # committed deltas from other processes' in the table)
        self.committed: dict[str, dict[CounterKey, int]] = {}
        # with `process`, batches are inserted by a child process (see `podium.tracing.sink`); an in-memory
        # SQLite database cannot be shared with one, so it stays in this process
        self._process: ProcessSink | None = None
        self._use_process = process and ":memory:" not in db.url and db.url.strip() != "sqlite://"

    def add_counter(self, name: str, sink: CounterSink) -> None:
        """Register the sink that adds `name` counter deltas to the database (before `start`); with a writer
        process it must be a module-level function."""
        if self._use_process:
            callable_name(sink)
        self._sinks[name] = sink
        self.committed.setdefault(name, {})

    # --- producer side -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._use_process and self._process is None:
            self._process = ProcessSink(self.db.url, {n: callable_name(f) for n, f in self._sinks.items()})
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="podium-trace-writer", daemon=True)
            self._thread.start()

    def put_nowait(self, record: Record) -> bool:
        """Queue a record if there is room; False when the queue is full. The thread is woken only when a
        batch's worth is waiting (a bound checked without a lock: two producers may pass it together)."""
        pending = self._queue
        waiting = len(pending)
        if waiting >= self.max_queue:
            self._wake.set()
            return False
        pending.append(record)
        if waiting + 1 == self.batch_size:
            self._wake.set()
        return True

    async def submit(self, record: Record) -> None:
        """Queue a record from the event loop, waiting for room if the queue is full (backpressure)."""
        if self.put_nowait(record):
            return
        BACKPRESSURE.inc()
        delay = 0.001
        while not self.put_nowait(record):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def put(self, record: Record, timeout: float | None = None) -> None:
        """Queue a record from a plain thread, blocking while the queue is full (`queue.Full` after
        `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while not self.put_nowait(record):
            if deadline is not None and time.monotonic() >= deadline:
                raise queue.Full
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def depth(self) -> int:
        """Records waiting."""
        return len(self._queue)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is committed (or spilled); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:  # the thread takes records under this lock, so the two counts agree
            target = self._taken + len(self._queue) - self._queue.count(_STOP)
        self._wake.set()
        with self._idle:
            while self._finished < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue into the database and stop the thread (SIGTERM path)."""
        if self._thread is None:
            self._drain_inline()
            return
        self._queue.append(_STOP)
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("trace writer did not finish within %.0fs; %d records left", timeout, self.depth())
        self._thread = None
        self._drain_inline()
        if self._process is not None:
            self._process.close()

    def _drain_inline(self) -> None:
        batch = []
        with self._idle:
            while self._queue:
                item = self._queue.popleft()
                if item is not _STOP:
                    batch.append(item)
                    self._taken += 1
        if batch:
            self._commit(batch)

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        if self._process is not None:
            try:
                self._process.ensure_started()  # now, rather than in the first request's batch
            except Exception:
                log.exception("starting the trace writer process failed; the first batch retries")
        while True:
            try:
                self._loop()
                return
            except Exception as exc:  # the thread must outlive any bug: a dead writer stalls every request
                WRITER_ERRORS.inc()
                log.exception("the trace writer hit an unexpected error; going on")
                hand, self._hand = self._hand, []
                if hand:
                    self._dead_letter([(r, f"writer error: {type(exc).__name__}: {exc}") for r in hand])
                    self._finish(hand)
                time.sleep(0.05)

    def _take(self) -> tuple[list[Record], bool]:
        """The next batch from the queue (at most `batch_size` rows), and whether the stop marker came."""
        batch: list[Record] = []
        self._hand = batch
        pending, rows = self._queue, 0
        with self._idle:
            while pending and rows < self.batch_size:
                item = pending.popleft()
                if item is _STOP:
                    return batch, True
                batch.append(item)
                self._taken += 1
                rows += item.size()
        return batch, False

    def _loop(self) -> None:
        inflight = self._inflight
        stop = False
        taken_at = 0.0  # when the latest batch was taken (monotonic)
        while not stop:
            waiting = len(self._queue)
            # a batch every `interval` at most, unless a full one waits: each batch costs a transaction, a
            # counter upsert and a round trip to the writer process, whatever its size
            left = taken_at + self.interval - time.monotonic() if waiting < self.batch_size else 0.0
            if not waiting or left > 0:
                if inflight:  # read the answer of the batch in flight while the next one fills
                    self._resolve(inflight)
                    continue
                QUEUE_DEPTH.set(waiting)
                self._wake.wait(left if waiting else self.interval)
                self._wake.clear()
                continue
            taken_at = time.monotonic()
            batch, stop = self._take()
            QUEUE_DEPTH.set(len(self._queue))
            sent = self._send(batch) if batch else None
            if sent is not None:
                inflight.append(sent)
                self._hand = []
            if len(inflight) > 1 or (inflight and sent is None):
                self._resolve(inflight)  # the older batch: the child already has the new one to work on
            if batch and sent is None:
                self._hand = []
                self._commit(batch)
        while inflight:
            self._resolve(inflight)
        # anything queued behind the stop marker
        self._drain_inline()

    def _send(self, batch: list[Record]) -> _Sent | None:
        """Pipeline a batch to the writer process (its answer is read by `_resolve`), so that the next
        batch is prepared while the child inserts this one. None when there is no process or it could not
        take the batch: then the batch goes the synchronous, retrying way."""
        if self._process is None:
            return None
        traces, spans, counters = _rows(batch)
        if set(counters) - set(self._sinks):
            return None
        try:
            self._process.send(traces, spans, counters)
        except Exception as exc:
            log.warning("trace writer process did not take a batch (%s); retrying it directly", exc)
            return None
        return _Sent(batch, traces, spans, counters)

    def _resolve(self, inflight: deque[_Sent]) -> None:
        """Read the answer to the oldest pipelined batch. If it failed, read every other outstanding answer
        too, then retry the failed batches directly (retries and spill as for any batch). A retried batch
        commits after the one sent behind it: for a trace arriving in parts, a later part's "latest value
        wins" columns (output, latency, metadata) can then keep the earlier part's values."""
        assert self._process is not None
        failed: list[_Sent] = []
        while inflight:
            sent = inflight.popleft()
            try:
                self._process.receive()
            except Exception as exc:
                log.warning("trace batch of %d records failed in the writer process (%s)", len(sent.batch), exc)
                failed.append(sent)
            else:
                try:
                    self._written(sent.batch, sent.traces, sent.spans, sent.counters)
                finally:
                    self._finish(sent.batch)
            if not failed:
                return
        for sent in failed:
            self._commit(sent.batch)

    def _finish(self, batch: list[Record]) -> None:
        with self._idle:
            self._finished += len(batch)
            self._idle.notify_all()

    def _commit(self, batch: list[Record]) -> None:
        try:
            self._write_or_spill(batch)
        finally:
            self._finish(batch)

    def _written(
        self,
        batch: list[Record],
        traces: list[dict[str, Any]],
        spans: list[dict[str, Any]],
        counters: dict[str, dict[CounterKey, int]],
    ) -> None:
        BATCHES.inc()
        ROWS_WRITTEN.labels("traces").inc(len(traces))
        ROWS_WRITTEN.labels("spans").inc(len(spans))
        for name, deltas in counters.items():
            ROWS_WRITTEN.labels(name).inc(len(deltas))
            mine = self.committed.setdefault(name, {})
            for key, delta in deltas.items():
                mine[key] = mine.get(key, 0) + delta
        self.written += sum(r.size() for r in batch)

    def _write_or_spill(self, batch: list[Record]) -> None:
        try:
            traces, spans, counters = _rows(batch)
        except Exception as exc:  # a record that is not even rows (a bug of its producer)
            if not self._isolate(batch, exc):
                self._spill(batch)
            return
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                self.write_rows(traces, spans, counters)
            except Exception as exc:
                if attempt == self.retries:
                    log.error("trace batch of %d records failed %d times (%s)", len(batch), attempt + 1, exc)
                    if not self._isolate(batch, exc):
                        self._spill(batch)
                    return
                time.sleep(delay)
                delay *= 4
            else:
                self._written(batch, traces, spans, counters)
                return

    def _database_takes_rows(self) -> bool:
        """Whether the database answers and its trace tables are there: if so, a batch it refused holds
        records it refuses for what they are (poison), not a database that is away."""
        try:
            with self.db.session() as s:
                for table in ("traces", "spans", "trace_rollup", "trace_latency"):
                    s.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))  # nosec B608  # fixed table names
        except Exception as exc:
            log.warning("the database does not take trace rows now (%s)", exc)
            return False
        return True

    def _isolate(self, batch: list[Record], exc: BaseException) -> bool:
        """A batch the database refused while it works: write every record it takes (halving the batch
        around failures, in order) and dead-letter the ones it refuses with its reason. False, touching
        nothing, when the database itself is the problem (the caller spills or keeps the batch)."""
        if not self._database_takes_rows():
            return False
        failed: list[tuple[Record, str]] = []
        if len(batch) == 1:
            failed.append((batch[0], _reason(exc)))
        else:
            middle = len(batch) // 2
            self._halves(batch[:middle], failed)
            self._halves(batch[middle:], failed)
        if failed:
            log.error("%d of %d trace records refused by the database; dead-lettered", len(failed), len(batch))
            self._dead_letter(failed)
        return True

    def _halves(self, batch: list[Record], failed: list[tuple[Record, str]]) -> None:
        try:
            traces, spans, counters = _rows(batch)
            self.write_rows(traces, spans, counters)
        except Exception as exc:
            if len(batch) == 1:
                failed.append((batch[0], _reason(exc)))
                return
            middle = len(batch) // 2
            self._halves(batch[:middle], failed)
            self._halves(batch[middle:], failed)
        else:
            self._written(batch, traces, spans, counters)

    def _dead_letter(self, failed: list[tuple[Record, str]]) -> None:
        """Keep refused records with their reason, one JSON line each, in `<spill>/dead-letters/`."""
        rows = sum(_size(r) for r, _ in failed)
        folder = self.spill_dir / "dead-letters"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_lines(folder / f"traces-{os.getpid()}-{ulid()}.jsonl", [_dead_line(r, why) for r, why in failed])
        except Exception:
            self._lost(rows, "writing dead-lettered")
            return
        DEAD_LETTERED.inc(rows)
        self.dead_lettered += rows

    def _lost(self, rows: int, doing: str) -> None:
        """Count rows neither written, spilled nor dead-lettered (the metric's target is zero)."""
        log.exception("%s %d trace rows failed; they are lost", doing, rows)
        ROWS_DROPPED.inc(rows)
        self.dropped += rows

    def write_rows(
        self,
        traces: list[dict[str, Any]],
        spans: list[dict[str, Any]],
        counters: dict[str, dict[CounterKey, int]],
    ) -> None:
        """Insert traces and spans and add counter deltas, in one transaction (in the writer process, if any)."""
        unknown = set(counters) - set(self._sinks)
        if unknown:
            raise RuntimeError(f"no sink registered for counters {sorted(unknown)}")
        if self._process is not None:
            self._process.write(traces, spans, counters)
        else:
            insert_rows(self.db, self._sinks, traces, spans, counters)

    # --- spill ---------------------------------------------------------------------------------

    def _spill(self, batch: list[Record]) -> None:
        lines: list[bytes] = []
        unwritable: list[tuple[Record, str]] = []
        for r in batch:
            try:
                lines.append(_spill_line(r))
            except Exception as exc:  # not even JSON (nested too deep, say): it could never be replayed
                unwritable.append((r, _reason(exc)))
        if unwritable:
            self._dead_letter(unwritable)
            gone = {id(r) for r, _ in unwritable}
            batch = [r for r in batch if id(r) not in gone]
        if not batch:
            return
        rows = sum(r.size() for r in batch)
        try:
            self.spill_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_lines(self.spill_dir / f"traces-{os.getpid()}-{ulid()}.jsonl", lines)
        except OSError:
            self._lost(rows, "spilling")
            return
        ROWS_SPILLED.inc(rows)
        self.spilled += rows

    def replay_spill(self) -> int:
        """Write records spilled by earlier runs; returns how many were replayed. A file goes once written;
        one the database still refuses stays for the next start."""
        if not self.spill_dir.exists():
            return 0
        count = 0
        for path in sorted(self.spill_dir.glob("traces-*.jsonl")):
            batch = []
            for line in path.read_bytes().splitlines():
                if line.strip():
                    data = orjson.loads(line)
                    spans = [_parse_times(sp) or {} for sp in data.get("spans") or []]
                    counters = [(str(n), tuple(map(str, k)), int(d)) for n, k, d in data.get("counters") or []]
                    batch.append(
                        Record(
                            trace=_parse_times(data.get("trace")),
                            spans=spans,
                            counters=counters,
                            merge=bool(data.get("merge")),
                            child=bool(data.get("child")),
                        )
                    )
            try:
                self.write_rows(*_rows(batch))
            except Exception as exc:
                if not self._isolate(batch, exc):
                    log.exception("replaying %s failed; it stays for the next start", path.name)
                    continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            count += len(batch)
        if count:
            log.info("replayed %d spilled trace records", count)
        return count


# How a trace row arriving in parts merges into the stored one (columns not named: the new value wins).
_KEEP_SET = "COALESCE(excluded.{c}, traces.{c})"
MERGE_RULES: dict[str, str] = {
    "project_id": "COALESCE(traces.{c}, excluded.{c})",
    # the first part's, except a gateway call's under a client's traceparent: the client's spans own the trace
    "source": "CASE WHEN traces.{c} = 'gateway' THEN excluded.{c} ELSE traces.{c} END",
    "name": "CASE WHEN excluded.{c} <> '' THEN excluded.{c} ELSE traces.{c} END",
    "status": "CASE WHEN excluded.{c} = 'error' OR traces.{c} = 'error' THEN 'error' ELSE traces.{c} END",
    "start_time": "CASE WHEN excluded.{c} < traces.{c} THEN excluded.{c} ELSE traces.{c} END",
    "end_time": "CASE WHEN traces.{c} IS NULL OR excluded.{c} > traces.{c} THEN excluded.{c} ELSE traces.{c} END",
    "tags": "CASE WHEN CAST(excluded.{c} AS TEXT) <> '[]' THEN excluded.{c} ELSE traces.{c} END",
    "metadata": "CASE WHEN CAST(excluded.{c} AS TEXT) <> '{{}}' THEN excluded.{c} ELSE traces.{c} END",
    **{
        c: "traces.{c} + excluded.{c}"
        for c in ("attempts", "span_count", "prompt_tokens", "completion_tokens", "cost_micros")
    },
    **{
        c: _KEEP_SET
        for c in (
            "session_id",
            "user_id",
            "key_id",
            "latency_ms",
            "ttft_ms",
            "model",
            "route",
            "deployment",
            "cache_status",
            "http_status",
            "error",
            "input",
            "output",
        )
    },
}


# How a child part (`Record.child`) merges: like any part, except that what the trace's owner sets (its
# name, input, output, latency, first-token time, model, session, user, tags, metadata) is only filled in
# while the trace has none, so the owner's part wins in whatever order the two arrive.
_FILL = "COALESCE(traces.{c}, excluded.{c})"
CHILD_MERGE_RULES: dict[str, str] = {
    **MERGE_RULES,
    "source": "traces.{c}",
    "name": "CASE WHEN traces.{c} <> '' THEN traces.{c} ELSE excluded.{c} END",
    "tags": "CASE WHEN CAST(traces.{c} AS TEXT) <> '[]' THEN traces.{c} ELSE excluded.{c} END",
    "metadata": "CASE WHEN CAST(traces.{c} AS TEXT) <> '{{}}' THEN traces.{c} ELSE excluded.{c} END",
    **{c: _FILL for c in ("session_id", "user_id", "latency_ms", "ttft_ms", "model", "input", "output")},
}


_INT_RANGES = {
    "SmallInteger": (-(2**15), 2**15 - 1),
    "Integer": (-(2**31), 2**31 - 1),
    "BigInteger": (-(2**63), 2**63 - 1),
}


class _BulkInsert:
    """A plain DBAPI `executemany` for one table: the rows are tuples built here, without SQLAlchemy's
    per-value type processing, because the writer thread shares the GIL with the event loop (measured: a
    batch of 340 traces and spans took 13 ms through SQLAlchemy's insert)."""

    def __init__(self, model: type[Trace] | type[Span], merge_rules: dict[str, str] | None = None):
        self.merge_rules = merge_rules
        self.keys: list[str] = []
        self.defaults: list[Any] = []
        self.kinds: list[str] = []
        self._strings: list[tuple[int, int]] = []
        self._ints: list[tuple[int, int, int]] = []
        self._floats: list[int] = []
        names = []
        for attr in model.__mapper__.column_attrs:
            column = attr.columns[0]
            self.keys.append(attr.key)
            names.append(column.name)
            default = column.default
            if default is None:
                self.defaults.append(None)
            elif default.is_callable:
                self.defaults.append(default.arg(None))
            else:
                self.defaults.append(default.arg)
            type_name = type(column.type).__name__
            self.kinds.append("time" if type_name == "UTCDateTime" else "json" if type_name == "JSON" else "plain")
            index = len(self.keys) - 1
            if type_name in ("String", "Text"):  # PostgreSQL refuses NUL and text over a column's width
                self._strings.append((index, getattr(column.type, "length", None) or 0))
            elif type_name in _INT_RANGES:  # and integers out of the column's range
                self._ints.append((index, *_INT_RANGES[type_name]))
            elif type_name == "Float":  # not a number, or infinite: no value rather than a refused batch
                self._floats.append(index)
        table = model.__tablename__
        self.table = table
        self.names = names
        cols = ", ".join(f'"{n}"' for n in names)
        self.sql = {
            "sqlite": f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in names)})",  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
            "postgresql": f"INSERT INTO {table} ({cols}) VALUES ({', '.join('%s' for _ in names)})",  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
        }
        self._getter = operator.itemgetter(*self.keys)
        self._defaults = dict(zip(self.keys, self.defaults, strict=True))
        self._json = [i for i, kind in enumerate(self.kinds) if kind == "json"]
        self._times = [i for i, kind in enumerate(self.kinds) if kind == "time"]

    def params(self, row: dict[str, Any], sqlite: bool) -> tuple[Any, ...]:
        """One row (a dict keyed by attribute name) as this INSERT's parameter tuple."""
        values = list(self._getter({**self._defaults, **row}))  # C-level: defaults, then the row's values
        for i in self._json:
            if values[i] is not None:
                encoded = orjson.dumps(values[i]).decode()
                values[i] = encoded.replace("\\u0000", "\\ufffd") if "\\u0000" in encoded else encoded
        for i, width in self._strings:
            value = values[i]
            if value.__class__ is str:
                if "\x00" in value:
                    value = value.replace("\x00", "\ufffd")
                values[i] = value[:width] if width and len(value) > width else value
        for i, low, high in self._ints:
            value = values[i]
            if value.__class__ is int and not low <= value <= high:
                values[i] = low if value < low else high
        for i in self._floats:
            value = values[i]
            if value.__class__ is float and not math.isfinite(value):
                values[i] = None
        if sqlite:
            for i in self._times:
                value = values[i]
                if value is not None:
                    value = (
                        value.replace(tzinfo=None)
                        if value.tzinfo is UTC
                        else value.astimezone(UTC).replace(tzinfo=None)
                    )
                    values[i] = value.isoformat(" ", timespec="microseconds")
        return tuple(values)

    def run(self, session: Any, backend: str, params: list[tuple[Any, ...]], merge: bool = False) -> None:
        """Insert rows given as parameter tuples (`params`) in the session's transaction; with `merge`, a row
        whose id exists is merged into it by `merge_rules`, or left as it is when there are none."""
        sql = self.sql[backend]
        if merge and self.merge_rules is None:
            sql += f' ON CONFLICT ("{self.names[0]}") DO NOTHING'
        elif merge:
            rules = self.merge_rules or {}
            sets = ", ".join(f'"{c}" = {rules.get(c, "excluded.{c}").format(c=c)}' for c in self.names[1:])
            sql += f' ON CONFLICT ("{self.names[0]}") DO UPDATE SET {sets}'  # nosec B608  # identifiers are fixed table/column names; values are bound parameters
            if "project_id" in self.names:  # a part never merges into another project's trace
                sql += f" WHERE COALESCE({self.table}.project_id, '') = COALESCE(excluded.project_id, '')"
        session.connection().exec_driver_sql(sql, params)


_TRACES = _BulkInsert(Trace, MERGE_RULES)
_CHILD_TRACES = _BulkInsert(Trace, CHILD_MERGE_RULES)
_SPANS = _BulkInsert(Span)


def insert_rows(
    db: Database,
    sinks: dict[str, CounterSink],
    traces: list[dict[str, Any]],
    spans: list[dict[str, Any]],
    counters: dict[str, dict[CounterKey, int]],
    *,
    share_gil: bool = True,
) -> None:
    """Insert trace and span rows, add them to the trace rollup and add counter deltas, in one transaction.
    With `share_gil` (in the server's writer thread), building the parameters hands the GIL to the event
    loop now and then."""
    sqlite = db.backend == "sqlite"
    pause = 32 if share_gil else 1 << 62
    trace_params: list[tuple[Any, ...]] = []
    span_params: list[tuple[Any, ...]] = []
    for i, row in enumerate(traces):  # whole traces, built before the transaction begins
        if i % pause == pause - 1:
            time.sleep(0)  # in the writer thread: hand the GIL to the event loop now and then
        if not row.get("_merge"):
            trace_params.append(_TRACES.params(row, sqlite))
    for i, row in enumerate(spans):
        if i % pause == pause - 1:
            time.sleep(0)
        if not row.get("_merge"):
            span_params.append(_SPANS.params(row, sqlite))
    with db.session() as s:
        # parts of traces: re-sent spans out, usage counted once, other projects' ids kept apart
        traces, spans = parts.settle(s, db.backend, traces, spans)
        merge_params: list[tuple[Any, ...]] = []
        child_params: list[tuple[Any, ...]] = []
        resent_params: list[tuple[Any, ...]] = []
        for row in traces:
            kind = row.get("_merge")
            if kind:
                (child_params if kind == "child" else merge_params).append(_TRACES.params(row, sqlite))
        for row in spans:
            if row.get("_merge"):
                resent_params.append(_SPANS.params(row, sqlite))
        changes = rollup.Changes()
        rollup.add_rows(changes, (row for row in traces if not row.get("_merge")))
        merged = [row["id"] for row in traces if row.get("_merge")]
        if trace_params:
            _TRACES.run(s, db.backend, trace_params)
        if merged:
            # a part may move its trace to other rollup rows: take the trace out as it was, add it as it is
            rollup.lock_parts(s, db.backend, merged)
            for row in rollup.read_contributions(s, merged, db.backend):
                rollup.contribute(changes, row, -1)
            if merge_params:
                _TRACES.run(s, db.backend, merge_params, merge=True)
            if child_params:  # after the owners' parts: a child fills in only what is still missing
                _CHILD_TRACES.run(s, db.backend, child_params, merge=True)
            rollup.add_rows(changes, rollup.read_contributions(s, merged, db.backend))
        rollup.apply(s, db.backend, changes)
        if span_params:
            _SPANS.run(s, db.backend, span_params)
        if resent_params:  # spans sent by clients: settled above; a clash of ids across traces is kept once
            _SPANS.run(s, db.backend, resent_params, merge=True)
        for name, deltas in sorted(counters.items()):
            if deltas:
                sinks[name](s, db.backend, deltas)


def _rows(
    batch: list[Record],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[CounterKey, int]]]:
    """Traces, spans and summed counter deltas of a batch. Rows of a record to merge carry `_merge` (True, or
    "child" for a child part), and its spans `_part`, the index of their trace row in `traces`."""
    traces: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    for r in batch:
        part: int | None = None
        if r.trace:
            if r.merge:
                part = len(traces)
                traces.append({**r.trace, "_merge": "child" if r.child else True})
            else:
                traces.append(r.trace)
        if r.merge:
            spans += [{**sp, "_merge": True, "_part": part} for sp in r.spans]
        else:
            spans += r.spans
    counters: dict[str, dict[CounterKey, int]] = defaultdict(lambda: defaultdict(int))
    for r in batch:
        for name, key, delta in r.counters:
            counters[name][key] += delta
    return traces, spans, counters


def _write_lines(path: Path, lines: list[bytes]) -> None:
    """A new JSON-lines file only its owner reads, synced, and in place only once whole."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        os.chmod(tmp, 0o600)
        for line in lines:
            f.write(line + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _size(record: Any) -> int:
    try:
        return int(record.size())
    except Exception:
        return 1


def _reason(exc: BaseException) -> str:
    """The database's reason, on one bounded line."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:2000]


def _spill_line(r: Record) -> bytes:
    return orjson.dumps(
        {"trace": r.trace, "spans": r.spans, "counters": r.counters, "merge": r.merge, "child": r.child}
    )


def _dead_line(record: Any, reason: str) -> bytes:
    """A dead letter as one JSON line; a record that is not JSON (too deep, odd types) is kept as its repr."""
    at = datetime.now(UTC).isoformat()
    try:
        return orjson.dumps(
            {"at": at, "reason": reason, "record": _spill_line(record).decode()},
            option=orjson.OPT_NON_STR_KEYS,
        )
    except Exception:
        return orjson.dumps({"at": at, "reason": reason, "record_repr": repr(record)[:1_000_000]})


def _parse_times(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    for name in _TIME_FIELDS:
        value = row.get(name)
        if isinstance(value, str):
            row[name] = datetime.fromisoformat(value)
    return row
