"""The trace writer's database side in a child process.

The writer thread shares the GIL with the event loop that serves requests; inserting a batch (SQLite's
B-tree work, the sqlite3 module binding every value) then shows up in the request latency tail. With
`ProcessSink`, the thread only pickles each batch onto a pipe and waits for the child's answer with the
GIL released; the child (`python -m podium.tracing.sink`) opens its own engine and runs the same
transaction. The thread's retry and spill logic is unchanged: a batch the child reports as failed, or
a child that died, is an exception like a refused write. The child ignores SIGINT and SIGTERM and exits
when its pipe closes, so the parent drains its queue first on shutdown.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle  # nosec B403  # our own child process over a private pipe
import queue
import signal
import struct
import subprocess  # nosec B404  # runs our own modules with a fixed argv
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger("podium.tracing.sink")

_HEADER = struct.Struct("!I")


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("trace writer process closed its pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("trace writer process closed its pipe mid-message")
    return pickle.loads(data)  # noqa: S301  # nosec B301  # our own child process, over a private pipe


def callable_name(fn: Callable[..., Any]) -> str:
    """`module:qualname` of a module-level function, so the child can import it."""
    name = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in name:
        raise ValueError(f"counter sink {name} must be a module-level function to run in the writer process")
    return name


def _load(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


class ProcessSink:
    """Runs `write(traces, spans, counters)` transactions in a child process (started on first use and
    restarted after it dies)."""

    def __init__(self, url: str, sinks: dict[str, str]):
        self.url = url
        self.sinks = sinks
        self._proc: subprocess.Popen[bytes] | None = None
        self._outstanding = 0  # batches sent to the child whose answer has not been read
        self._lock = threading.RLock()

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # nosec B603  # our own module, fixed argv, no shell
            [sys.executable, "-m", "podium.tracing.sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches the server, which drains, not the child
        )
        assert proc.stdin is not None and proc.stdout is not None
        _send(proc.stdin, ("open", self.url, self.sinks))
        reply = _recv(proc.stdout)
        if reply[0] != "ok":
            proc.kill()
            proc.wait()
            raise RuntimeError(f"trace writer process could not open the database: {reply[1]}")
        return proc

    def ensure_started(self) -> None:
        """Start the child if it is not running."""
        with self._lock:
            self._running()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        return self._proc

    def send(self, traces: list[Any], spans: list[Any], counters: dict[str, dict[Any, int]]) -> None:
        """Send a batch without waiting for its answer; `receive` collects the answers in order, so the next
        batch can be prepared while the child inserts this one. Raises if the child is gone: while answers
        are owed, a dead child is not replaced (its answers still in the pipe are read first, by `receive`,
        so that no answer is taken for another batch's)."""
        with self._lock:
            if self._outstanding and (self._proc is None or self._proc.poll() is not None):
                raise RuntimeError("trace writer process died with answers owed; read them first")
            proc = self._running()
            assert proc.stdin is not None
            try:
                _send(proc.stdin, ("write", traces, spans, {k: dict(v) for k, v in counters.items()}))
            except OSError as exc:
                if not self._outstanding:
                    self._stop(proc)
                raise RuntimeError(f"trace writer process died: {exc}") from None
            self._outstanding += 1

    def receive(self) -> None:
        """The answer to the oldest batch sent: returns once it is committed, raises if it failed or if the
        child died before answering (the batch may then be retried)."""
        with self._lock:
            proc = self._proc
            if proc is None or self._outstanding == 0:
                raise RuntimeError("trace writer process died before answering")
            assert proc.stdout is not None
            try:
                reply = _recv(proc.stdout)
            except (OSError, EOFError) as exc:
                self._stop(proc)
                raise RuntimeError(f"trace writer process died: {exc}") from None
            self._outstanding -= 1
        if reply[0] != "ok":
            raise RuntimeError(reply[1])

    def write(self, traces: list[Any], spans: list[Any], counters: dict[str, dict[Any, int]]) -> None:
        """Insert the rows and add the counter deltas in one transaction in the child; raises on failure.
        Called with no batch in flight (the writer resolves those first); the lock spans both halves."""
        with self._lock:
            self.send(traces, spans, counters)
            self.receive()

    def close(self) -> None:
        """Stop the child (after the writer has drained)."""
        with self._lock:
            if self._proc is not None:
                self._stop(self._proc)

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._proc = None
        self._outstanding = 0


def _reader(stdin: IO[bytes], inbox: queue.Queue[Any]) -> None:
    """Read and unpickle the next batch while the main thread inserts the current one. Anything but the
    pipe closing ends the process, so the parent sees it die (and retries) instead of waiting forever."""
    try:
        while True:
            try:
                message = _recv(stdin)
            except EOFError:
                inbox.put(None)
                return
            inbox.put(message)
    except BaseException:  # an unreadable batch or no memory: die visibly
        os._exit(1)


def main() -> None:
    """The child: open the database, then run each batch it is sent and answer ok or the error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from podium.core.db import get_database
    from podium.tracing.writer import insert_rows

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        _, url, names = _recv(stdin)
        db = get_database(url)
        sinks = {name: _load(path) for name, path in names.items()}
    except EOFError:
        return
    except Exception as exc:
        _send(stdout, ("error", f"{type(exc).__name__}: {exc}"))
        return
    _send(stdout, ("ok",))
    inbox: queue.Queue[Any] = queue.Queue(maxsize=2)
    threading.Thread(target=_reader, args=(stdin, inbox), name="podium-sink-reader", daemon=True).start()
    while True:
        message = inbox.get()
        if message is None:
            return
        _, traces, spans, counters = message
        try:
            insert_rows(db, sinks, traces, spans, counters, share_gil=False)
        except Exception as exc:
            _send(stdout, ("error", f"{type(exc).__name__}: {exc}"))
        else:
            _send(stdout, ("ok",))


if __name__ == "__main__":
    main()
