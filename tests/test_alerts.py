"""Alerts through the public API, on real traces sent through `POST /api/traces/ingest` and through the gateway
(the `openai` SDK to a stand-in upstream): a rule fires and resolves, notifying a webhook receiver this module
starts (an HTTP server in a thread, checked for the Slack-compatible JSON) and an SMTP server (aiosmtpd);
de-duplication and the cool-down (reminders, a flapping rule held back); `for`, `no_data`, disabled rules; rules
grouped by model; change against a baseline window; a drift rule on a real drift report; a webhook that is down
(connection refused, then 500s) retried with backoff in the background while the evaluation returns at once and
the gateway keeps answering; a 4xx that fails at once, a delivery that runs out of attempts, SMTP refusals;
validation naming the field; roles and projects; test notifications; the CLI and SDK; the evaluator's lease and
the server's own loop. The firing and resolution run on SQLite and PostgreSQL; the rest on SQLite (the logic
is the same on both)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from podium.alerts.delivery import Attempt, record_attempt, send_email
from podium.alerts.service import prune, take_turn
from podium.alerts.store import AlertDelivery
from podium.core.config import load_settings
from podium.core.db import utcnow
from podium.core.errors import PodiumError
from podium.core.retry import Backoff
from podium.tracing.writer import TraceWriter

from .conftest import (
    LiveServer,
    free_port,
    make_db_url,
    make_settings,
    project_key,
    release_db_url,
    run_cli,
    serve_for_module,
    start_server,
)

pytestmark = pytest.mark.timeout(300)
WAIT = 30.0  # seconds a background delivery may take under load before a test gives up


# --- the outside world: a webhook receiver and an SMTP server ---------------------------------------------


class Receiver:
    """An HTTP server in a thread that records each JSON POST and answers each path with a script of statuses
    (the last one repeats; 200 when none is set)."""

    def __init__(self, sock: socket.socket | None = None, scripts: dict[str, list[int]] | None = None):
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.scripts: dict[str, list[int]] = scripts or {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.posts.append((self.path, json.loads(body)))
                    script = receiver.scripts.get(self.path) or [200]
                    code = script.pop(0) if len(script) > 1 else script[0]
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"receiver says no")

            def log_message(self, *args: Any) -> None:
                pass

        if sock is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        else:  # a socket bound already (connections to it were refused until now)
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
            self.server.socket.close()
            self.server.socket = sock
            self.server.server_address = sock.getsockname()
            self.server.server_activate()
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, body in self.posts if p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd's handler: keeps every message it is handed."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address.startswith("refused-"):
            return "550 no such mailbox"
        if address.startswith("busy-"):
            return "451 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802  # aiosmtpd's name
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[Any]:
        return [m for rcpt, m in self.messages if address in rcpt]


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something truthy (background work finishing), or fail saying `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


# retries quick enough for a test, and enough of them that the down webhook's receiver comes up before they run out
SETTINGS = {"alerts_interval": 0, "alerts_retry_initial": 0.2, "alerts_max_attempts": 10, "smtp_security": "none"}


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int]) -> Iterator[LiveServer]:
    """A server that evaluates only on request, retries quickly and mails through the local SMTP server."""
    folder = tmp_path_factory.mktemp(f"alerts-{backend}")
    yield from serve_for_module(backend, folder, smtp_host="127.0.0.1", smtp_port=mailbox[1], **SETTINGS)


def sqlite_only(live: LiveServer) -> None:
    if live.platform.db.backend != "sqlite":
        pytest.skip("the same logic on every database; the firing and resolution test runs on both")


# --- helpers -------------------------------------------------------------------------------------------------


class Project:
    """A project of its own per test (its traffic is the only traffic its rules see), with a member key."""

    def __init__(self, live: LiveServer, prefix: str = "alerts"):
        self.live = live
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.key = project_key(live, self.name, "member")

    def call(self, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
        with self.live.client(key or self.key) as c:
            return c.request(method, path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code < 300, r.text
        return r.json() if r.content else None

    def traces(self, ok: int, errors: int, *, model: str = "chat-model", at: datetime | None = None) -> None:
        """`ok` successful and `errors` failed traces, started a moment before `at` (default now)."""
        start = (at or utcnow()) - timedelta(seconds=30)
        spans = []
        for i in range(ok + errors):
            tid = "trc-" + uuid.uuid4().hex[:20]
            failed = i < errors
            spans.append(
                {
                    "id": f"{tid}-s",
                    "trace_id": tid,
                    "kind": "llm",
                    "name": "chat",
                    "model": model,
                    "start_time": (start + timedelta(milliseconds=i)).isoformat(),
                    "end_time": (start + timedelta(milliseconds=i + 120)).isoformat(),
                    "status": "error" if failed else "ok",
                    "error": "upstream timed out" if failed else None,
                    "input": {"messages": [{"role": "user", "content": f"question {i}"}]},
                    "output": None if failed else {"choices": [{"message": {"content": f"answer {i}"}}]},
                }
            )
        self.ok("POST", "/api/traces/ingest", json={"spans": spans})
        assert self.live.app.state.runtime.get(TraceWriter).flush(10)

    def rule(self, **spec: Any) -> dict[str, Any]:
        body = {"name": f"rule-{uuid.uuid4().hex[:6]}", "metric": "error_rate", **spec}
        body.setdefault("condition", {"type": "threshold", "op": ">", "value": 0.3, "window": "10m"})
        return self.ok("POST", "/api/alerts/rules", json=body)  # type: ignore[no-any-return]

    def evaluate(self, rule: str) -> dict[str, Any]:
        return self.ok("POST", "/api/alerts/evaluate", json={"rule": rule})  # type: ignore[no-any-return]

    def events(self, rule: str) -> list[dict[str, Any]]:
        return self.ok("GET", "/api/alerts/events", params={"rule": rule})  # type: ignore[no-any-return]

    def deliveries(self, rule: str) -> list[dict[str, Any]]:
        return self.ok("GET", "/api/alerts/deliveries", params={"rule": rule})  # type: ignore[no-any-return]

    def settled(self, rule: str, count: int) -> list[dict[str, Any]]:
        """The rule's deliveries once `count` of them have finished (delivered or failed)."""

        def done() -> list[dict[str, Any]] | None:
            found = self.deliveries(rule)
            finished = [d for d in found if d["status"] in ("delivered", "failed")]
            return found if len(finished) >= count else None

        return wait_for(f"{count} deliveries of {rule}", done)  # type: ignore[no-any-return]


# --- firing and resolution, end to end -----------------------------------------------------------------------


def test_rule_fires_and_resolves_with_webhook_and_email(
    live: LiveServer, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    p = Project(live)
    hook = f"/hook-{uuid.uuid4().hex[:6]}"
    address = f"oncall-{uuid.uuid4().hex[:6]}@example.com"
    rule = p.rule(
        severity="critical",
        filters={"model": "chat-model"},
        channels=[{"webhook": receiver.url(hook)}, {"email": address}],
    )
    assert rule["state"] == "ok" and rule["summary"] == "error_rate > 0.3 over 10m [model=chat-model]"

    p.traces(ok=5, errors=5)
    p.traces(ok=0, errors=20, model="another-model")  # outside the rule's filter
    first = p.evaluate(rule["id"])
    assert [(r["state"], r["event"], r["value"]) for r in first["rules"]] == [("firing", "firing", 0.5)]
    [event] = first["events"]
    assert event["kind"] == "firing" and event["notified"] and event["value"] == 0.5 and event["threshold"] == 0.3
    assert sorted(d["channel"] for d in event["deliveries"]) == ["email", "webhook"]

    [posted] = wait_for("the firing webhook", lambda: receiver.at(hook))
    assert posted["text"].startswith(":red_circle: [FIRING] " + rule["name"])
    assert posted["state"] == "firing" and posted["event"] == "firing"
    assert posted["rule"] == {"id": rule["id"], "name": rule["name"], "condition": "threshold"}
    assert (posted["value"], posted["threshold"], posted["project"]) == (0.5, 0.3, p.name)
    assert posted["severity"] == "critical" and posted["filters"] == {"model": "chat-model"}
    assert posted["links"]["rule"].endswith(f"/alerts/rules/{rule['id']}")
    assert [b["type"] for b in posted["blocks"]] == ["header", "section", "section", "context"]
    assert posted["blocks"][0]["text"]["text"] == f"[FIRING] {rule['name']}"
    [attachment] = posted["attachments"]
    assert (
        attachment["color"] == "#e03131" and {"title": "Value", "value": "0.5", "short": True} in attachment["fields"]
    )
    [mail] = wait_for("the firing e-mail", lambda: mailbox[0].to(address))
    assert mail["Subject"].startswith(f"[FIRING] {rule['name']} (critical) in {p.name}: error_rate = 0.5")
    assert "Threshold: 0.3" in mail.get_payload()

    with live.client(p.key) as c:  # Prometheus sees the rule firing
        exposed = c.get("/metrics").text.splitlines()
    [gauge] = [line for line in exposed if line.startswith("podium_alert_firing{") and f'rule="{rule["name"]}"' in line]
    assert 'severity="critical"' in gauge and gauge.endswith(" 1.0"), gauge
    # still firing: one incident, nothing recorded or sent again (the cool-down, 1h by default, has not passed)
    again = p.evaluate(rule["id"])
    assert again["rules"][0]["state"] == "firing" and again["rules"][0]["event"] is None and again["events"] == []
    assert [e["kind"] for e in p.events(rule["id"])] == ["firing"]
    assert len(p.settled(rule["id"], 2)) == 2

    p.traces(ok=40, errors=0)  # 5 errors in 50 traces: 0.1
    resolved = p.evaluate(rule["id"])
    assert [(r["state"], r["event"], r["value"]) for r in resolved["rules"]] == [("resolved", "resolved", 0.1)]
    assert resolved["events"][0]["incident_id"] == event["incident_id"]
    later = wait_for("the resolution webhook", lambda: receiver.at(hook)[1:])
    assert later[0]["state"] == "resolved" and later[0]["text"].startswith(":large_green_circle: [RESOLVED]")
    assert later[0]["attachments"][0]["color"] == "#2f9e44"
    mails = wait_for("the resolution e-mail", lambda: mailbox[0].to(address)[1:])
    assert mails[0]["Subject"].startswith(f"[RESOLVED] {rule['name']}")

    assert p.evaluate(rule["id"])["rules"][0]["state"] == "ok"
    history = p.events(rule["id"])
    assert [(e["kind"], e["notified"]) for e in history] == [("resolved", True), ("firing", True)]
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in p.settled(rule["id"], 4))
    shown = p.ok("GET", f"/api/alerts/rules/{rule['id']}")
    assert shown["state"] == "ok" and [e["kind"] for e in shown["events"]] == ["resolved", "firing"]
    assert {r["name"]: r["state"] for r in p.ok("GET", "/api/alerts/rules")} == {rule["name"]: "ok"}


# --- de-duplication and the cool-down --------------------------------------------------------------------


def test_cooldown_reminds_and_holds_back_a_flapping_rule(live: LiveServer, receiver: Receiver) -> None:
    sqlite_only(live)
    p = Project(live)
    p.traces(ok=5, errors=5)
    hook = f"/flap-{uuid.uuid4().hex[:6]}"
    spec = {"name": "flapping", "metric": "error_rate", "channels": [{"webhook": receiver.url(hook)}]}
    high = {"type": "threshold", "op": ">", "value": 0.9, "window": "10m"}
    low = {"type": "threshold", "op": ">", "value": 0.3, "window": "10m"}
    rule = p.ok("POST", "/api/alerts/rules", json={**spec, "condition": low})
    assert p.evaluate("flapping")["rules"][0]["event"] == "firing"  # by name too
    p.ok("PUT", f"/api/alerts/rules/{rule['id']}", json={**spec, "condition": high})
    assert p.evaluate("flapping")["rules"][0]["event"] == "resolved"
    p.ok("PUT", f"/api/alerts/rules/{rule['id']}", json={**spec, "condition": low})
    refired = p.evaluate("flapping")
    [event] = refired["events"]
    assert event["kind"] == "firing" and not event["notified"] and event["deliveries"] == []
    assert "within the cool-down of 1h" in event["details"]["held_back"]
    p.ok("PUT", f"/api/alerts/rules/{rule['id']}", json={**spec, "condition": high})
    quiet = p.evaluate("flapping")["events"][0]
    assert quiet["kind"] == "resolved" and not quiet["notified"]  # its firing was never sent
    assert [(e["kind"], e["notified"]) for e in p.events("flapping")] == [
        ("resolved", False),
        ("firing", False),
        ("resolved", True),
        ("firing", True),
    ]
    assert [b["state"] for b in wait_for("two notifications", lambda: receiver.at(hook)[1:] and receiver.at(hook))] == [
        "firing",
        "resolved",
    ]

    # a short cool-down: a still-firing rule reminds once it has passed
    short = p.rule(name="reminding", cooldown="1s", channels=[{"webhook": receiver.url(hook + "-r")}])
    assert p.evaluate("reminding")["events"][0]["kind"] == "firing"
    time.sleep(1.2)
    reminded = p.evaluate("reminding")
    assert reminded["rules"][0]["state"] == "firing" and reminded["events"][0]["kind"] == "reminder"
    posts = wait_for("the reminder", lambda: receiver.at(hook + "-r")[1:] and receiver.at(hook + "-r"))
    assert posts[1]["event"] == "reminder" and posts[1]["state"] == "firing"
    assert posts[1]["text"].startswith(":large_orange_circle: [STILL FIRING]")
    assert posts[1]["incident_id"] == posts[0]["incident_id"]
    p.ok("DELETE", f"/api/alerts/rules/{short['id']}")
    assert p.call("GET", "/api/alerts/events", params={"rule": short["id"]}).status_code == 404


def test_pending_for_and_no_data(live: LiveServer) -> None:
    sqlite_only(live)
    p = Project(live)
    waiting = p.rule(name="waits", **{"for": "1h"})
    silent = p.rule(name="silent", no_data="alert", filters={"model": "never-called"})
    kept = p.rule(name="kept", no_data="keep", filters={"model": "never-called"})
    p.rule(name="off", enabled=False)
    p.traces(ok=1, errors=3)
    result = {r["rule_name"]: r for r in p.ok("POST", "/api/alerts/evaluate")["rules"]}
    assert "off" not in result
    off = p.call("POST", "/api/alerts/evaluate", json={"rule": "off"})
    assert off.status_code == 400 and off.json()["error"]["details"]["field"] == "rule"
    assert p.ok("GET", "/api/alerts/rules/off")["state"] == "disabled"
    assert result["waits"]["state"] == "pending" and result["waits"]["event"] is None
    assert result["silent"]["state"] == "firing" and result["silent"]["summary"].startswith("error_rate = no data")
    assert result["kept"]["state"] == "ok" and result["kept"]["event"] is None
    state = p.ok("GET", f"/api/alerts/rules/{waiting['id']}")["states"][0]
    assert state["state"] == "pending" and state["pending_since"] is not None and state["value"] == 0.75
    assert p.ok("GET", f"/api/alerts/rules/{kept['id']}")["states"][0]["evaluated_at"] is not None
    assert [e["kind"] for e in p.events(silent["id"])] == ["firing"]


def test_gateway_traffic_fires_a_route_rule_while_its_webhook_is_down(live: LiveServer, receiver: Receiver) -> None:
    """Calls through the gateway (the `openai` SDK, a stand-in upstream refusing some with a 400) fire a rule on the
    route's error rate; the rule's webhook is down, and the gateway keeps answering while it is retried."""
    sqlite_only(live)
    import openai

    from .fakes import start_fake_openai

    upstream = start_fake_openai()
    try:
        p = Project(live)
        route = f"alerts-gw-{uuid.uuid4().hex[:6]}"
        dep = {"name": "a", "provider": "openai", "base_url": upstream.url + "/v1", "model": "up-a"}
        with live.client() as admin:
            assert admin.post("/api/routes", json={"name": route, "deployments": [dep]}).status_code == 201
        closed = socket.socket()  # nothing listens: every attempt is refused
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
        rule = p.rule(filters={"route": route}, channels=[{"webhook": down}])
        client = openai.OpenAI(base_url=live.url + "/v1", api_key=p.key, max_retries=0)

        def call(text: str) -> str:
            try:
                answer = client.chat.completions.create(model=route, messages=[{"role": "user", "content": text}])
            except openai.APIStatusError as exc:
                return f"error {exc.status_code}"
            return answer.choices[0].message.content or ""

        answers = [call(t) for t in ("hello", "fail:400", "fail:400", "hi")]
        assert answers == ["echo: hello", "error 400", "error 400", "echo: hi"], answers
        assert live.app.state.runtime.get(TraceWriter).flush(10)
        fired = p.evaluate(rule["id"])
        assert fired["rules"][0]["event"] == "firing" and fired["rules"][0]["value"] == 0.5, fired["rules"]
        assert fired["events"][0]["deliveries"][0]["status"] == "pending"
        wait_for("a refused attempt", lambda: p.deliveries(rule["id"])[0]["attempts"] >= 1)
        assert [call(f"still here {i}") for i in range(3)] == [f"echo: still here {i}" for i in range(3)]
        retrying = p.deliveries(rule["id"])[0]
        assert retrying["status"] in ("pending", "sending") and "cannot connect" in retrying["last_error"]
        assert [call(f"ok {i}") for i in range(6)] == [f"echo: ok {i}" for i in range(6)]
        assert live.app.state.runtime.get(TraceWriter).flush(10)
        resolved = p.evaluate(rule["id"])  # 2 errors in 13 calls
        assert resolved["rules"][0]["event"] == "resolved" and resolved["rules"][0]["value"] == 2 / 13
        closed.close()
    finally:
        upstream.stop()
        with live.client() as admin:
            admin.delete(f"/api/routes/{route}")


# --- one incident per group -----------------------------------------------------------------------------------


def test_grouped_rule_fires_and_resolves_per_model(live: LiveServer, receiver: Receiver) -> None:
    sqlite_only(live)
    p = Project(live)
    hook = f"/grouped-{uuid.uuid4().hex[:6]}"
    rule = p.rule(name="per-model", group_by="model", channels=[{"webhook": receiver.url(hook)}])
    assert rule["summary"] == "error_rate > 0.3 over 10m per model"
    quiet = p.evaluate("per-model")["rules"]
    assert [(r["state"], r["summary"]) for r in quiet] == [("ok", "no model had traffic in the window")]
    p.traces(ok=1, errors=3, model="model-bad")
    p.traces(ok=4, errors=0, model="model-good")
    first = p.evaluate("per-model")
    assert {r["group"]: (r["state"], r["event"]) for r in first["rules"]} == {
        "model-bad": ("firing", "firing"),
        "model-good": ("ok", None),
    }
    [event] = first["events"]
    assert event["group"] == "model-bad" and event["message"].startswith("model=model-bad: error_rate = 0.75")
    [posted] = wait_for("the group's notification", lambda: receiver.at(hook))
    assert posted["filters"] == {"model": "model-bad"} and "model=model-bad" in posted["text"]
    p.traces(ok=0, errors=5, model="model-good")  # another group fires: its own incident
    second = p.evaluate("per-model")
    assert {r["group"]: (r["state"], r["event"]) for r in second["rules"]} == {
        "model-bad": ("firing", None),
        "model-good": ("firing", "firing"),
    }
    assert second["events"][0]["incident_id"] != event["incident_id"]
    p.traces(ok=20, errors=0, model="model-bad")
    third = {r["group"]: r["event"] for r in p.evaluate("per-model")["rules"]}
    assert third == {"model-bad": "resolved", "model-good": None}
    states = {s["group"]: s["state"] for s in p.ok("GET", f"/api/alerts/rules/{rule['id']}")["states"]}
    assert states == {"": "ok", "model-bad": "resolved", "model-good": "firing"}
    assert p.ok("GET", f"/api/alerts/rules/{rule['id']}")["state"] == "firing"
    both = {"group_by": "model", "filters": {"model": "m"}}
    bad = p.call("POST", "/api/alerts/rules", json={**rule["spec"], "name": "both", **both})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "group_by"


# --- change against a baseline ------------------------------------------------------------------------------


def test_change_against_the_window_before(live: LiveServer) -> None:
    sqlite_only(live)
    p = Project(live)
    now = utcnow()
    p.traces(ok=4, errors=0, at=now - timedelta(minutes=15))  # the baseline window: 4 requests
    p.traces(ok=10, errors=0, at=now)  # this window: 10 (+150%)
    window = {"type": "change", "window": "10m", "percent": 50}
    up = p.rule(name="traffic-up", metric="requests", condition={**window, "direction": "up"})
    down = p.rule(name="traffic-down", metric="requests", condition={**window, "direction": "down"})
    lazy = p.rule(name="traffic-up-3x", metric="requests", condition={**window, "percent": 200})
    day = p.rule(name="vs-yesterday", metric="requests", condition={**window, "offset": "1d", "baseline": "1h"})
    results = {r["rule_name"]: r for r in p.ok("POST", "/api/alerts/evaluate")["rules"]}
    assert results["traffic-up"]["event"] == "firing" and results["traffic-up"]["value"] == 10
    assert results["traffic-up"]["threshold"] == 6  # 4 requests, +50%
    assert "+150.0% against 4" in results["traffic-up"]["summary"]
    assert results["traffic-down"]["state"] == "ok" and results["traffic-down"]["threshold"] == 2
    assert results["traffic-up-3x"]["state"] == "ok"
    assert results["vs-yesterday"]["state"] == "ok" and "no data" in results["vs-yesterday"]["summary"]
    [event] = p.events(up["id"])
    assert event["details"]["baseline"] == 4 and event["details"]["change_percent"] == 150
    assert (
        p.ok("GET", f"/api/alerts/rules/{down['id']}")["summary"]
        == "requests down 50% over 10m vs 10m ending 10m earlier"
    )
    assert (
        p.ok("GET", f"/api/alerts/rules/{day['id']}")["summary"] == "requests up 50% over 10m vs 1h ending 1d earlier"
    )
    assert lazy["kind"] == "change"


# --- a webhook that is down ------------------------------------------------------------------------------


def test_webhook_down_is_retried_in_the_background(live: LiveServer, receiver: Receiver) -> None:
    """Connection refused, then 500s, then a 200: each attempt recorded, the evaluation never waiting on it,
    and the rule's other channel delivered meanwhile."""
    sqlite_only(live)
    p = Project(live)
    p.traces(ok=1, errors=1)
    closed = socket.socket()  # bound, not listening: connections are refused until the receiver takes it over
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    down = f"http://127.0.0.1:{port}/hook"
    fine = f"/fine-{uuid.uuid4().hex[:6]}"
    rule = p.rule(channels=[{"webhook": down}, {"webhook": receiver.url(fine)}])

    result = p.evaluate(rule["id"])
    queued = {d["target"]: d for d in result["events"][0]["deliveries"]}
    assert queued[down]["status"] == "pending" and queued[down]["attempts"] == 0  # returned before any attempt
    wait_for("the working webhook", lambda: receiver.at(fine))

    def refused() -> dict[str, Any] | None:
        d = next(d for d in p.deliveries(rule["id"]) if d["target"] == down)
        return d if d["attempts"] >= 1 else None

    first = wait_for("a refused attempt", refused)
    assert "cannot connect" in first["log"][0]["error"] and first["last_status"] is None
    if first["status"] == "pending":  # waiting for its retry, later than the failed attempt
        assert datetime.fromisoformat(first["next_attempt_at"]) > datetime.fromisoformat(first["log"][-1]["at"])

    up = Receiver(closed, {"/hook": [500, 500, 200]})  # the receiver comes up on the refused port
    try:
        [delivered] = wait_for(
            "the retried delivery",
            lambda: [d for d in p.deliveries(rule["id"]) if d["target"] == down and d["status"] == "delivered"],
            timeout=120,  # three more attempts, backing off
        )
    finally:
        up.stop()
    outcomes = [e.get("status", "refused") for e in delivered["log"]]
    assert outcomes[-3:] == [500, 500, 200] and set(outcomes[:-3]) == {"refused"}, delivered["log"]
    assert delivered["attempts"] == len(delivered["log"]) >= 4
    assert delivered["last_status"] == 200 and delivered["finished_at"] is not None
    assert "receiver says no" in delivered["log"][-2]["error"]
    assert [b["state"] for b in up.at("/hook")] == ["firing"] * 3


def test_4xx_fails_at_once_and_attempts_run_out(live: LiveServer, receiver: Receiver) -> None:
    sqlite_only(live)
    p = Project(live)
    p.traces(ok=0, errors=2)
    gone = f"/gone-{uuid.uuid4().hex[:6]}"
    receiver.scripts[gone] = [410]
    rule = p.rule(channels=[{"webhook": receiver.url(gone)}])
    p.evaluate(rule["id"])
    [failed] = p.settled(rule["id"], 1)
    assert (failed["status"], failed["attempts"], failed["last_status"]) == ("failed", 1, 410)

    # the retry budget, on the same database: every attempt a 503 until max_attempts
    delivery_id = failed["id"]
    with live.platform.db.session() as s:
        row = s.get(AlertDelivery, delivery_id)
        assert row is not None
        row.status, row.attempts, row.max_attempts, row.log = "sending", 0, 3, []
    outcomes = [
        record_attempt(live.platform, delivery_id, Attempt(False, True, 503, "HTTP 503: busy", 5.0), Backoff(0.1, 60))
        for _ in range(3)
    ]
    assert outcomes == ["pending", "pending", "failed"]
    [d] = [d for d in p.deliveries(rule["id"]) if d["id"] == delivery_id]
    assert d["attempts"] == 3 and d["last_error"] == "HTTP 503: busy" and [e["status"] for e in d["log"]] == [503] * 3


def test_smtp_refusals_and_an_unreachable_server(mailbox: tuple[Mailbox, int]) -> None:
    """A refused mailbox fails for good (5xx), a busy one is worth a retry (4xx), and so is a server that does
    not answer; a server without SMTP settings sends nothing."""
    box, port = mailbox
    settings = load_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    body = {"subject": "[FIRING] test", "text": "hello\n"}
    assert send_email(settings, "ok-mailbox@example.com", body) == Attempt(True, False, 250)
    assert box.to("ok-mailbox@example.com")[0]["Subject"] == "[FIRING] test"
    refused = send_email(settings, "refused-x@example.com", body)
    assert (refused.ok, refused.retry, refused.status) == (False, False, 550) and "no such mailbox" in (
        refused.error or ""
    )
    busy = send_email(settings, "busy-x@example.com", body)
    assert (busy.ok, busy.retry, busy.status) == (False, True, 451)
    down = send_email(load_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none"), "a@b.co", body)
    assert not down.ok and down.retry and "Connection refused" in (down.error or "")
    assert not send_email(load_settings(), "a@b.co", body).retry


# --- bad input and who may do what ------------------------------------------------------------------------


def test_validation_names_the_field(live: LiveServer) -> None:
    sqlite_only(live)
    p = Project(live)
    base = {
        "name": "checked",
        "metric": "error_rate",
        "condition": {"type": "threshold", "op": ">", "value": 1, "window": "5m"},
    }

    def field_of(body: dict[str, Any]) -> str:
        r = p.call("POST", "/api/alerts/rules", json=body)
        assert r.status_code == 400, r.text
        return str(r.json()["error"]["details"]["field"])

    cond = base["condition"]
    assert field_of({**base, "metric": "latency_p42_ms"}) == "metric"
    assert field_of({**base, "condition": {**cond, "op": "=>"}}) == "condition.op"
    assert field_of({**base, "condition": {**cond, "window": "-5m"}}) == "condition.window"
    assert field_of({**base, "condition": {**cond, "window": -300}}) == "condition.window"
    assert field_of({**base, "condition": {**cond, "type": "sometimes"}}) == "condition.type"
    assert field_of({**base, "condition": {"type": "change", "window": "5m", "percent": -5}}) == "condition.percent"
    assert field_of({**base, "cooldown": "soon"}) == "cooldown"
    assert field_of({**base, "for": "-1m"}) == "for"
    assert field_of({**base, "severity": "apocalyptic"}) == "severity"
    assert field_of({**base, "channels": [{"webhook": "ftp://example.com/x"}]}) == "channels[0].webhook"
    assert field_of({**base, "channels": [{"webhook": "http://169.254.169.254/latest"}]}) == "channels[0].webhook"
    assert field_of({**base, "channels": [{"email": "a@b.co"}, {"email": "not-an-address"}]}) == "channels[1].email"
    assert field_of({**base, "channels": [{"email": "a@b.co", "webhook": "http://x.example"}]}) == "channels[0]"
    assert field_of({**base, "surprise": 1}) == "surprise"
    assert field_of({**base, "filters": {"model": "two\nlines"}}) == "filters.model"
    assert field_of({**base, "name": "Upper Case"}) == "name"
    assert field_of({k: v for k, v in base.items() if k != "metric"}) == "metric"
    assert field_of({"source": "name: [unclosed"}) == "source"
    r = p.call("POST", "/api/alerts/rules", json={**base, "condition": {**cond, "op": "=>"}})
    assert "operator '=>' is not one of > >= < <= == !=" in r.json()["error"]["message"]

    yaml_rule = (
        "name: from-yaml\nmetric: latency_p95_ms\ncondition: {type: threshold, op: '>', value: 800, window: 5m}\n"
    )
    made = p.ok("POST", "/api/alerts/rules", json={"source": yaml_rule})
    assert made["spec"]["condition"] == {"type": "threshold", "op": ">", "value": 800.0, "window": "5m"}
    again = p.call("POST", "/api/alerts/rules", json={"source": yaml_rule})
    assert again.status_code == 409 and again.json()["error"]["details"]["field"] == "name"
    assert p.call("GET", "/api/alerts/events", params={"kind": "exploded"}).status_code == 400


def test_roles_and_projects(live: LiveServer) -> None:
    sqlite_only(live)
    p = Project(live)
    other = Project(live)
    viewer = project_key(live, p.name, "viewer")
    rule = p.rule(name="owned")
    assert p.call("GET", "/api/alerts/rules", key=viewer).json()[0]["id"] == rule["id"]
    assert p.call("GET", f"/api/alerts/rules/{rule['id']}", key=viewer).status_code == 200
    assert p.call("GET", "/api/alerts/events", key=viewer).status_code == 200
    for method, path, body in (
        ("POST", "/api/alerts/rules", {"name": "x", "metric": "errors", "condition": rule["spec"]["condition"]}),
        ("POST", "/api/alerts/evaluate", {}),
        ("DELETE", f"/api/alerts/rules/{rule['id']}", None),
        ("PUT", f"/api/alerts/rules/{rule['id']}", rule["spec"]),
        ("POST", f"/api/alerts/rules/{rule['id']}/test", None),
    ):
        r = p.call(method, path, key=viewer, json=body)
        assert r.status_code == 403, (method, path, r.text)
    # another project's member: the rule does not exist for it, and its lists are its own
    for method, path in (("GET", f"/api/alerts/rules/{rule['id']}"), ("DELETE", "/api/alerts/rules/owned")):
        assert p.call(method, path, key=other.key).status_code == 404
    assert other.ok("GET", "/api/alerts/rules") == []
    assert other.ok("POST", "/api/alerts/evaluate")["rules"] == []
    assert other.call("POST", "/api/alerts/evaluate", json={"rule": rule["id"]}).status_code == 404
    no_channels = p.call("POST", f"/api/alerts/rules/{rule['id']}/test")
    assert no_channels.status_code == 400 and no_channels.json()["error"]["details"]["field"] == "channels"
    # the same name in another project is another rule
    assert other.rule(name="owned")["id"] != rule["id"]
    with live.client() as admin:
        names = [r["name"] for r in admin.get("/api/alerts/rules").json()]
    assert names.count("owned") >= 2


def test_cli(live: LiveServer, receiver: Receiver, tmp_path: Path) -> None:
    sqlite_only(live)
    p = Project(live)
    env = {"PODIUM_URL": live.url, "PODIUM_API_KEY": p.key}
    hook = f"/cli-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "rule.yaml"
    spec.write_text(
        "name: cli-errors\nmetric: error_rate\nseverity: critical\n"
        "condition:\n  type: threshold\n  op: '>='\n  value: 0.5\n  window: 15m\n"
        f"channels:\n  - webhook: {receiver.url(hook)}\n"
    )
    added = run_cli("alerts", "rules", "add", "-f", str(spec), env=env)
    assert added.returncode == 0, added.stderr
    assert "Stored cli-errors" in added.stdout and "error_rate >= 0.5 over 15m" in added.stdout
    replaced = run_cli("alerts", "rules", "add", "-f", str(spec), "--replace", "--json", env=env)
    assert replaced.returncode == 0 and json.loads(replaced.stdout)["name"] == "cli-errors"
    p.traces(ok=1, errors=1)
    evaluated = run_cli("alerts", "evaluate", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "cli-errors\tfiring\tfiring" in evaluated.stdout
    wait_for("the CLI rule's webhook", lambda: receiver.at(hook))
    listed = run_cli("alerts", "rules", "ls", env=env)
    assert "cli-errors\tfiring\tcritical" in listed.stdout
    events = run_cli("alerts", "events", "--rule", "cli-errors", env=env)
    assert "\tfiring\tcritical\t" in events.stdout
    shown = run_cli("alerts", "rules", "show", "cli-errors", env=env)
    assert shown.returncode == 0 and receiver.url(hook) in shown.stdout
    sent = run_cli("alerts", "deliveries", "--json", env=env)
    assert json.loads(sent.stdout)[0]["target"] == receiver.url(hook)
    tested = run_cli("alerts", "rules", "test", "cli-errors", env=env)
    assert tested.returncode == 0 and f"to webhook {receiver.url(hook)}" in tested.stdout, tested.stderr
    posts = wait_for("the test notification", lambda: receiver.at(hook)[1:] and receiver.at(hook))
    assert posts[1]["state"] == "test" and posts[1]["text"].startswith(":white_circle: [TEST] cli-errors")
    assert "a test notification, sent by" in posts[1]["summary"]
    assert [e["kind"] for e in p.events("cli-errors")] == ["test", "firing"]
    assert p.ok("GET", "/api/alerts/rules/cli-errors")["state"] == "firing"  # a test changes no state
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmetric: nonsense\ncondition: {type: threshold, op: '>', value: 1, window: 5m}\n")
    refused = run_cli("alerts", "rules", "add", "-f", str(bad), env=env)
    assert refused.returncode == 1 and "unknown metric 'nonsense'" in refused.stderr
    disabled = run_cli("alerts", "rules", "disable", "cli-errors", env=env)
    assert disabled.returncode == 0 and "Disabled cli-errors" in disabled.stdout
    assert p.ok("GET", "/api/alerts/rules/cli-errors")["state"] == "disabled"
    assert run_cli("alerts", "rules", "enable", "cli-errors", env=env).returncode == 0
    assert p.ok("GET", "/api/alerts/rules/cli-errors")["state"] == "firing"  # the state stayed
    removed = run_cli("alerts", "rules", "rm", "cli-errors", env=env)
    assert removed.returncode == 0 and p.ok("GET", "/api/alerts/rules") == []


def test_sdk(live: LiveServer) -> None:
    sqlite_only(live)
    import podium

    p = Project(live)
    conn = {"url": live.url, "api_key": p.key}
    yaml_rule = "name: sdk-errors\nmetric: errors\ncondition: {type: threshold, op: '>=', value: 2, window: 5m}\n"
    made = podium.alerts.create_rule(yaml_rule, **conn)
    assert made["summary"] == "errors >= 2 over 5m"
    p.traces(ok=0, errors=2)
    result = podium.alerts.evaluate("sdk-errors", **conn)
    assert result["rules"][0]["event"] == "firing"
    assert [r["state"] for r in podium.alerts.rules(**conn)] == ["firing"]
    assert podium.alerts.get_rule("sdk-errors", **conn)["id"] == made["id"]
    assert [e["kind"] for e in podium.alerts.events(rule="sdk-errors", **conn)] == ["firing"]
    assert podium.alerts.deliveries(rule="sdk-errors", **conn) == []  # no channels
    podium.alerts.delete_rule(made["id"], **conn)
    with pytest.raises(PodiumError, match="not found"):
        podium.alerts.get_rule("sdk-errors", **conn)


# --- the server's own loop ----------------------------------------------------------------------------------


def test_one_process_evaluates_each_round(live: LiveServer) -> None:
    """The evaluator's lease: the processes of one server take turns, one per round."""
    sqlite_only(live)
    name = f"round-{uuid.uuid4().hex[:6]}"
    assert take_turn(live.platform, "host:1", 60, name=name)
    assert not take_turn(live.platform, "host:2", 60, name=name)  # held by the first process
    assert take_turn(live.platform, "host:1", 0, name=name)  # its own, renewed (until now: expired at once)
    assert take_turn(live.platform, "host:2", 60, name=name)
    assert not take_turn(live.platform, "host:1", 60, name=name)


def test_old_history_is_pruned_but_open_incidents_stay(server: LiveServer, receiver: Receiver) -> None:
    p = Project(server)
    p.traces(ok=1, errors=3)
    hook = f"/prune-{uuid.uuid4().hex[:6]}"
    spec = {"name": "closed", "metric": "error_rate", "channels": [{"webhook": receiver.url(hook)}]}
    low = {"type": "threshold", "op": ">", "value": 0.3, "window": "10m"}
    closed = p.ok("POST", "/api/alerts/rules", json={**spec, "condition": low})
    still = p.rule(name="still-open")
    p.ok("POST", "/api/alerts/evaluate")
    p.ok("PUT", f"/api/alerts/rules/{closed['id']}", json={**spec, "condition": {**low, "value": 0.9}})
    p.evaluate("closed")  # resolved: its incident is over
    p.settled(closed["id"], 2)
    assert prune(server.platform, timedelta(days=90)) == 0  # nothing is that old
    assert prune(server.platform, timedelta(days=1), now=utcnow() + timedelta(days=2)) == 2
    assert p.events(closed["id"]) == [] and p.deliveries(closed["id"]) == []
    assert [e["kind"] for e in p.events(still["id"])] == ["firing"]  # its incident is open
    assert p.ok("GET", f"/api/alerts/rules/{closed['id']}")["state"] == "resolved"


def test_the_server_evaluates_by_itself(tmp_path: Path, receiver: Receiver) -> None:
    """With `alerts_interval` set, the server fires a rule with no one asking."""
    url = make_db_url("sqlite", tmp_path)
    live = start_server(make_settings(tmp_path / "home", url, alerts_interval=0.3))
    try:
        p = Project(live)
        hook = f"/loop-{uuid.uuid4().hex[:6]}"
        rule = p.rule(channels=[{"webhook": receiver.url(hook)}])
        p.traces(ok=0, errors=3)
        [posted] = wait_for("the loop's notification", lambda: receiver.at(hook))
        assert posted["rule"]["id"] == rule["id"] and posted["state"] == "firing"
        assert [e["kind"] for e in p.events(rule["id"])] == ["firing"]
    finally:
        live.stop()
        release_db_url("sqlite", url)


# --- drift ------------------------------------------------------------------------------------------------


def test_drift_rule_reads_the_latest_report(live: LiveServer, receiver: Receiver) -> None:
    """A project's questions turn from English billing to French drone deliveries: before any drift report the
    rule has no data; after the report (drift by the domain classifier) it fires, and a rule on the score
    compares the report's ROC AUC."""
    sqlite_only(live)
    p = Project(live, "alerts-drift")
    hook = f"/drift-{uuid.uuid4().hex[:6]}"
    verdict = p.rule(
        name="drifted", metric=None, condition={"type": "drift"}, channels=[{"webhook": receiver.url(hook)}]
    )
    p.rule(name="auc-over-0.99", metric=None, condition={"type": "drift", "op": ">", "value": 0.999})
    assert verdict["summary"] == "latest drift report says drift" and verdict["spec"]["condition"] == {"type": "drift"}
    before = p.ok("POST", "/api/alerts/evaluate")["rules"]
    assert {r["rule_name"]: (r["state"], r["summary"]) for r in before} == {
        "drifted": ("ok", "no recent drift report"),
        "auc-over-0.99": ("ok", "no recent drift report"),
    }

    now = utcnow().replace(microsecond=0)
    t0, t1 = now - timedelta(hours=2), now - timedelta(hours=1)
    english = [f"How can I update the billing address of invoice {i} for my account?" for i in range(40)]
    french = [f"Le drone de livraison numéro {i} a laissé mon colis chez le voisin, que faire ?" for i in range(40)]
    spans = []
    for start, texts in ((t0, english), (t1, french)):
        for i, text in enumerate(texts):
            tid = "trc-" + uuid.uuid4().hex[:20]
            at = (start + timedelta(seconds=30 * i)).isoformat()
            spans.append({"id": f"{tid}-s", "trace_id": tid, "kind": "llm", "name": "chat", "start_time": at,
                          "input": {"messages": [{"role": "user", "content": text}]}})  # fmt: skip
    p.ok("POST", "/api/traces/ingest", json={"spans": spans})
    assert live.app.state.runtime.get(TraceWriter).flush(10)
    window = {"current_from": t1.isoformat(), "current_to": now.isoformat(), "reference_from": t0.isoformat()}
    report = p.ok("POST", "/api/drift/reports", json={**window, "reference_to": t1.isoformat(), "fields": ["input"]})
    assert report["drift"] is True

    after = {r["rule_name"]: r for r in p.ok("POST", "/api/alerts/evaluate")["rules"]}
    assert after["drifted"]["state"] == "firing" and after["drifted"]["value"] == report["score"]
    assert after["drifted"]["summary"].startswith(f"drift report {report['id']}: drift (score ")
    assert after["auc-over-0.99"]["state"] == ("firing" if report["score"] > 0.999 else "ok")
    assert after["auc-over-0.99"]["threshold"] == 0.999
    [posted] = wait_for("the drift notification", lambda: receiver.at(hook))
    assert posted["rule"]["condition"] == "drift" and posted["metric"] is None and posted["value"] == report["score"]
    [event] = p.events(verdict["id"])
    assert event["details"]["report"] == report["id"] and event["details"]["drifted"] is True
