"""Prompt references through the gateway: a live server over a fake upstream on loopback, driven by the
official `openai` SDK and raw HTTP. What reached the upstream, the trace link to the prompt version, label
moves, bad references, streaming, the cache, and sticky experiment assignment."""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select, update

from podium.core.ids import new_id
from podium.gateway.table import RouteTable
from podium.prompts.directory import PromptDirectory
from podium.prompts.store import Experiment, ExperimentArm, Prompt, PromptVersion
from podium.tracing.store import Span, Trace
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, serve_for_module
from .fakes import FakeServer, start_fake_openai

SUPPORT = {
    "name": "support-reply",
    "messages": [
        {"role": "system", "content": "You are a support agent for {{ company }}."},
        {"role": "user", "content": "Order {{ order_id }} is late by {{ days }} days. {{ question }}"},
    ],
    "variables": {
        "company": {"type": "string", "default": "Acme"},
        "order_id": {"type": "string"},
        "days": {"type": "integer"},
        "question": {"type": "string"},
    },
    "model": {"name": "pr-route", "temperature": 0.2, "max_tokens": 256, "seed": 7},
}
VARS = {"order_id": "A-17", "days": 3, "question": "Where is it?"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    server = start_fake_openai()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory, upstream: FakeServer) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp(f"gwp-{backend}")
    for live in serve_for_module(backend, folder, stream_keepalive=0.3):  # yields once, then stops the server
        with live.client() as c:
            for name, extra in (("pr-route", {}), ("pr-cached", {"cache": {"exact": True, "ttl": 60}})):
                deployment = {"name": "a", "provider": "openai", "base_url": upstream.url + "/v1", "model": "up-a"}
                r = c.post("/api/routes", json={"name": name, "deployments": [deployment], **extra})
                assert r.status_code == 201, r.text
        live.app.state.runtime.get(RouteTable).refresh()
        yield live
        client = _clients.pop(live.url, None)
        if client is not None:
            client.close()


@pytest.fixture(autouse=True)
def _reset(upstream: FakeServer) -> None:
    upstream.requests.clear()
    upstream.headers.clear()
    upstream.chats = 0


def push(gw: LiveServer, body: dict[str, Any]) -> dict[str, Any]:
    with gw.client() as c:
        r = c.post("/api/prompts", json=body)
    assert r.status_code in (200, 201), r.text
    version: dict[str, Any] = r.json()["version"]
    return version


def set_label(gw: LiveServer, name: str, label: str, version: int) -> None:
    with gw.client() as c:
        r = c.put(f"/api/prompts/{name}/labels/{label}", json={"version": version})
    assert r.status_code == 200, r.text


def refresh(gw: LiveServer) -> None:
    gw.app.state.runtime.get(PromptDirectory).refresh()


def sdk(gw: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.admin_key, max_retries=0)


_clients: dict[str, httpx.Client] = {}


def post(gw: LiveServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    """`POST /v1/chat/completions` over one kept-alive connection per server."""
    client = _clients.get(gw.url)
    if client is None:
        client = _clients[gw.url] = gw.client()
    return client.post("/v1/chat/completions", json=body, headers=headers)


def trace_and_span(gw: LiveServer, trace_id: str) -> tuple[Trace, Span]:
    assert gw.app.state.runtime.get(TraceWriter).flush(10)
    with gw.platform.db.read_session() as s:
        trace = s.get(Trace, trace_id)
        span = s.scalar(select(Span).where(Span.trace_id == trace_id))
    assert trace is not None and span is not None
    return trace, span


def with_versions(gw: LiveServer, name: str, texts: list[str], **extra: Any) -> list[dict[str, Any]]:
    """A chat prompt with one version per text (each a different system message)."""
    out = []
    for text in texts:
        body = {
            "name": name,
            "messages": [{"role": "system", "content": text}, {"role": "user", "content": "{{ q }}"}],
            "model": {"name": "pr-route"},
            **extra,
        }
        out.append(push(gw, body))
    return out


# --- rendering and parameters ----------------------------------------------------------------------


def test_sdk_prompt_reference_renders_applies_params_and_links_the_trace(gw: LiveServer, upstream: FakeServer) -> None:
    v1 = push(gw, SUPPORT)
    set_label(gw, "support-reply", "production", 1)
    refresh(gw)
    raw = sdk(gw).chat.completions.with_raw_response.create(
        model="",  # empty: the prompt's model applies
        messages=[{"role": "user", "content": "Also, can I change the address?"}],
        extra_body={"prompt": {"name": "support-reply", "label": "production", "variables": VARS}},
    )
    assert raw.headers["x-podium-prompt-version"] == "support-reply@1"
    assert raw.headers["x-podium-route"] == "pr-route"
    assert raw.parse().choices[0].message.content == "echo: Also, can I change the address?"
    sent = upstream.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "You are a support agent for Acme."},
        {"role": "user", "content": "Order A-17 is late by 3 days. Where is it?"},
        {"role": "user", "content": "Also, can I change the address?"},
    ]
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["seed"]) == ("up-a", 0.2, 256, 7)
    assert "prompt" not in sent
    trace, span = trace_and_span(gw, raw.headers["x-podium-trace-id"])
    assert span.prompt_version_id == v1["id"]
    assert trace.meta["prompt"] == "support-reply@1" and trace.meta["prompt_label"] == "production"
    assert "experiment" not in trace.meta
    assert "Order A-17 is late" in (trace.input or "")  # the trace holds the rendered request
    with gw.client() as c:  # and the trace API links the span to the version
        page = c.get(f"/api/traces/{trace.id}/spans").json()
        assert [s["prompt_version_id"] for s in page["spans"]] == [v1["id"]]
        assert c.get(f"/api/traces/{trace.id}").json()["metadata"]["prompt"] == "support-reply@1"
        assert c.get(f"/api/prompts/versions/{span.prompt_version_id}").json()["version"] == 1


def test_request_parameters_win_over_the_prompts(gw: LiveServer, upstream: FakeServer) -> None:
    push(gw, SUPPORT)
    refresh(gw)
    ref = {"name": "support-reply", "variables": {**VARS, "company": "Globex"}}
    r = post(gw, {"prompt": ref, "temperature": 0.9, "max_tokens": 5, "model": "pr-cached"})
    assert r.status_code == 200, r.text
    assert r.headers["x-podium-route"] == "pr-cached"  # the request's model beats the prompt's
    sent = upstream.requests[-1]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.9, 5, 7)
    assert sent["messages"][0]["content"] == "You are a support agent for Globex."
    # no model at all: the prompt's; the newer max_completion_tokens keeps the prompt's max_tokens out
    r = post(gw, {"prompt": ref, "max_completion_tokens": 9})
    assert r.status_code == 200, r.text
    assert r.headers["x-podium-route"] == "pr-route"
    sent = upstream.requests[-1]
    assert sent["max_completion_tokens"] == 9 and "max_tokens" not in sent
    assert sent["temperature"] == 0.2


def test_tools_and_response_format_come_from_the_prompt_unless_the_request_has_them(
    gw: LiveServer, upstream: FakeServer
) -> None:
    tool = {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}
    other = {"type": "function", "function": {"name": "other_tool", "parameters": {"type": "object"}}}
    schema = {"type": "json_schema", "json_schema": {"name": "reply", "schema": {"type": "object"}}}
    push(
        gw,
        {
            "name": "tooled",
            "template": "Check order {{ order_id }}",
            "model": {"name": "pr-route", "tool_choice": "auto"},
            "tools": [tool],
            "response_format": schema,
        },
    )
    refresh(gw)
    ref = {"name": "tooled", "version": 1, "variables": {"order_id": "9"}}
    r = post(gw, {"prompt": ref})
    assert r.status_code == 200, r.text
    sent = upstream.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "Check order 9"}]  # a text prompt: one user message
    assert (sent["tools"], sent["tool_choice"], sent["response_format"]) == ([tool], "auto", schema)
    r = post(gw, {"prompt": ref, "tools": [other], "response_format": {"type": "text"}, "tool_choice": "none"})
    assert r.status_code == 200, r.text
    sent = upstream.requests[-1]
    assert (sent["tools"], sent["tool_choice"], sent["response_format"]) == ([other], "none", {"type": "text"})


# --- labels and versions ---------------------------------------------------------------------------


def test_moving_a_label_switches_the_version_after_a_refresh(gw: LiveServer, upstream: FakeServer) -> None:
    v1, v2 = with_versions(gw, "movable", ["first system", "second system"])
    set_label(gw, "movable", "production", 1)
    refresh(gw)
    ref = {"name": "movable", "label": "production", "variables": {"q": "hi"}}
    r = post(gw, {"prompt": ref})
    assert r.headers["x-podium-prompt-version"] == "movable@1"
    assert upstream.requests[-1]["messages"][0]["content"] == "first system"
    set_label(gw, "movable", "production", 2)
    refresh(gw)
    r = post(gw, {"prompt": ref})
    assert r.headers["x-podium-prompt-version"] == "movable@2"
    assert upstream.requests[-1]["messages"][0]["content"] == "second system"
    assert trace_and_span(gw, r.headers["x-podium-trace-id"])[1].prompt_version_id == v2["id"]
    # without an explicit refresh, the background refresher picks a move up within a couple of seconds
    set_label(gw, "movable", "production", 1)
    deadline = time.monotonic() + 5
    while post(gw, {"prompt": ref}).headers["x-podium-prompt-version"] != "movable@1":
        assert time.monotonic() < deadline, "the label move was not seen within 5 s"
        time.sleep(0.1)
    assert upstream.requests[-1]["messages"][0]["content"] == "first system"
    assert v1["id"] != v2["id"]


def test_an_older_version_pinned_by_number_is_read_on_demand(gw: LiveServer, upstream: FakeServer) -> None:
    versions = with_versions(gw, "pinned", ["one", "two", "three"])
    refresh(gw)
    directory = gw.app.state.runtime.get(PromptDirectory)
    entry = directory.entry("pinned")
    assert set(entry.versions) == {3}  # only `latest` is loaded eagerly; no label points anywhere else
    for pin in (1, "v1", "1"):
        r = post(gw, {"prompt": {"name": "pinned", "version": pin, "variables": {"q": "x"}}})
        assert r.status_code == 200, r.text
        assert r.headers["x-podium-prompt-version"] == "pinned@1"
        assert upstream.requests[-1]["messages"][0]["content"] == "one"
    assert trace_and_span(gw, r.headers["x-podium-trace-id"])[1].prompt_version_id == versions[0]["id"]
    assert (entry.id, 1) in directory._pinned
    r = post(gw, {"prompt": {"name": "pinned", "variables": {"q": "x"}}})  # no label: latest
    assert r.headers["x-podium-prompt-version"] == "pinned@3"


# --- bad references --------------------------------------------------------------------------------


def test_missing_variables_are_all_listed(gw: LiveServer, upstream: FakeServer) -> None:
    push(gw, SUPPORT)
    refresh(gw)
    r = post(gw, {"prompt": {"name": "support-reply", "variables": {"days": 2}}})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "missing_variables" and error["param"] == "prompt.variables"
    assert "order_id" in error["message"] and "question" in error["message"]
    assert "company" not in error["message"] and "days" not in error["message"]  # a default, and a given value
    r = post(gw, {"prompt": {"name": "support-reply"}})
    assert r.status_code == 400
    assert all(n in r.json()["error"]["message"] for n in ("order_id", "days", "question"))
    # through the SDK too
    with pytest.raises(openai.BadRequestError) as err:
        sdk(gw).chat.completions.create(
            model="", messages=[], extra_body={"prompt": {"name": "support-reply", "variables": {"order_id": "1"}}}
        )
    assert "days" in str(err.value) and "question" in str(err.value)
    r = post(gw, {"prompt": {"name": "support-reply", "variables": {**VARS, "days": "many"}}})
    assert r.status_code == 400 and "days" in r.json()["error"]["message"]
    assert upstream.chats == 0


def test_a_template_that_loops_too_long_is_stopped_off_the_event_loop(gw: LiveServer, upstream: FakeServer) -> None:
    push(
        gw,
        {
            "name": "looper",
            "template": "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}hi",
            "variables": {"n": {"type": "integer"}},
            "model": {"name": "pr-route"},
        },
    )
    refresh(gw)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(post, gw, {"prompt": {"name": "looper", "variables": {"n": 100_000}}})
        # while it renders, the server answers others: the render runs off the event loop
        with gw.client() as c:
            while not slow.done():
                assert c.get("/v1/models").status_code == 200
                if not slow.done():
                    break
        r = slow.result()
    assert r.status_code == 400 and r.json()["error"]["code"] == "render_timeout", r.text
    assert upstream.chats == 0


def test_unknown_prompts_labels_and_versions_are_404s_naming_what_exists(gw: LiveServer, upstream: FakeServer) -> None:
    with_versions(gw, "known-one", ["a"])
    set_label(gw, "known-one", "staging", 1)
    refresh(gw)
    r = post(gw, {"prompt": {"name": "known-one", "label": "production", "variables": {"q": "x"}}})
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["param"] == "prompt.label" and error["type"] == "not_found_error"
    assert "no label 'production'" in error["message"] and "staging" in error["message"]
    r = post(gw, {"prompt": {"name": "no-such-prompt", "variables": {}}})
    assert r.status_code == 404 and "known-one" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "prompt.name"
    r = post(gw, {"prompt": {"name": "known-one", "version": 99}})
    assert r.status_code == 404 and "no version 99" in r.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        sdk(gw).chat.completions.create(model="", messages=[], extra_body={"prompt": {"name": "no-such-prompt"}})
    assert upstream.chats == 0


@pytest.mark.parametrize(
    ("prompt", "param"),
    [
        ("support-reply", "prompt"),
        ({"label": "production"}, "prompt.name"),
        ({"name": ""}, "prompt.name"),
        ({"name": "known-one", "label": "staging", "version": 1}, "prompt.version"),
        ({"name": "known-one", "version": "newest"}, "prompt.version"),
        ({"name": "known-one", "version": True}, "prompt.version"),
        ({"name": "known-one", "label": 3}, "prompt.label"),
        ({"name": "known-one", "variables": ["q"]}, "prompt.variables"),
        ({"name": "known-one", "vars": {}}, "prompt.vars"),
    ],
)
def test_a_badly_shaped_reference_is_a_400_naming_the_field(
    gw: LiveServer, upstream: FakeServer, prompt: Any, param: str
) -> None:
    r = post(gw, {"prompt": prompt})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()
    assert upstream.chats == 0


def test_appended_messages_are_still_checked(gw: LiveServer, upstream: FakeServer) -> None:
    with_versions(gw, "checked", ["sys"])
    refresh(gw)
    r = post(gw, {"prompt": {"name": "checked", "variables": {"q": "x"}}, "messages": [{"content": "no role"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[2]"
    r = post(gw, {"prompt": {"name": "checked", "variables": {"q": "x"}}, "messages": "hello"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    assert upstream.chats == 0


# --- streaming and the cache -----------------------------------------------------------------------


def test_streaming_with_a_prompt_reference(gw: LiveServer, upstream: FakeServer) -> None:
    v1 = push(gw, SUPPORT)
    refresh(gw)
    raw = sdk(gw).chat.completions.with_raw_response.create(
        model="",
        messages=[],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"prompt": {"name": "support-reply", "version": 1, "variables": VARS}},
    )
    assert raw.headers["x-podium-prompt-version"] == "support-reply@1"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: Order A-17 is late by 3 days. Where is it?"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18
    sent = upstream.requests[-1]
    assert sent["stream"] is True and sent["temperature"] == 0.2 and len(sent["messages"]) == 2
    trace, span = trace_and_span(gw, raw.headers["x-podium-trace-id"])
    assert span.prompt_version_id == v1["id"] and trace.meta["stream"] is True


def test_two_prompt_versions_never_share_a_cache_entry(gw: LiveServer, upstream: FakeServer) -> None:
    with_versions(gw, "cacheable", ["version one", "version two"])
    refresh(gw)
    base = {"model": "pr-cached", "temperature": 0}

    def ask(version: int) -> httpx.Response:
        r = post(gw, {**base, "prompt": {"name": "cacheable", "version": version, "variables": {"q": "same"}}})
        assert r.status_code == 200, r.text
        return r

    assert ask(1).headers["x-podium-cache"] == "miss"
    assert ask(2).headers["x-podium-cache"] == "miss"
    assert upstream.chats == 2
    again = ask(1)
    assert again.headers["x-podium-cache"] == "hit" and again.headers["x-podium-prompt-version"] == "cacheable@1"
    assert ask(2).headers["x-podium-cache"] == "hit"
    assert upstream.chats == 2
    # the rendered request is what is cached: the same messages sent by hand hit the entry of version 1
    plain = post(
        gw, {**base, "messages": [{"role": "system", "content": "version one"}, {"role": "user", "content": "same"}]}
    )
    assert plain.headers["x-podium-cache"] == "hit"


# --- experiments -----------------------------------------------------------------------------------


def start_experiment(
    gw: LiveServer, prompt: str, shares: dict[int, float], sticky_by: str = "user", label: str | None = None
) -> str:
    """Rows as the experiments service writes them: a running experiment and its arms."""
    exp_id = new_id("exp")
    with gw.platform.db.session() as s:
        pid = s.scalar(select(Prompt.id).where(Prompt.name == prompt))
        rows = s.execute(select(PromptVersion.version, PromptVersion.id).where(PromptVersion.prompt_id == pid))
        ids = {number: vid for number, vid in rows}
        s.add(
            Experiment(
                id=exp_id,
                prompt_id=pid,
                name=f"{prompt}-ab",
                status="running",
                sticky_by=sticky_by,
                config={"label": label} if label else {},
            )
        )
        s.flush()
        for number, share in shares.items():
            s.add(ExperimentArm(experiment_id=exp_id, version_id=ids[number], share=share))
    refresh(gw)
    return exp_id


def stop_experiment(gw: LiveServer, exp_id: str) -> None:
    with gw.platform.db.session() as s:
        s.execute(update(Experiment).where(Experiment.id == exp_id).values(status="stopped"))
    refresh(gw)


def test_an_experiment_splits_users_stickily_and_traces_record_the_arm(gw: LiveServer, upstream: FakeServer) -> None:
    versions = with_versions(gw, "split", ["arm one", "arm two", "unused three"])
    set_label(gw, "split", "production", 3)
    exp_id = start_experiment(gw, "split", {1: 0.5, 2: 0.5})

    def ask(user: str | None, **ref: Any) -> httpx.Response:
        body: dict[str, Any] = {"prompt": {"name": "split", "label": "production", "variables": {"q": "x"}, **ref}}
        if user is not None:
            body["user"] = user
        r = post(gw, body)
        assert r.status_code == 200, r.text
        return r

    for user in ("alice", "bob", "carol"):
        seen = {ask(user).headers["x-podium-prompt-version"] for _ in range(20)}
        assert len(seen) == 1, (user, seen)  # the same user always gets the same version
    counts = Counter(ask(f"user-{i}").headers["x-podium-prompt-version"] for i in range(200))
    assert set(counts) == {"split@1", "split@2"}, counts  # the labelled version 3 is not an arm
    assert all(70 <= n <= 130 for n in counts.values()), counts
    # the upstream got the arm's content, and the trace records the experiment, the arm and the version
    r = ask("alice")
    arm = int(r.headers["x-podium-prompt-version"].split("@")[1])
    assert upstream.requests[-1]["messages"][0]["content"] == ("arm one" if arm == 1 else "arm two")
    trace, span = trace_and_span(gw, r.headers["x-podium-trace-id"])
    assert (trace.meta["experiment"], trace.meta["arm"]) == (exp_id, arm)
    assert span.prompt_version_id == versions[arm - 1]["id"] and trace.user_id == "alice"
    # an explicit version is not part of the experiment
    pinned = ask("alice", label=None, version=3)
    assert pinned.headers["x-podium-prompt-version"] == "split@3"
    assert "experiment" not in trace_and_span(gw, pinned.headers["x-podium-trace-id"])[0].meta
    # without a user the arm is drawn at random: both arms show up
    assert {ask(None).headers["x-podium-prompt-version"] for _ in range(40)} == {"split@1", "split@2"}
    # stopped: the label applies again
    stop_experiment(gw, exp_id)
    assert ask("alice").headers["x-podium-prompt-version"] == "split@3"


def test_an_experiment_sticky_by_session(gw: LiveServer, upstream: FakeServer) -> None:
    with_versions(gw, "by-session", ["s one", "s two"])
    exp_id = start_experiment(gw, "by-session", {1: 0.5, 2: 0.5}, sticky_by="session")
    ref = {"name": "by-session", "variables": {"q": "x"}}
    by_header: dict[str, set[str]] = {}
    for i in range(60):
        session = f"sess-{i % 30}"
        r = post(gw, {"prompt": ref, "user": f"u{i}"}, **{"x-podium-session-id": session})
        by_header.setdefault(session, set()).add(r.headers["x-podium-prompt-version"])
    assert all(len(v) == 1 for v in by_header.values()), by_header  # sticky by session, not by user
    assert set().union(*by_header.values()) == {"by-session@1", "by-session@2"}
    # `metadata.session_id` is the same key as the header
    r = post(gw, {"prompt": ref, "metadata": {"session_id": "sess-3"}, "user": "someone"})
    assert {r.headers["x-podium-prompt-version"]} == by_header["sess-3"]
    trace, _ = trace_and_span(gw, r.headers["x-podium-trace-id"])
    assert trace.session_id == "sess-3" and trace.meta["experiment"] == exp_id
    stop_experiment(gw, exp_id)


def test_an_experiment_scoped_to_a_label_leaves_other_labels_alone(gw: LiveServer, upstream: FakeServer) -> None:
    with_versions(gw, "scoped", ["one", "two", "three", "four"])
    set_label(gw, "scoped", "production", 1)
    set_label(gw, "scoped", "staging", 3)
    exp_id = start_experiment(gw, "scoped", {1: 0.5, 2: 0.5}, label="production")

    def version(**ref: Any) -> str:
        r = post(gw, {"prompt": {"name": "scoped", "variables": {"q": "x"}, **ref}, "user": "ada"})
        assert r.status_code == 200, r.text
        return str(r.headers["x-podium-prompt-version"])

    assert {version(label="production") for _ in range(3)} <= {"scoped@1", "scoped@2"}
    assert {post(gw, {"prompt": {"name": "scoped", "label": "production", "variables": {"q": "x"}}, "user": f"u{i}"})
            .headers["x-podium-prompt-version"] for i in range(40)} == {"scoped@1", "scoped@2"}  # fmt: skip
    assert version(label="staging") == "scoped@3"  # another label: its own version
    assert version() == "scoped@4"  # no label: the latest
    stop_experiment(gw, exp_id)


def test_requests_without_a_prompt_are_unchanged(gw: LiveServer, upstream: FakeServer) -> None:
    body = {"model": "pr-route", "messages": [{"role": "user", "content": "plain"}], "temperature": 0.5}
    r = post(gw, body, **{"x-podium-session-id": "plain-session"})
    assert r.status_code == 200 and "x-podium-prompt-version" not in r.headers
    assert {k: v for k, v in upstream.requests[-1].items() if k != "stream"} == {**body, "model": "up-a"}
    trace, span = trace_and_span(gw, r.headers["x-podium-trace-id"])
    assert span.prompt_version_id is None and "prompt" not in trace.meta
    assert trace.session_id == "plain-session"
