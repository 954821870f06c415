"""A loopback HTTP server that answers POSTs from a script (status, headers, body), one answer per request,
and records what it was sent: the stand-in for an OTLP collector or a Podium that is rate limiting."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes  # decompressed when the request was gzipped


@dataclass
class Scripted:
    url: str
    script: list[Answer]
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def scripted_server(*answers: Answer, then: Answer | None = None) -> Iterator[Scripted]:
    """Serve `answers` in order, then `then` (default 200) to every later request."""
    state = Scripted(url="", script=list(answers))
    last = then or Answer(200)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = gzip.decompress(raw) if self.headers.get("content-encoding") == "gzip" else raw
            with state.lock:
                state.received.append(Received(self.path, dict(self.headers), body))
                answer = state.script.pop(0) if state.script else last
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
