"""Chains through the API of a live server, its model calls going through the gateway to a scripted upstream
(the mock may script tool calls), its tools loaded from tests/chain_tools.py by the `tool_modules` setting:
pushing and labelling versions, a run of every step type with its trace tree and totals counted once,
retries and fallbacks, failing and hanging tools, a model answer that does not match the output schema, an
agent loop that calls tools and reads a tool's error, streamed step events, and tenancy."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podium.gateway.table import RouteTable
from podium.prompts.directory import PromptDirectory

from .conftest import LiveServer, project_key, serve_for_module
from .evalfake import EvalFake, Rule, start_eval_fake

CHAT = "chain-chat"
MCP_FIXTURE = Path(__file__).with_name("mcp_server_fixture.py")
EMBED = "chain-embed"


@pytest.fixture(scope="module")
def fake() -> Iterator[EvalFake]:
    server = start_eval_fake()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory, fake: EvalFake) -> Iterator[LiveServer]:
    mcp_servers = [
        {"name": "fixture", "transport": "stdio", "command": sys.executable, "args": [str(MCP_FIXTURE)]},
        {"name": "broken", "transport": "stdio", "command": "/nonexistent/mcp-server", "timeout": 5},
    ]
    folder = tmp_path_factory.mktemp(f"chains-{backend}")
    for live in serve_for_module(backend, folder, tool_modules=["tests.chain_tools"], mcp_servers=mcp_servers):
        with live.client() as c:
            for model in (CHAT, EMBED):
                deployment = {"name": "a", "provider": "openai", "base_url": fake.url + "/v1", "model": model}
                r = c.post("/api/routes", json={"name": model, "deployments": [deployment]})
                assert r.status_code == 201, r.text
        live.app.state.runtime.get(RouteTable).refresh()
        yield live


@pytest.fixture(autouse=True)
def _reset(fake: EvalFake) -> None:
    fake.reset()


def push(live: LiveServer, name: str, source: str, key: str | None = None, expect: int = 201) -> dict[str, Any]:
    with live.client(key) as c:
        r = c.post(f"/api/chains/{name}/versions", json={"source": source, "message": "test"})
    assert r.status_code == expect, r.text
    return dict(r.json())


def run(live: LiveServer, name: str, inputs: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    with live.client(key) as c:
        r = c.post(f"/api/chains/{name}/run", json={"inputs": inputs}, timeout=60)
    assert r.status_code == 200, r.text
    return dict(r.json())


def stored(live: LiveServer, trace_id: str, spans: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The trace and its spans once `spans` of them are written (parts arrive through the trace writer)."""
    deadline = time.monotonic() + 20
    with live.client() as c:
        while True:
            r = c.get(f"/api/traces/{trace_id}/spans")
            if r.status_code == 200:
                found = r.json()["spans"]
                if len(found) >= spans:  # the trace row after its spans: a part's row and spans commit together
                    return c.get(f"/api/traces/{trace_id}").json(), found
            if time.monotonic() > deadline:
                names = [
                    (s["name"], s["kind"], s["parent_id"])
                    for s in c.get(f"/api/traces/{trace_id}/spans").json()["spans"]
                ]
                raise AssertionError(f"trace {trace_id}: {len(names)} spans: {names}")
            time.sleep(0.1)


SUPPORT = f"""
description: classify, look up, answer
inputs:
  question: string
  order: {{type: string, default: A-17}}
steps:
  - id: screen
    type: guardrail
    guardrail: regex_deny
    settings: {{patterns: ["password"], message: "no passwords"}}
    input: "{{{{ inputs.question }}}}"
  - id: classify
    type: llm
    model: {CHAT}
    input: "classify: {{{{ steps.screen }}}}"
    output_schema:
      type: object
      properties: {{category: {{type: string, enum: [orders, other]}}}}
      required: [category]
  - id: route
    type: branch
    value: steps.classify.category
    cases:
      orders: {{id: order_info, type: tool, tool: lookup_order, arguments: {{order_id: "{{{{ inputs.order }}}}"}}}}
    default: {{id: nothing, type: transform, expression: "{{}}"}}
  - id: words
    type: transform
    expression: "inputs.question.split()"
  - id: lengths
    type: map
    over: steps.words
    concurrency: 2
    step: {{id: count, type: tool, tool: add, arguments: {{a: "{{{{ item | length }}}}", b: "{{{{ index }}}}"}}}}
  - id: both
    type: parallel
    steps:
      - {{id: shout, type: transform, expression: "inputs.question | upper"}}
      - {{id: answer, type: llm, model: {CHAT}, input: "say:status {{{{ steps.route.status }}}}"}}
output: "{{'category': steps.classify.category, 'status': steps.route.status, 'lengths': steps.lengths,
  'answer': steps.both.answer, 'shout': steps.both.shout}}"
"""


def test_push_label_diff_and_tenancy(live: LiveServer) -> None:
    first = push(live, "versions", "steps:\n  - {id: a, type: transform, expression: '1 + 1'}\n")
    assert first["created"] is True and first["version"]["version"] == 1
    again = push(live, "versions", "steps:\n  - {id: a, type: transform, expression: '1 + 1'}\n", expect=200)
    assert again["created"] is False and again["version"]["id"] == first["version"]["id"]
    second = push(live, "versions", "steps:\n  - {id: a, type: transform, expression: '2 + 2'}\n")
    assert second["version"]["version"] == 2
    with live.client() as c:
        assert c.put("/api/chains/versions/labels/prod", json={"version": 1}).status_code == 200
        detail = c.get("/api/chains/versions").json()
        assert detail["labels"] == {"prod": 1} and [v["version"] for v in detail["versions"]] == [2, 1]
        assert c.get("/api/chains/versions/versions/prod").json()["version"] == 1
        d = c.get("/api/chains/versions/diff", params={"a": "prod", "b": "latest"}).json()
        assert "-  - {id: a, type: transform, expression: '1 + 1'}" in d["diff"] and "+  - {id: a" in d["diff"]
        assert c.post("/api/chains/versions/run", json={"version": "prod"}).json()["output"] == 2
        assert c.post("/api/chains/versions/run", json={}).json()["output"] == 4
        assert any(ch["name"] == "versions" for ch in c.get("/api/chains").json())
        # bad chains: 400 naming the step, nothing stored
        r = c.post("/api/chains/versions/versions", json={"source": "steps:\n  - {id: a, type: nope}"})
        assert r.status_code == 400 and "step 'a' has an unknown type 'nope'" in r.json()["error"]["message"]
        r = c.post("/api/chains/versions/versions", json={"source": "steps: ["})
        assert r.status_code == 400 and "not valid YAML at line 1" in r.json()["error"]["message"]
        assert len(c.get("/api/chains/versions").json()["versions"]) == 2
        # unknown inputs are refused before anything runs
        r = c.post("/api/chains/versions/run", json={"inputs": {"x": 1}})
        assert r.status_code == 400 and "unknown input x" in r.json()["error"]["message"]
    # another project's key sees nothing of it, and cannot take its name
    other = project_key(live, "chains-other")
    with live.client(other) as c:
        assert c.get("/api/chains/versions").status_code == 404
        assert c.post("/api/chains/versions/run", json={}).status_code == 404
        assert all(ch["name"] != "versions" for ch in c.get("/api/chains").json())
        r = c.post(
            "/api/chains/versions/versions", json={"source": "steps:\n  - {id: a, type: transform, expression: '1'}"}
        )
        assert r.status_code == 409
    viewer = project_key(live, "chains-viewers", role="viewer")
    with live.client(viewer) as c:
        r = c.post(
            "/api/chains/mine/versions", json={"source": "steps:\n  - {id: a, type: transform, expression: '1'}"}
        )
        assert r.status_code == 403


def test_a_run_of_every_step_type_is_one_trace_with_its_step_tree(live: LiveServer, fake: EvalFake) -> None:
    from . import chain_tools

    fake.rules.append(Rule("classify:", '{"category": "orders"}'))
    push(live, "support", SUPPORT)
    chain_tools.CALLS.clear()
    result = run(live, "support", {"question": "where is my parcel"})
    assert result["status"] == "ok", result
    assert result["output"] == {
        "category": "orders",
        "status": "shipped",
        "lengths": [5, 3, 4, 9],  # len(word) + index
        "answer": "status shipped",
        "shout": "WHERE IS MY PARCEL",
    }
    assert ("lookup_order", {"order_id": "A-17"}) in chain_tools.CALLS
    # the classify call asked the model for JSON of the step's schema
    classify = next(b for b in fake.requests if "classify:" in json.dumps(b))
    assert classify["response_format"]["json_schema"]["schema"]["required"] == ["category"]
    steps = {s["step"]: s for s in result["steps"]}
    assert {"screen", "classify", "route", "order_info", "words", "lengths", "count[0]", "both", "answer"} <= set(steps)
    assert all(s["status"] == "ok" for s in result["steps"])

    # 1 chain span + 13 step spans (screen, classify, route, order_info, words, lengths, 4 counts, both, shout,
    # answer) + 2 model-call spans written by the gateway under their steps
    trace, spans = stored(live, result["trace_id"], 16)
    by_id = {s["id"]: s for s in spans}
    root = next(s for s in spans if s["parent_id"] is None)
    assert root["kind"] == "chain" and root["name"] == "chain support@1"
    named = {s["name"]: s for s in spans}
    assert by_id[named["order_info"]["parent_id"]]["name"] == "route"  # the case under its branch
    assert by_id[named["count[3]"]["parent_id"]]["name"] == "lengths"
    llm = [s for s in spans if s["kind"] == "llm"]
    assert len(llm) == 2 and {by_id[s["parent_id"]]["name"] for s in llm} == {"classify", "answer"}
    # usage is owned by the model calls' spans and counted once on the trace
    assert trace["prompt_tokens"] == 40 and trace["completion_tokens"] == 10
    assert sum(s["prompt_tokens"] for s in spans) == 40
    assert trace["name"] == "chain support@1" and trace["source"] == "chain" and trace["status"] == "ok"
    assert json.loads(trace["input"]) == {"question": "where is my parcel", "order": "A-17"}

    # the guardrail step stops a run and says which step
    blocked = run(live, "support", {"question": "my password is hunter2"})
    assert blocked["status"] == "error" and blocked["failed_step"] == "screen"
    assert "no passwords" in blocked["error"]


def test_retries_fallbacks_and_failing_tools(live: LiveServer, fake: EvalFake) -> None:
    source = f"""
steps:
  - id: flaky
    type: llm
    model: {CHAT}
    input: "fail:400"
    retries: 1
    fallback: {{id: spare, type: transform, expression: "'fallback answer'"}}
  - id: structured
    type: llm
    model: {CHAT}
    input: "say:not json at all"
    retries: 1
    output_schema: {{type: object, properties: {{n: {{type: integer}}}}, required: [n]}}
    fallback: {{id: default_n, type: transform, expression: "{{'n': 0}}"}}
output: "[steps.flaky, steps.structured]"
"""
    push(live, "flaky", source)
    result = run(live, "flaky", {})
    assert result["status"] == "ok" and result["output"] == ["fallback answer", {"n": 0}]
    statuses = {s["step"]: s["status"] for s in result["steps"]}
    assert statuses["flaky"] == "fallback" and statuses["spare"] == "ok" and statuses["structured"] == "fallback"
    # two attempts each reached the upstream
    assert sum(1 for b in fake.requests if "fail:400" in json.dumps(b)) == 2
    assert sum(1 for b in fake.requests if "not json" in json.dumps(b)) == 2
    _, spans = stored(live, result["trace_id"], 7)
    flaky = next(s for s in spans if s["name"] == "flaky")
    assert flaky["status"] == "error" and len(flaky["attributes"]["errors"]) == 2

    # JSON of the wrong shape, retried, then a clear failure naming the step (no fallback)
    wrong = (
        "steps:\n  - id: shaped\n    type: llm\n    model: " + CHAT + "\n"
        '    input: \'say:{"n": "seven"}\'\n    retries: 1\n'
        "    output_schema: {type: object, properties: {n: {type: integer}}, required: [n]}\n"
    )
    push(live, "schema-fails", wrong)
    shaped = run(live, "schema-fails", {})
    assert shaped["status"] == "error" and shaped["failed_step"] == "shaped"
    assert "does not match the output schema" in shaped["error"] and "integer" in shaped["error"]
    assert sum(1 for b in fake.requests if "seven" in json.dumps(b)) == 2

    push(live, "tools-fail", "steps:\n  - {id: boom, type: tool, tool: explode, arguments: {reason: gas}}\n")
    failed = run(live, "tools-fail", {})
    assert failed["status"] == "error" and failed["failed_step"] == "boom"
    assert "tool 'explode' raised RuntimeError: exploded: gas" in failed["error"]

    push(
        live, "tools-hang", "steps:\n  - {id: wait, type: tool, tool: hang, timeout: 0.3, arguments: {seconds: '2'}}\n"
    )
    started = time.monotonic()
    hung = run(live, "tools-hang", {})
    assert hung["status"] == "error" and hung["error"] == "step 'wait' failed: timed out after 0.3 s"
    assert time.monotonic() - started < 2.0  # the run did not wait for the tool

    push(live, "tools-args", "steps:\n  - {id: bad, type: tool, tool: add, arguments: {a: 'x'}}\n")
    bad = run(live, "tools-args", {})
    assert bad["status"] == "error" and "tool 'add' argument 'a'" in bad["error"]

    push(live, "tools-missing", "steps:\n  - {id: gone, type: tool, tool: nowhere}\n")
    missing = run(live, "tools-missing", {})
    assert missing["status"] == "error" and "there is no tool 'nowhere'" in missing["error"]


def test_an_agent_calls_tools_reads_their_errors_and_answers(live: LiveServer, fake: EvalFake) -> None:
    fake.rules += [
        Rule("order A-9", "", tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "A-9"}}]),
        Rule(
            '"status":"shipped"', "", tool_calls=[{"name": "explode", "arguments": {"reason": "test"}}], after_tool=True
        ),
        Rule("exploded: test", "Your order A-9 has shipped.", after_tool=True),
    ]
    source = f"""
inputs: {{question: string}}
steps:
  - id: helper
    type: agent
    model: {CHAT}
    instructions: You answer questions about orders.
    input: "{{{{ inputs.question }}}}"
    tools: [lookup_order, explode]
    tool_choice: lookup_order
    max_turns: 4
"""
    push(live, "agent", source)
    result = run(live, "agent", {"question": "where is order A-9"})
    assert result["status"] == "ok", result
    assert result["output"] == "Your order A-9 has shipped."
    chats = [b for b in fake.requests if "messages" in b]
    assert len(chats) == 3
    assert [t["function"]["name"] for t in chats[0]["tools"]] == ["lookup_order", "explode"]
    # the first call is held to the named tool; later ones go back to auto, so a forced call cannot loop
    assert chats[0]["tool_choice"] == {"type": "function", "function": {"name": "lookup_order"}}
    assert "tool_choice" not in chats[1] and "tool_choice" not in chats[2]
    tool_messages = [m for m in chats[2]["messages"] if m["role"] == "tool"]
    assert json.loads(tool_messages[0]["content"])["status"] == "shipped"
    assert tool_messages[1]["content"].startswith("error: tool 'explode' raised RuntimeError")
    _, spans = stored(live, result["trace_id"], 7)  # chain, agent step, 3 model calls, 2 tool calls
    tools = [s for s in spans if s["kind"] == "tool"]
    assert [t["name"] for t in tools] == ["lookup_order", "explode"] or {t["name"] for t in tools} == {
        "lookup_order",
        "explode",
    }
    assert next(t for t in tools if t["name"] == "explode")["status"] == "error"

    # the turn limit: a model that never stops calling tools fails the step, naming it
    fake.rules.insert(
        0, Rule("loop forever", "", tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "L"}}])
    )
    fake.rules.insert(
        0,
        Rule(
            '"order_id":"L"', "", tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "L"}}], after_tool=True
        ),
    )
    looping = run(live, "agent", {"question": "loop forever"})
    assert looping["status"] == "error" and looping["failed_step"] == "helper"
    assert "4 model calls without a final answer" in looping["error"]


def test_a_run_streams_its_step_events(live: LiveServer) -> None:
    push(
        live,
        "streamed",
        "steps:\n  - {id: a, type: transform, expression: '1'}\n"
        "  - {id: b, type: transform, expression: 'steps.a + 1'}\n",
    )
    with live.client() as c:
        r = c.post("/api/chains/streamed/run", json={"stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    kinds = [(e["type"], e.get("step")) for e in events]
    assert kinds[0] == ("run_started", None)
    assert kinds.index(("step_finished", "a")) < kinds.index(("step_started", "b"))
    assert events[-2]["type"] == "run_finished" and events[-2]["output"] == 2
    assert events[-1]["type"] == "run" and events[-1]["run"]["status"] == "ok"
    assert r.text.rstrip().endswith("data: [DONE]")
    with live.client() as c:
        runs = c.get("/api/chains/streamed/runs").json()
        assert runs[0]["output"] == 2 and runs[0]["status"] == "ok"
        one = c.get(f"/api/chains/streamed/runs/{runs[0]['id']}").json()
        assert [s["step"] for s in one["steps"]] == ["a", "b"]


def test_any_openai_client_calls_a_chain_through_v1(live: LiveServer, fake: EvalFake) -> None:
    import openai

    source = f"""
inputs: {{question: string, tone: {{type: string, default: plain}}}}
steps:
  - id: answer
    type: llm
    model: {CHAT}
    input: "say:{{{{ inputs.tone }}}} answer to {{{{ inputs.question }}}}"
"""
    push(live, "served", source)
    with live.client() as c:
        assert c.put("/api/chains/served/labels/prod", json={"version": 1}).status_code == 200
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=live.admin_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="chain:served@prod", messages=[{"role": "user", "content": "why is the sky blue"}]
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "plain answer to why is the sky blue"
    assert reply.usage is not None and reply.usage.prompt_tokens == 20 and reply.usage.completion_tokens == 5
    assert raw.headers["x-podium-chain-version"] == "served@1"
    trace, spans = stored(live, raw.headers["x-podium-trace-id"], 3)
    assert trace["name"] == "chain served@1" and trace["prompt_tokens"] == 20  # one trace, usage counted once
    assert sorted(s["kind"] for s in spans) == ["chain", "chain", "llm"]
    with live.client() as c:
        run_row = c.get(f"/api/chains/served/runs/{raw.headers['x-podium-chain-run']}").json()
        assert run_row["source"] == "gateway" and run_row["prompt_tokens"] == 20
    # explicit inputs (an extension field) and a stream
    stream = client.chat.completions.create(
        model="chain:served",
        messages=[{"role": "user", "content": "ignored"}],
        stream=True,
        extra_body={"inputs": {"question": "tides", "tone": "short"}},
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == "short answer to tides"
    # errors in OpenAI's shape: an unknown chain, a failing step, a viewer
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="chain:nowhere", messages=[{"role": "user", "content": "x"}])
    push(live, "served-fails", f"steps:\n  - {{id: boom, type: llm, model: {CHAT}, input: 'fail:400'}}\n")
    with pytest.raises(openai.UnprocessableEntityError, match="step 'boom' failed"):
        client.chat.completions.create(model="chain:served-fails", messages=[{"role": "user", "content": "x"}])
    push(
        live,
        "served-inputs",
        "inputs: {a: string, b: string}\nsteps:\n  - {id: t, type: transform, expression: 'inputs.a'}\n",
    )
    with pytest.raises(openai.BadRequestError, match="needs the input"):
        client.chat.completions.create(model="chain:served-inputs", messages=[{"role": "user", "content": "x"}])
    viewer = project_key(live, "chains-viewers", role="viewer")
    as_viewer = openai.OpenAI(base_url=live.url + "/v1", api_key=viewer, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        as_viewer.chat.completions.create(model="chain:served", messages=[{"role": "user", "content": "x"}])


def test_a_chain_version_is_an_eval_target(live: LiveServer) -> None:
    source = f"""
inputs: {{question: string, prefix: {{type: string, default: ""}}}}
steps:
  - id: answer
    type: llm
    model: {CHAT}
    input: "say:{{{{ inputs.prefix }}}}{{{{ inputs.question }}}}"
"""
    push(live, "evaluated", source)
    rows = [{"q": "Paris", "p": "", "reference": "Paris"}, {"q": "Rome", "p": "not ", "reference": "Rome"}]
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    with live.client() as c:
        assert c.post("/api/datasets/chain-eval/import", params={"format": "jsonl"}, content=body).status_code == 201
        spec = {
            "name": "chain-target",
            "dataset": "chain-eval@1",
            "target": {"type": "chain", "chain": "evaluated", "inputs": {"question": "q", "prefix": "p"}},
            "evaluators": ["exact_match"],
        }
        r = c.post("/api/evals/runs", json=spec)
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while (run_row := c.get(f"/api/evals/runs/{run_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, run_row
            time.sleep(0.1)
        assert run_row["status"] == "succeeded", run_row
        assert run_row["target"]["type"] == "chain"
        got = c.get(f"/api/evals/runs/{run_id}/rows").json()["rows"]
        assert [g["output"] for g in got] == ["Paris", "not Rome"]
        assert [g["scores"]["exact_match"] for g in got] == [1.0, 0.0]
        # each row links the chain run's trace, and the runs say an evaluation made them
        trace = stored(live, got[0]["trace_id"], 3)[0]
        assert trace["name"] == "chain evaluated@1"
        assert {r["source"] for r in c.get("/api/chains/evaluated/runs").json()} == {"eval"}
        # a missing chain or column is refused before anything runs
        r = c.post("/api/evals/runs", json={**spec, "target": {"type": "chain", "chain": "nowhere"}})
        assert r.status_code == 404 and "target.chain" in r.json()["error"]["message"]
        r = c.post("/api/evals/runs", json={**spec, "target": {**spec["target"], "inputs": {"question": "zz"}}})
        assert r.status_code == 400 and "zz" in r.json()["error"]["message"]


def test_the_three_stage_support_chain_classifies_retrieves_and_answers_from_a_prompt(
    live: LiveServer, fake: EvalFake
) -> None:
    """The seeds' customer-service chain: classify the request, retrieve help articles from a knowledge base,
    answer with a prompt version that cites them."""
    docs = [
        {"text": "Refunds are paid within five days of the return.", "source": "refunds"},
        {"text": "Reset your password from the sign-in page.", "source": "accounts"},
        {"text": "Parcels ship from our warehouse every weekday.", "source": "shipping"},
    ]
    with live.client() as c:
        body = b"".join(json.dumps(d).encode() + b"\n" for d in docs)
        assert c.post("/api/datasets/help-articles/import", params={"format": "jsonl"}, content=body).status_code == 201
        assert c.post("/api/kb", json={"name": "help-center"}).status_code == 201
        build = {"dataset": "help-articles@1", "text_field": "text", "embedding_model": EMBED}
        job = c.post("/api/kb/help-center/build", json=build).json()["job"]
        deadline = time.monotonic() + 60
        while (state := c.get(f"/api/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert state["status"] == "succeeded", state
        assert c.put("/api/kb/help-center/labels/prod", json={"version": 1}).status_code == 200
        prompt = {
            "name": "support-reply",
            "messages": [
                {"role": "system", "content": "Answer from these articles: {{ context }}"},
                {"role": "user", "content": "{{ question }} ({{ category }})"},
            ],
        }
        assert c.post("/api/prompts", json=prompt).status_code == 201
        assert c.put("/api/prompts/support-reply/labels/prod", json={"version": 1}).status_code == 200
    live.app.state.runtime.get(PromptDirectory).refresh()  # the gateway's snapshot sees a new prompt within 1 s
    fake.rules.append(Rule("classify:", '{"category": "refunds"}'))
    fake.rules.append(Rule("(refunds)", "You will be refunded within five days [1]."))
    source = f"""
inputs: {{question: string}}
steps:
  - id: classify
    type: llm
    model: {CHAT}
    input: "classify: {{{{ inputs.question }}}}"
    output_schema: {{type: object, properties: {{category: {{type: string}}}}, required: [category]}}
  - id: articles
    type: retrieve
    kb: help-center@prod
    query: "{{{{ inputs.question }}}}"
    k: 2
    mode: vector
  - id: reply
    type: prompt
    prompt: support-reply@prod
    model: {CHAT}
    variables:
      question: "{{{{ inputs.question }}}}"
      category: "{{{{ steps.classify.category }}}}"
      context: "{{% for a in steps.articles %}}[{{{{ loop.index }}}}] {{{{ a.text }}}} {{% endfor %}}"
output: "{{'answer': steps.reply, 'sources': steps.articles | map(attribute='source') | list}}"
"""
    push(live, "support-bot", source)
    result = run(live, "support-bot", {"question": "when are refunds paid"})
    assert result["status"] == "ok", (result["error"], result["steps"])
    assert result["output"]["answer"] == "You will be refunded within five days [1]."
    assert result["output"]["sources"][0] == "refunds"  # the bag-of-letters embedding ranks it first
    sent = next(b for b in fake.requests if "(refunds)" in json.dumps(b))
    assert sent["messages"][0]["content"].startswith("Answer from these articles: [1] Refunds are paid")
    _, spans = stored(live, result["trace_id"], 5)
    by_name = {s["name"]: s for s in spans}
    retrieve = by_name["articles"]
    assert retrieve["kind"] == "retriever"
    assert retrieve["input"]["kb"] == "help-center@1"  # the exact version searched
    assert retrieve["output"][0]["source"] == "refunds"
    reply_call = next(s for s in spans if s["kind"] == "llm" and s["parent_id"] == by_name["reply"]["id"])
    assert reply_call["prompt_version_id"] is not None  # the model call is linked to the prompt version


def test_a_tool_that_needs_approval_waits_for_a_person(live: LiveServer, fake: EvalFake) -> None:
    import threading

    from . import chain_tools

    fake.rules += [
        Rule("refund order R-1", "", tool_calls=[{"name": "refund", "arguments": {"order_id": "R-1", "amount": 5}}]),
        Rule('"refunded":5', "Refunded 5.", after_tool=True),
        Rule("rejected this call", "I could not refund it.", after_tool=True),
    ]
    source = f"""
inputs: {{question: string}}
steps:
  - id: agent
    type: agent
    model: {CHAT}
    input: "{{{{ inputs.question }}}}"
    tools: [refund]
    timeout: 30
"""
    push(live, "approvals", source)
    member_b = project_key(live, "chains-other")
    for decision, expected in (("approve", "Refunded 5."), ("reject", "I could not refund it.")):
        chain_tools.CALLS.clear()
        results: list[dict[str, Any]] = []
        worker = threading.Thread(
            target=lambda out=results: out.append(run(live, "approvals", {"question": "refund order R-1"}))
        )
        worker.start()
        deadline = time.monotonic() + 20
        with live.client() as c:
            while not (queue := c.get("/api/chain-approvals").json()):
                assert time.monotonic() < deadline and worker.is_alive(), results
                time.sleep(0.1)
            pending = queue[0]
            assert (pending["tool"], pending["arguments"], pending["step"]) == (
                "refund",
                {"order_id": "R-1", "amount": 5},
                "agent",
            )
            assert pending["status"] == "pending" and pending["chain"] == "approvals"
            assert chain_tools.CALLS == []  # nothing ran before the decision
            with live.client(member_b) as other:  # another project neither sees nor decides it
                assert other.get("/api/chain-approvals").json() == []
                assert other.post(f"/api/chain-approvals/{pending['id']}/approve", json={}).status_code == 404
            r = c.post(f"/api/chain-approvals/{pending['id']}/{decision}", json={"comment": "checked"})
            assert r.status_code == 200 and r.json()["status"] == ("approved" if decision == "approve" else "rejected")
            again = c.post(f"/api/chain-approvals/{pending['id']}/approve", json={})
            assert again.status_code == 409  # decided once
        worker.join(30)
        assert results and results[0]["status"] == "ok", results
        assert results[0]["output"] == expected
        ran = [call for call in chain_tools.CALLS if call[0] == "refund"]
        assert len(ran) == (1 if decision == "approve" else 0)
    with live.client() as c:
        decided = c.get("/api/chain-approvals", params={"status": "all"}).json()
        assert {d["status"] for d in decided} >= {"approved", "rejected"}
        assert any(d["comment"] == "checked" and d["decided_by"] for d in decided)


def start_api_fake() -> Any:
    """A small HTTP API for HTTP tools: a forecast by city, an echo of a JSON body, and a failing endpoint."""
    from aiohttp import web

    from .fakes import FakeServer, _serve

    server = FakeServer(url="")

    async def forecast(request: web.Request) -> web.Response:
        server.requests.append({"query": dict(request.query), "auth": request.headers.get("X-Key")})
        return web.json_response({"city": request.query.get("city"), "days": int(request.query.get("days", "1"))})

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        server.requests.append({"body": body})
        return web.json_response({"got": body})

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    app = web.Application()
    app.router.add_get("/forecast", forecast)
    app.router.add_post("/echo", echo)
    app.router.add_get("/fail", fail)
    return _serve(app, server)


def test_http_tools_declared_in_the_chain(live: LiveServer) -> None:
    api = start_api_fake()
    try:
        source = f"""
inputs: {{city: string}}
tools:
  forecast:
    type: http
    description: The weather for a city.
    url: "{api.url}/forecast?city={{{{ city }}}}&days={{{{ days }}}}"
    headers: {{X-Key: "key-for-{{{{ city }}}}"}}
    parameters:
      type: object
      properties: {{city: {{type: string}}, days: {{type: integer, minimum: 1, maximum: 7}}}}
      required: [city]
  echo:
    type: http
    method: post
    url: "{api.url}/echo"
    parameters: {{type: object, properties: {{note: {{type: string}}, n: {{type: integer}}}}}}
steps:
  - {{id: weather, type: tool, tool: forecast, arguments: {{city: "{{{{ inputs.city }}}}", days: "{{{{ 3 }}}}"}}}}
  - {{id: posted, type: tool, tool: echo, arguments: {{note: "{{{{ steps.weather.city }}}}", n: "{{{{ 2 }}}}"}}}}
output: "[steps.weather, steps.posted]"
"""
        push(live, "http-tools", source)
        result = run(live, "http-tools", {"city": "São Paulo & Co"})
        assert result["status"] == "ok", result
        assert result["output"] == [{"city": "São Paulo & Co", "days": 3}, {"got": {"note": "São Paulo & Co", "n": 2}}]
        assert api.requests[0] == {"query": {"city": "São Paulo & Co", "days": "3"}, "auth": "key-for-São Paulo & Co"}

        bad_args = source.replace('days: "{{ 3 }}"', 'days: "{{ 9 }}"')
        push(live, "http-tools-bad", bad_args)
        failed = run(live, "http-tools-bad", {"city": "Oslo"})
        assert failed["status"] == "error" and "tool 'forecast' argument 'days'" in failed["error"]

        down = f"tools:\n  down: {{type: http, url: '{api.url}/fail'}}\nsteps:\n  - {{id: d, type: tool, tool: down}}\n"
        push(live, "http-tools-down", down)
        r = run(live, "http-tools-down", {})
        assert r["status"] == "error" and "HTTP 503" in r["error"] and "down for maintenance" in r["error"]

        metadata = "tools:\n  meta: {type: http, url: 'http://169.254.169.254/latest/meta-data'}\n"
        push(live, "http-tools-ssrf", metadata + "steps:\n  - {id: m, type: tool, tool: meta}\n")
        r = run(live, "http-tools-ssrf", {})
        assert r["status"] == "error" and "link-local or metadata address" in r["error"]

        with live.client() as c:  # refused when pushed: a URL reading an undeclared argument, a bad schema
            undeclared = (
                f"tools:\n  t: {{type: http, url: '{api.url}/x?q={{{{ q }}}}'}}\n"
                "steps:\n  - {id: a, type: tool, tool: t}\n"
            )
            r = c.post("/api/chains/http-bad/versions", json={"source": undeclared})
            assert r.status_code == 400 and "uses q, which parameters does not declare" in r.json()["error"]["message"]
            not_http = (
                "tools:\n  t: {type: http, url: 'ftp://example.com/x'}\nsteps:\n  - {id: a, type: tool, tool: t}\n"
            )
            r = c.post("/api/chains/http-bad/versions", json={"source": not_http})
            assert r.status_code == 400 and "http:// or https://" in r.json()["error"]["message"]
    finally:
        api.stop()


def test_the_tools_a_server_offers_are_listed(live: LiveServer) -> None:
    with live.client() as c:
        listed = c.get("/api/chain-tools").json()
    by_name = {t["name"]: t for t in listed["tools"]}
    assert {"lookup_order", "add", "explode", "hang", "refund"} <= set(by_name)
    assert by_name["add"]["parameters"]["properties"]["b"] == {"default": 1, "type": "integer"}
    assert by_name["add"]["source"] == "python" and by_name["refund"]["requires_approval"] is True
    # the MCP servers the settings name: one listed at start, one that could not be (and why)
    assert by_name["fixture__add"]["source"] == "mcp:fixture"
    assert by_name["fixture__add"]["parameters"]["required"] == ["a", "b"]
    assert set(listed["unavailable"]) == {"broken"} and "/nonexistent/mcp-server" in listed["unavailable"]["broken"]


def test_mcp_tools_in_a_tool_step_and_an_agent(live: LiveServer, fake: EvalFake) -> None:
    fake.rules += [
        Rule("shout it", "", tool_calls=[{"name": "fixture__echo", "arguments": {"text": "hello"}}]),
        Rule("hello", "The server said hello.", after_tool=True),
    ]
    source = f"""
steps:
  - {{id: sum, type: tool, tool: fixture__add, arguments: {{a: "{{{{ 2 }}}}", b: "{{{{ 3 }}}}"}}}}
  - {{id: agent, type: agent, model: {CHAT}, input: "shout it", tools: [fixture__echo]}}
output: "[steps.sum, steps.agent]"
"""
    push(live, "mcp-tools", source)
    result = run(live, "mcp-tools", {})
    assert result["status"] == "ok", result
    assert result["output"] == [{"result": 5}, "The server said hello."]
    _, spans = stored(live, result["trace_id"], 5)
    echo = next(s for s in spans if s["kind"] == "tool" and s["name"] == "fixture__echo")
    assert echo["input"] == {"text": "hello"} and "hello" in json.dumps(echo["output"])
    # an MCP tool's own error fails the step with the server's message; bad arguments never reach the server
    push(live, "mcp-fail", "steps:\n  - {id: f, type: tool, tool: fixture__fail, arguments: {reason: nope}}\n")
    failed = run(live, "mcp-fail", {})
    assert failed["status"] == "error" and "nope" in failed["error"]
    push(live, "mcp-args", "steps:\n  - {id: f, type: tool, tool: fixture__add, arguments: {a: '1'}}\n")
    bad = run(live, "mcp-args", {})
    assert bad["status"] == "error" and "fixture__add" in bad["error"] and "'b'" in bad["error"]


def test_a_run_whose_client_leaves_is_recorded_as_cancelled(live: LiveServer) -> None:
    import httpx

    push(live, "left", "steps:\n  - {id: wait, type: tool, tool: hang, timeout: 20, arguments: {seconds: '3'}}\n")
    headers = {"Authorization": f"Bearer {live.admin_key}"}
    with (
        httpx.Client(base_url=live.url, headers=headers, timeout=30) as c,
        c.stream("POST", "/api/chains/left/run", json={"stream": True}) as r,
    ):
        for line in r.iter_lines():
            if '"step_started"' in line:
                break  # leave while the step runs
    deadline = time.monotonic() + 20
    with live.client() as c:
        while (runs := c.get("/api/chains/left/runs").json())[0]["status"] == "running":
            assert time.monotonic() < deadline, runs
            time.sleep(0.1)
    assert runs[0]["status"] == "error" and "cancelled" in runs[0]["error"]
