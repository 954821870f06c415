"""The prompt pages in headless Chromium on SQLite and PostgreSQL: the list; a prompt's version history, the
diff of two versions with changed lines marked, label moves through the form (checked through the API) and
their history; the link traces use for a prompt version; the playground editing a template, filling its
variables, running two version x model combinations side by side through the gateway (over a fake upstream
on loopback) with latency, tokens and cost, the saved version's run traced with its prompt version, saving
a new version, and template errors and missing variables named in the page; the experiment page with arms,
intervals, probabilities of being best, the shares form, its shift log and the stop button."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from podium.tracing.store import Span
from podium.tracing.writer import Record, TraceWriter

from .browser import sign_in
from .conftest import LiveServer, sign_in_http
from .fakes import FakeServer, start_fake_openai

pytestmark = pytest.mark.browser

CHEAP = {"input": 1.0, "output": 2.0}  # micro-dollars per token: the fake's 11 + 7 tokens cost $0.000025
DEAR = {"input": 5.0, "output": 15.0}  # $0.00016


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    fake = start_fake_openai()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def live(module_server: LiveServer, upstream: FakeServer) -> LiveServer:
    """The module's server with two gateway routes over the fake upstream, priced differently."""
    for name, price in (("pg-cheap", CHEAP), ("pg-dear", DEAR)):
        body = {
            "name": name,
            "deployments": [
                {
                    "name": name,
                    "provider": "openai",
                    "base_url": upstream.url + "/v1",
                    "model": f"up-{name}",
                    "price": price,
                }
            ],
        }
        with module_server.client() as c:
            r = c.post("/api/routes", json=body)
        assert r.status_code == 201, r.text
    return module_server


def api(live: LiveServer, method: str, path: str, **kw: Any) -> Any:
    with live.client() as c:
        r = c.request(method, path, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def push(live: LiveServer, name: str, message: str, **content: Any) -> dict[str, Any]:
    version: dict[str, Any] = api(live, "POST", "/api/prompts", json={"name": name, "message": message, **content})[
        "version"
    ]
    return version


def support_prompt(live: LiveServer, name: str) -> list[dict[str, Any]]:
    """A chat prompt with three versions (the user message changes in v2, the system message in v3)."""
    system = {"role": "system", "content": "You are a support agent for {{ company }}."}
    variables = {"company": {"type": "string", "default": "Acme"}, "question": {"type": "string"}}
    model = {"name": "pg-cheap", "temperature": 0.2, "max_tokens": 64}
    v1 = push(
        live,
        name,
        "first cut",
        messages=[system, {"role": "user", "content": "Question: {{ question }}"}],
        variables=variables,
        model=model,
    )
    v2 = push(
        live,
        name,
        "ask for brevity",
        messages=[system, {"role": "user", "content": "Answer briefly. Question: {{ question }}"}],
        variables=variables,
        model=model,
    )
    v3 = push(
        live,
        name,
        "friendlier tone",
        messages=[
            {"role": "system", "content": "You are a friendly support agent for {{ company }}."},
            {"role": "user", "content": "Answer briefly. Question: {{ question }}"},
        ],
        variables=variables,
        model=model,
    )
    return [v1, v2, v3]


# --- list, history, diff, labels -------------------------------------------------------------------


def test_list_shows_prompts_with_kind_latest_and_labels(live: LiveServer, page: Page) -> None:
    support_prompt(live, "list-chat")
    push(live, "list-text", "plain", template="Summarise: {{ text }}")
    api(live, "PUT", "/api/prompts/list-chat/labels/production", json={"version": 2})
    sign_in(page, live.url, live.admin_key)
    page.click("nav >> text=Prompts")
    page.wait_for_url(re.compile(r"/prompts$"))
    chat = page.locator("tr.prompt-row[data-prompt=list-chat]")
    expect(chat.locator("td[data-col=kind]")).to_have_text("chat")
    expect(chat.locator("td[data-col=latest]")).to_have_text("v3")
    expect(chat.locator("td[data-col=labels]")).to_have_text("production → v2")
    text = page.locator("tr.prompt-row[data-prompt=list-text]")
    expect(text.locator("td[data-col=kind]")).to_have_text("text")
    expect(text.locator("td[data-col=latest]")).to_have_text("v1")
    listed = page.locator("tr.prompt-row").evaluate_all("rows => rows.map(r => r.dataset.prompt)")
    assert listed == sorted(p["name"] for p in api(live, "GET", "/api/prompts"))


def test_history_and_diff_of_two_versions(live: LiveServer, page: Page) -> None:
    support_prompt(live, "hist")
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/prompts/hist")
    rows = page.locator("#versions tr.version-row")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.version)") == ["3", "2", "1"]  # newest first
    expect(rows.nth(0).locator("td[data-col=message]")).to_have_text("friendlier tone")
    expect(rows.nth(2).locator("td[data-col=message]")).to_have_text("first cut")
    expect(rows.nth(0).locator("td[data-col=labels]")).to_have_text("latest")
    expect(rows.nth(0).locator("td[data-col=author]")).not_to_be_empty()
    expect(page.locator("[data-testid=messages]")).to_contain_text("You are a friendly support agent")

    # the default diff: the previous version against the newest; only the system message changed
    expect(page.locator("#diff-summary")).to_contain_text("v2 → v3")
    expect(page.locator("#diff .diff-line.removed")).to_have_count(1)  # file headers are not changes
    expect(page.locator("#diff .diff-line.added", has_text="friendly support agent")).to_have_count(1)
    expect(page.locator("#diff .diff-line.removed", has_text="You are a support agent")).to_have_count(1)

    page.select_option("#diff-form select[name=a]", "1")
    page.select_option("#diff-form select[name=b]", "2")
    page.click("#diff-form button[type=submit]")
    page.wait_for_url(re.compile(r"a=1&b=2"))
    expect(page.locator("#diff-summary")).to_contain_text("v1 → v2: changed messages")
    expect(page.locator("#diff .diff-line.added", has_text="Answer briefly. Question")).to_have_count(1)
    expect(page.locator("#diff .diff-line.removed", has_text="content: 'Question:")).to_have_count(1)
    expect(page.locator("#diff .diff-line.added", has_text="friendly")).to_have_count(0)
    colour = page.locator("#diff .diff-line.added").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent")

    # a version selected from the history shows its own messages
    page.click("#versions tr[data-version='1'] a")
    expect(page.locator("#selected-title")).to_contain_text("Version 1")
    expect(page.locator("[data-testid=messages]")).to_contain_text("Question: {{ question }}")
    expect(page.locator("[data-testid=messages]")).not_to_contain_text("Answer briefly")


def test_moving_and_removing_labels_through_the_form(live: LiveServer, page: Page) -> None:
    support_prompt(live, "labelled")
    api(live, "PUT", "/api/prompts/labelled/labels/production", json={"version": 1})
    api(live, "PUT", "/api/prompts/labelled/labels/staging", json={"version": 2})
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/prompts/labelled")
    expect(page.locator("#labels tr.label-row")).to_have_count(2)

    page.fill("#label-form input[name=label]", "production")
    page.select_option("#label-form select[name=version]", "3")
    page.click("#label-form button[type=submit]")
    page.wait_for_url(re.compile(r"/prompts/labelled$"))
    assert api(live, "GET", "/api/prompts/labelled")["labels"] == {"production": 3, "staging": 2}
    newest = page.locator("#label-history tr.label-move").first
    expect(newest).to_contain_text("production")
    assert newest.locator("td").all_inner_texts()[2:4] == ["v1", "v3"]
    expect(page.locator("#versions tr[data-version='3'] td[data-col=labels]")).to_contain_text("production")

    page.click("#labels tr.label-row[data-label=staging] button")
    page.wait_for_url(re.compile(r"/prompts/labelled$"))
    assert api(live, "GET", "/api/prompts/labelled")["labels"] == {"production": 3}
    expect(page.locator("#label-history tr.label-move").first.locator("td").nth(3)).to_have_text("removed")
    expect(page.locator("#label-history tr.label-move")).to_have_count(4)

    # a label that is not a valid name is refused with the service's message, and nothing moves
    page.fill("#label-form input[name=label]", "latest")
    page.click("#label-form button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("not valid")
    assert api(live, "GET", "/api/prompts/labelled")["labels"] == {"production": 3}


def test_version_link_from_traces_opens_the_prompt_at_that_version(live: LiveServer, page: Page) -> None:
    versions = support_prompt(live, "linked")
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + f"/prompts/versions/{versions[1]['id']}")
    page.wait_for_url(re.compile(r"/prompts/linked\?v=2$"))
    expect(page.locator("#selected-title")).to_contain_text("Version 2")
    expect(page.locator("#versions tr.selected")).to_have_attribute("data-version", "2")
    page.goto(live.url + "/prompts/versions/prv_nope")
    expect(page.locator("p.error")).to_contain_text("not found")


# --- the playground --------------------------------------------------------------------------------


def result(page: Page, index: int) -> Any:
    return page.locator(f"#results .result[data-index='{index}']")


def test_playground_runs_combinations_side_by_side_and_saves(
    live: LiveServer, upstream: FakeServer, page: Page
) -> None:
    versions = support_prompt(live, "play")
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/prompts/play")
    page.click("#open-playground")
    page.wait_for_url(re.compile(r"/prompts/play/playground\?start=3"))

    # the draft starts from v3: two chat rows; edit the user message and add a variable
    rows = page.locator("#messages .message-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator("select")).to_have_value("user")
    rows.nth(1).locator("textarea").fill("Order {{ order_id }}: {{ question }}")
    expect(page.locator("#variables [data-var]")).to_have_count(3)
    expect(page.locator("[data-var=company]")).to_have_attribute("placeholder", 'default: "Acme"')
    page.fill("[data-var=order_id]", "A-17")
    page.fill("[data-var=question]", "where is it?")

    # the draft on the cheap route, and saved v3 on the dear route
    expect(page.locator("#combos .combo")).to_have_count(1)
    expect(page.locator("#combos .combo .combo-model")).to_have_value("pg-cheap")  # the prompt's own model
    page.click("#add-combo")
    second = page.locator("#combos .combo").nth(1)
    second.locator(".combo-source").select_option("3")
    second.locator(".combo-model").select_option("pg-dear")
    upstream.requests.clear()
    page.click("#run")
    expect(page.locator("#run-status")).to_have_text("Done.")
    expect(page.locator("#results .result")).to_have_count(2)

    draft = result(page, 0)
    expect(draft.locator(".result-title")).to_have_text("Draft \N{MULTIPLICATION SIGN} pg-cheap")
    expect(draft.locator(".output")).to_have_text("echo: Order A-17: where is it?")
    expect(draft.locator("[data-fact=tokens] b")).to_have_text("11 + 7")
    expect(draft.locator("[data-fact=cost] b")).to_have_text("$0.000025")
    expect(draft.locator("[data-fact=latency] b")).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))
    saved = result(page, 1)
    expect(saved.locator(".result-title")).to_have_text("v3 (latest) \N{MULTIPLICATION SIGN} pg-dear")
    expect(saved.locator(".output")).to_have_text("echo: Answer briefly. Question: where is it?")
    expect(saved.locator("[data-fact=cost] b")).to_have_text("$0.00016")
    assert float(saved.get_attribute("data-latency-ms") or "nan") > 0

    # the upstream got the rendered messages with the prompt's parameters
    sent = sorted(upstream.requests, key=lambda b: b["model"])
    assert [b["model"] for b in sent] == ["up-pg-cheap", "up-pg-dear"]
    assert sent[0]["messages"][0]["content"] == "You are a friendly support agent for Acme."
    assert sent[0]["temperature"] == 0.2 and sent[0]["max_tokens"] == 64

    # both runs were traced like /v1 calls; the saved version's run carries its prompt version
    trace_ids = [result(page, i).locator(".trace-link").inner_text().removeprefix("trace ") for i in (0, 1)]
    assert live.app.state.runtime.get(TraceWriter).flush(10)
    with live.platform.db.read_session() as s:
        spans = {sp.trace_id: sp for sp in s.scalars(select(Span).where(Span.trace_id.in_(trace_ids)))}
    assert spans[trace_ids[0]].prompt_version_id is None
    assert spans[trace_ids[1]].prompt_version_id == versions[2]["id"]
    assert spans[trace_ids[1]].cost_micros == 160
    trace = api(live, "GET", f"/api/traces/{trace_ids[1]}")
    assert trace["route"] == "pg-dear" and trace["source"] == "gateway"

    # save the draft as v4 with a commit message
    page.fill("#commit-message", "ask for the order id")
    page.click("#save")
    expect(page.locator("#save-status .saved")).to_contain_text("Saved as play v4")
    v4 = api(live, "GET", "/api/prompts/play/versions/4")
    assert v4["message"] == "ask for the order id"
    assert v4["messages"][1]["content"] == "Order {{ order_id }}: {{ question }}"
    assert v4["variables"]["company"] == {"type": "string", "default": "Acme"}
    assert v4["variables"]["order_id"] == {"type": "string"}
    assert v4["model"] == versions[2]["model"]
    # the new version can be picked at once
    expect(page.locator("#combos .combo").nth(0).locator(".combo-source option[value='4']")).to_have_count(1)


def test_playground_names_template_errors_and_missing_variables(live: LiveServer, page: Page) -> None:
    support_prompt(live, "broken")
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/prompts/broken/playground")
    user = page.locator("#messages .message-row").nth(1).locator("textarea")
    user.fill("Hello\nQuestion: {{ question ")
    error = page.locator("#template-errors .template-error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("messages[1].content at line 2, column")
    expect(error).to_have_attribute("data-line", "2")
    assert int(error.get_attribute("data-column") or 0) > 1
    expect(user).to_have_class(re.compile(r"\binvalid\b"))
    page.click("#save")
    expect(page.locator("#save-status .error")).to_contain_text("line 2")
    assert api(live, "GET", "/api/prompts/broken")["latest_version"] == 3  # nothing saved

    user.fill("Question: {{ question }} ({{ urgency }})")
    expect(page.locator("#template-errors .template-error")).to_have_count(0)
    expect(page.locator("[data-var=urgency]")).to_have_count(1)
    page.fill("[data-var=question]", "why?")
    page.click("#run")
    failed = result(page, 0).locator(".result-error")
    expect(failed).to_contain_text("missing variable: urgency")
    expect(page.locator("[data-var=urgency]")).to_have_class(re.compile(r"\bmissing\b"))


def test_playground_for_a_new_text_prompt(live: LiveServer, page: Page) -> None:
    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/prompts")
    page.click("#new-prompt")
    page.wait_for_url(re.compile(r"/prompts/playground$"))
    page.check("input[name=kind][value=text]")
    page.fill("#template", "Summarise in {{ words }} words: {{ text }}")
    expect(page.locator("#variables [data-var]")).to_have_count(2)
    page.fill("[data-var=words]", "5")
    page.fill("[data-var=text]", "a long story")
    page.locator("#combos .combo-model").select_option("pg-cheap")
    page.click("#run")
    expect(result(page, 0).locator(".output")).to_have_text("echo: Summarise in 5 words: a long story")

    page.click("#save")
    expect(page.locator("#save-status .error")).to_contain_text("name")
    page.fill("#prompt-name", "fresh-summary")
    page.fill("#commit-message", "born in the playground")
    page.click("#save")
    expect(page.locator("#save-status .saved")).to_contain_text("Saved as fresh-summary v1")
    v1 = api(live, "GET", "/api/prompts/fresh-summary/versions/1")
    assert v1["kind"] == "text" and v1["template"] == "Summarise in {{ words }} words: {{ text }}"
    assert v1["message"] == "born in the playground"


def test_playground_calls_need_the_session_and_its_csrf_token(live: LiveServer, page: Page) -> None:
    import httpx

    body = {"source": "draft", "model": "pg-cheap", "draft": {"kind": "text", "template": "hi"}}
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.post("/api/playground/run", json=body).status_code == 401
        r = sign_in_http(c, live.admin_key)
        assert r.status_code == 303
        r = c.post("/api/playground/run", json=body)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
        r = c.post("/api/playground/run", json=body, headers={"X-CSRF-Token": "forged"})
        assert r.status_code == 403


def test_a_viewer_cannot_run_a_draft_template(live: LiveServer, page: Page) -> None:
    """A draft is a template nobody reviewed: running one takes the member role."""
    with live.client() as c:
        c.post("/api/users", json={"name": "pg-viewer", "role": "viewer"})
        key = c.post("/api/keys", json={"name": "pg-viewer", "user": "pg-viewer"}).json()["key"]
    sign_in(page, live.url, key)
    page.goto(live.url + "/prompts/playground")
    csrf = page.get_attribute("#playground", "data-csrf")
    body = {"source": "draft", "model": "pg-cheap", "draft": {"kind": "text", "template": "hi"}}
    r = page.request.post(live.url + "/api/playground/run", data=body, headers={"X-CSRF-Token": csrf or ""})
    assert r.status == 403 and "member" in r.json()["error"]["message"]


# --- experiments -----------------------------------------------------------------------------------


def test_experiment_page_shows_arms_intervals_probabilities_and_controls(live: LiveServer, page: Page) -> None:
    versions = support_prompt(live, "exp")
    exp = api(
        live,
        "POST",
        "/api/prompts/exp/experiments",
        json={"name": "tone", "arms": [{"version": 2, "share": 0.5}, {"version": 3, "share": 0.5}]},
    )
    t0 = datetime.fromisoformat(exp["created_at"]) + timedelta(milliseconds=10)  # while it runs
    thumbs: dict[str, list[int]] = {"2": [1, 0, 0, 1, 0, 0], "3": [1, 1, 1, 0, 1, 1]}
    writer = live.app.state.runtime.get(TraceWriter)
    project_id = api(live, "GET", "/api/whoami")["project_id"]
    for arm, v in (("2", versions[1]), ("3", versions[2])):
        for i, _ in enumerate(thumbs[arm]):
            # the traces of calls the experiment assigned, as the gateway writes them
            start = t0 + timedelta(milliseconds=10 * i)
            end = start + timedelta(milliseconds=100 * (i + 1) * int(arm))
            trace = {
                "id": f"exp-trace-{arm}-{i}",
                "project_id": project_id,
                "name": "chat.completions",
                "source": "gateway",
                "status": "error" if (arm, i) == ("2", 0) else "ok",
                "start_time": start,
                "end_time": end,
                "latency_ms": (end - start).total_seconds() * 1000,
                "span_count": 1,
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "cost_micros": 100 * int(arm),
                "meta": {"experiment": exp["id"]},
            }
            span = {"id": f"exp-{arm}-{i}", "trace_id": trace["id"], "name": "llm", "kind": "llm",
                    "start_time": start, "end_time": end, "prompt_version_id": v["id"]}  # fmt: skip
            writer.put(Record(trace=trace, spans=[span]))
    assert writer.flush(30)
    scores = [
        {"trace_id": f"exp-trace-{arm}-{i}", "name": "thumbs", "value": value, "source": "user"}
        for arm, values in thumbs.items()
        for i, value in enumerate(values)
    ]
    api(live, "POST", "/api/scores", json={"scores": scores})
    res = api(live, "GET", f"/api/experiments/{exp['id']}/results")

    sign_in(page, live.url, live.admin_key)
    page.goto(live.url + "/prompts/exp")
    page.click(f"#experiments tr[data-experiment={exp['id']}] a")
    page.wait_for_url(re.compile(rf"/prompts/exp/experiments/{exp['id']}$"))
    expect(page.locator("#experiment-status")).to_have_text("running")
    arms = page.locator("#arms tr.arm-row")
    expect(arms).to_have_count(2)
    for arm in res["arms"]:
        row = page.locator(f"#arms tr.arm-row[data-version='{arm['version']}']")
        expect(row.locator("td[data-col=traces]")).to_have_text(str(arm["traces"]))
        expect(row.locator("td[data-col=share]")).to_have_text("50.0%")
        thumb = arm["scores"]["thumbs"]
        expect(row.locator("td[data-col=prob-best]")).to_have_text(f"{thumb['prob_best'] * 100:.1f}%")
        expect(row.locator("td[data-col=score] .ci")).to_have_text(
            re.compile(rf"\[{thumb['low']:.3g}, {thumb['high']:.3g}\]".replace(".", r"\."))
        )
    assert [a["traces"] for a in res["arms"]] == [6, 6]
    expect(page.locator("#arms tr.arm-row[data-version='2'] td[data-col=error-rate]")).to_contain_text("16.7%")
    probs = [a["scores"]["thumbs"]["prob_best"] for a in res["arms"]]
    assert probs[1] > probs[0] and abs(sum(probs) - 1) < 1e-6  # v3 scored better

    # the interval chart of the score: a bar from low to high around each arm's mean
    chart = page.locator("figure[data-chart=score-thumbs]")
    expect(chart.locator("g.ci-row")).to_have_count(2)
    for g in chart.locator("g.ci-row").all():
        x1, x2 = (
            float(v) for v in g.locator("line.bar").first.evaluate("l => [l.getAttribute('x1'), l.getAttribute('x2')]")
        )
        cx = float(g.locator("circle.dot").get_attribute("cx") or "nan")
        assert x1 < cx < x2

    # shares by hand, logged; then stop
    page.fill("#shares-form input[name=share_2]", "20")
    page.fill("#shares-form input[name=share_3]", "80")
    page.fill("#shares-form input[name=reason]", "v3 looks better")
    page.click("#shares-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/experiments/{exp['id']}$"))
    shares = {a["version"]: a["share"] for a in api(live, "GET", f"/api/experiments/{exp['id']}")["arms"]}
    assert shares == pytest.approx({2: 0.2, 3: 0.8})
    logged = api(live, "GET", f"/api/experiments/{exp['id']}")["shifts"]
    assert logged[0]["reason"] == "v3 looks better"
    expect(page.locator("#shifts tr.shift-row")).to_have_count(len(logged))
    shift = page.locator("#shifts tr.shift-row").first
    expect(shift).to_contain_text("v3 looks better")
    expect(shift).to_contain_text("v2 20.0%")
    expect(page.locator("#arms tr.arm-row[data-version='3'] td[data-col=share]")).to_have_text("80.0%")

    page.fill("#shares-form input[name=share_2]", "50")
    page.click("#shares-form button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("sum to")

    page.goto(live.url + f"/prompts/exp/experiments/{exp['id']}")
    page.click("#stop")
    expect(page.locator("#experiment-status")).to_have_text("stopped")
    assert api(live, "GET", f"/api/experiments/{exp['id']}")["status"] == "stopped"
    expect(page.locator("#shares-form")).to_have_count(0)
