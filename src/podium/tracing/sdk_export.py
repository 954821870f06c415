"""The SDK's exporter: one background thread per process batches finished spans and POSTs them to
`/api/traces/ingest`, so traced code never waits on the network.

The queue is bounded (`max_queue` spans, counting a batch held for retry). When it is full a producer
waits briefly for room while the server is answering, and only then drops the span, counted and logged.
Connection errors, timeouts, 408, 429 and 5xx answers keep the batch and retry with jittered exponential
backoff (`core.retry`), waiting at least what a `Retry-After` header asks (up to `MAX_BACKOFF`; a `flush()`
meanwhile waits too, a new `configure()` does not); other refusals (a bad key, an invalid span) are logged
and the batch is let go. `flush()` sends what is queued now; an `atexit` hook flushes once more, giving up
quickly when the server cannot be reached.

The server and key are the SDK's one client configuration (`core.sdkconfig`: `podium.configure()`, else
`PODIUM_URL`, `PODIUM_API_KEY`, `podium.toml`, `<home>/admin.key`), shared with `podium.models` and
`podium.prompts`; they are resolved, and httpx imported, in the exporter thread, so importing and using
the SDK stays cheap.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson

from podium.core import sdkconfig
from podium.core.retry import Backoff, parse_retry_after

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("podium.sdk")

INGEST_PATH = "/api/traces/ingest"
MAX_BATCH_BYTES = 4 * 1024 * 1024  # well under the server's default 10 MB body limit
MAX_BACKOFF = 30.0
BACKOFF = Backoff(initial=0.5, cap=MAX_BACKOFF)
EXIT_TIMEOUT = 5.0
WARN_EVERY = 60.0  # seconds between repeats of one kind of warning
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class ExportConfig:
    """Where and how spans are sent. `url`/`api_key` override the SDK's client configuration for this
    exporter only; `None` (the default) uses it."""

    url: str | None = None
    api_key: str | None = None
    enabled: bool = True
    flush_interval: float = 1.0
    batch_size: int = 500
    max_queue: int = 10_000
    block_seconds: float = 0.5
    timeout: float = 10.0


def _env_enabled() -> bool:
    return os.environ.get("PODIUM_TRACING_ENABLED", "1").strip().lower() not in _FALSE


def resolve_endpoint(config: ExportConfig) -> tuple[str, str | None]:
    """The server URL and API key: this exporter's own values, else the SDK's client configuration
    (`podium.configure()`, environment, `podium.toml`, `<home>/admin.key`); a bad podium.toml is logged, never
    raised, so that traced code keeps running."""
    return sdkconfig.resolve(config.url, config.api_key, lenient=True)


class Exporter:
    """A bounded queue of finished spans (JSON-ready dicts) and the thread that ships them in batches."""

    def __init__(self, config: ExportConfig | None = None):
        self.config = config or ExportConfig(enabled=_env_enabled())
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._enqueued = 0  # spans accepted into the queue
        self._done = 0  # spans that left it: sent, or refused by the server
        self.dropped = 0  # spans refused for lack of room, plus batches the server refused
        self.sent = 0
        self._healthy = True  # the last attempt reached the server
        self._wake = False  # send now: flush(), configure(), a full queue
        self._hold_until = 0.0  # monotonic time a server's Retry-After asked us to wait until (flush waits too)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._endpoint: tuple[str, str | None] | None = None
        self._resolved_from: sdkconfig.ClientConfig | None = None  # the client configuration _endpoint came from
        self._warned: dict[str, float] = {}

    # -- producers -----------------------------------------------------------------------------
    def submit(self, span: dict[str, Any]) -> bool:
        """Queue one finished span; False if it was dropped (tracing off, or no room)."""
        config = self.config
        if not config.enabled:
            return False
        with self._cond:
            if len(self._queue) >= config.max_queue:
                if self._healthy and config.block_seconds > 0 and not self._stopping:
                    self._wake = True
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: len(self._queue) < config.max_queue, config.block_seconds)
                if len(self._queue) >= config.max_queue:
                    self.dropped += 1
                    self._warn(
                        "full",
                        "podium tracing: span queue full (%d spans; server %s); dropped %d spans so far",
                        config.max_queue,
                        "unreachable" if not self._healthy else "slow",
                        self.dropped,
                    )
                    return False
            self._queue.append(span)
            self._enqueued += 1
            self._ensure_thread()
            if len(self._queue) >= config.batch_size:
                self._cond.notify_all()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Send every span queued before this call; True when all of them left the queue in time."""
        with self._cond:
            target = self._enqueued
            if self._done >= target:
                return True
            self._ensure_thread()
            self._wake = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def reconfigure(self, config: ExportConfig) -> None:
        """Use new settings from the next attempt on (a held batch goes to the new server)."""
        with self._cond:
            self.config = config
            self._endpoint = None
            self._healthy = True
            self._warned.clear()
            self._hold_until = 0.0
            self._wake = True
            self._cond.notify_all()

    def shutdown(self, timeout: float = EXIT_TIMEOUT) -> None:
        """Flush and stop the thread; gives up at once when the server cannot be reached."""
        with self._cond:
            thread = self._thread
            if thread is None:
                return
            target = self._enqueued
            self._stopping = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._done >= target or self._thread is None, timeout)
            left = len(self._queue)
        if left:
            log.warning("podium tracing: %d spans not sent at exit (server %s)", left, self._url_for_logs())

    def stats(self) -> dict[str, int]:
        """Counters: queued now, sent, dropped."""
        with self._cond:
            return {"queued": len(self._queue), "sent": self.sent, "dropped": self.dropped}

    # -- the thread ----------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="podium-trace-export", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        failures = 0  # failed attempts in a row
        try:
            while True:
                with self._cond:
                    config = self.config
                    deadline = time.monotonic() + (backoff or config.flush_interval)
                    while not (self._stopping or (self._wake and time.monotonic() >= self._hold_until)) and (
                        backoff or len(self._queue) < config.batch_size
                    ):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    self._wake = False
                    if self._stopping and not self._queue:
                        return
                    batch = list(islice(self._queue, config.batch_size))
                if not batch:
                    backoff = 0.0
                    continue
                outcome, count, retry_after = self._send(batch)
                with self._cond:
                    if outcome == "retry":
                        self._healthy = False
                        if self._stopping:
                            return
                        backoff = BACKOFF.delay(failures, retry_after)
                        failures += 1
                        self._hold_until = time.monotonic() + backoff if retry_after is not None else 0.0
                        log.debug("podium tracing: retrying %d spans in %.2f s", count, backoff)
                    else:
                        for _ in range(count):
                            self._queue.popleft()
                        self._done += count
                        self._healthy = True
                        backoff = 0.0
                        failures = 0
                        self._hold_until = 0.0
                        if outcome == "sent":
                            self.sent += count
                        else:
                            self.dropped += count
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._thread = None
                self._cond.notify_all()
            if self._http is not None:
                self._http.close()
                self._http = None

    def _client(self) -> tuple[httpx.Client, str, str | None]:
        import httpx

        if self._endpoint is None or self._resolved_from is not sdkconfig.configured():
            self._resolved_from = sdkconfig.configured()
            self._endpoint = resolve_endpoint(self.config)
            if self._http is not None:
                self._http.close()
            self._http = httpx.Client(timeout=self.config.timeout, headers={"User-Agent": "podium-sdk"})
        assert self._http is not None
        url, key = self._endpoint
        return self._http, url, key

    def _send(self, batch: list[dict[str, Any]]) -> tuple[str, int, float | None]:
        """POST a prefix of `batch` (at most MAX_BATCH_BYTES); returns ("sent" | "refused" | "retry", how many
        spans of `batch` it covered, and the seconds a `Retry-After` header asked for)."""
        import httpx

        parts: list[bytes] = []
        size = taken = 0
        for span in batch:
            try:
                data = orjson.dumps(span, default=repr, option=orjson.OPT_NON_STR_KEYS)
            except TypeError as exc:  # should not happen: spans are made JSON-safe when recorded
                self._warn("encode", "podium tracing: span %r cannot be encoded (%s); dropped", span.get("name"), exc)
                taken += 1
                continue
            if parts and size + len(data) > MAX_BATCH_BYTES:
                break
            parts.append(data)
            size += len(data)
            taken += 1
        if not parts:
            return "refused", taken, None
        body = b'{"spans":[' + b",".join(parts) + b"]}"
        http, url, key = self._client()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            response = http.post(url + INGEST_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._warn("down", "podium tracing: cannot reach %s (%s); spans kept for retry", url, exc)
            return "retry", taken, None
        status = response.status_code
        if status < 300:
            if not self._healthy:
                log.info("podium tracing: %s reachable again", url)
            return "sent", taken, None
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            asked = f" (Retry-After {retry_after:.2f} s)" if retry_after is not None else ""
            self._warn("down", "podium tracing: %s answered %d; spans kept for retry%s", url, status, asked)
            return "retry", taken, retry_after
        self._warn(
            f"refused-{status}",
            "podium tracing: %s refused %d spans with %d: %s%s",
            url,
            len(parts),
            status,
            response.text[:300],
            " (set PODIUM_API_KEY or podium.configure(api_key=...))" if status in (401, 403) else "",
        )
        return "refused", taken, None

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._warned[kind] = now
            log.warning(message, *args)

    def _url_for_logs(self) -> str:
        return self._endpoint[0] if self._endpoint else (self.config.url or "(default)")


_exporter: Exporter | None = None
_lock = threading.Lock()


def exporter() -> Exporter:
    """The process's exporter, made on first use (and registered to flush at exit)."""
    global _exporter
    if _exporter is None:
        with _lock:
            if _exporter is None:
                _exporter = Exporter()
    return _exporter


def configure(**changes: Any) -> ExportConfig:
    """Change export settings (fields of `ExportConfig`; None leaves one as it is). `url` and `api_key` go to
    the SDK's one client configuration (`core.sdkconfig`), which `podium.models` and `podium.prompts` read
    too."""
    url, api_key = changes.pop("url", None), changes.pop("api_key", None)
    if url is not None or api_key is not None:
        sdkconfig.configure(url=url, api_key=api_key)
    current = exporter()
    config = replace(current.config, **{k: v for k, v in changes.items() if v is not None})
    current.reconfigure(config)
    return config


@atexit.register
def _flush_at_exit() -> None:
    if _exporter is not None:
        _exporter.shutdown(EXIT_TIMEOUT)


def _after_fork_in_child() -> None:
    global _exporter, _lock
    _lock = threading.Lock()
    if _exporter is not None:  # the parent's thread does not exist here; queued spans belong to the parent
        _exporter = Exporter(_exporter.config)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
