"""The prompt registry through its API, CLI and SDK: versions, labels, rendering, sandbox, files, cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import podium
from podium.core.errors import InvalidInput, NotFound, ServiceUnavailable
from podium.prompts.sdk import PromptCache

from .conftest import LiveServer, run_cli, start_server

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
    "model": {"name": "smollm2-135m-instruct", "temperature": 0.2, "max_tokens": 256},
}

SUPPORT_YAML = """\
name: support-reply
messages:
  - role: system
    content: You are a support agent for {{ company }}.
  - role: user
    content: "Order {{ order_id }} is late by {{ days }} days. {{ question }}"
variables:
  company: {type: string, default: Acme}
  order_id: {type: string}
  days: {type: integer}
  question: {type: string}
model: {name: smollm2-135m-instruct, temperature: 0.2, max_tokens: 256}
"""


def _push(c: httpx.Client, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    r = c.post("/api/prompts", json=body)
    assert r.status_code == status, r.text
    data: dict[str, Any] = r.json()
    return data


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    return err


def test_versions_are_immutable_and_deduplicated(module_server: LiveServer) -> None:
    with module_server.client() as c:
        first = _push(c, {**SUPPORT, "name": "v-dedupe", "message": "first"})
        assert first["created"] and first["version"]["version"] == 1
        assert first["version"]["labels"] == ["latest"]
        again = _push(c, {**SUPPORT, "name": "v-dedupe", "message": "same content"}, status=200)
        assert again["created"] is False and again["version"]["id"] == first["version"]["id"]
        hotter = {**SUPPORT["model"], "temperature": 0.7}
        changed = {**SUPPORT, "name": "v-dedupe", "model": hotter, "message": "hotter"}
        second = _push(c, changed)
        assert second["version"]["version"] == 2 and second["version"]["message"] == "hotter"
        # version 1 is unchanged, and `latest` moved by itself
        v1 = c.get("/api/prompts/v-dedupe/versions/1").json()
        assert v1["model"]["temperature"] == 0.2 and v1["labels"] == []
        assert c.get("/api/prompts/v-dedupe/versions/latest").json()["version"] == 2
        # going back to version 1's content is a new version (history is linear, like git)
        third = _push(c, {**SUPPORT, "name": "v-dedupe"})
        assert third["version"]["version"] == 3
        assert third["version"]["content_hash"] == v1["content_hash"]
        by_id = c.get(f"/api/prompts/versions/{v1['id']}").json()
        assert by_id["prompt"] == "v-dedupe" and by_id["version"] == 1
        listed = {p["name"]: p for p in c.get("/api/prompts").json()}
        assert listed["v-dedupe"]["latest_version"] == 3 and listed["v-dedupe"]["kind"] == "chat"
        # dry run: says what would happen, writes nothing
        dry = c.post("/api/prompts", params={"dry_run": "true"}, json={**SUPPORT, "name": "v-dedupe", "message": "x"})
        assert dry.status_code == 200 and dry.json()["created"] is False
        dry = c.post("/api/prompts", params={"dry_run": "true"}, json={"name": "v-dedupe", "template": "new {{ x }}"})
        assert dry.json()["created"] is True and dry.json()["version"]["version"] == 4
        assert c.get("/api/prompts/v-dedupe").json()["latest_version"] == 3


def test_undeclared_template_variables_become_required_strings(module_server: LiveServer) -> None:
    with module_server.client() as c:
        v = _push(c, {"name": "v-infer", "template": "Hi {{ who }}{% for t in tags %} #{{ t }}{% endfor %}"})
        assert v["version"]["variables"] == {"tags": {"type": "string"}, "who": {"type": "string"}}
        assert v["version"]["kind"] == "text"


def test_labels_move_atomically_with_history(module_server: LiveServer) -> None:
    with module_server.client() as c:
        _push(c, {"name": "lbl", "template": "one"})
        _push(c, {"name": "lbl", "template": "two"})
        assert c.put("/api/prompts/lbl/labels/production", json={"version": 1}).json()["version"] == 1
        assert c.put("/api/prompts/lbl/labels/production", json={"version": "2"}).json()["version"] == 2
        assert c.get("/api/prompts/lbl/versions/production").json()["template"] == "two"
        detail = c.get("/api/prompts/lbl").json()
        assert detail["labels"] == {"production": 2}
        moves = [(h["label"], h["from_version"], h["to_version"]) for h in detail["history"]]
        assert moves == [("production", 1, 2), ("production", None, 1)]
        # `latest` is automatic and cannot be set; bad label names are refused
        assert "latest" in _error(c.put("/api/prompts/lbl/labels/latest", json={"version": 1}), 400)["message"]
        assert _error(c.put("/api/prompts/lbl/labels/Bad Label", json={"version": 1}), 400)
        assert "no version 9" in _error(c.put("/api/prompts/lbl/labels/staging", json={"version": 9}), 404)["message"]
        # a version of another prompt is refused, by id
        other = _push(c, {"name": "lbl-other", "template": "elsewhere"})["version"]["id"]
        err = _error(c.put("/api/prompts/lbl/labels/production", json={"version": other}), 400)
        assert "belongs to prompt 'lbl-other'" in err["message"]
        assert c.get("/api/prompts/lbl").json()["labels"] == {"production": 2}
        # a label can be pointed where another points (promotion); `v3` is a version number, never a label
        assert c.put("/api/prompts/lbl/labels/staging", json={"version": "production"}).json()["version"] == 2
        refused = _error(c.put("/api/prompts/lbl/labels/v3", json={"version": 1}), 400)
        assert "'v3' means version 3" in refused["message"] and refused["details"]["field"] == "label"
        v1_id = c.get("/api/prompts/lbl/versions/1").json()["id"]
        assert c.get(f"/api/prompts/lbl/versions/{v1_id}").json()["version"] == 1  # a version id is a reference too
        assert c.delete("/api/prompts/lbl/labels/staging").status_code == 204
        unknown = _error(c.get("/api/prompts/lbl/versions/canary"), 404)
        assert "production" in unknown["message"]
        assert c.delete("/api/prompts/lbl/labels/production").status_code == 204
        assert c.get("/api/prompts/lbl").json()["history"][0]["to_version"] is None
        assert "known prompts" in _error(c.get("/api/prompts/nope"), 404)["message"]


def test_only_the_prompts_project_or_an_admin_may_change_it(module_server: LiveServer) -> None:
    def member_of(project: str) -> str:
        with module_server.client() as c:
            c.post("/api/projects", json={"name": project})
            r = c.post("/api/keys", json={"name": f"k-{project}", "project": project, "role": "member"})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    owner, stranger = member_of("prompt-owner"), member_of("prompt-stranger")
    with module_server.client(owner) as c:
        _push(c, {"name": "owned", "template": "secret one"})
        _push(c, {"name": "owned", "template": "secret two"})
        assert c.put("/api/prompts/owned/labels/production", json={"version": 1}).status_code == 200
        exp = c.post("/api/prompts/owned/experiments", json={"name": "e", "arms": [{"version": 1}, {"version": 2}]})
        assert exp.status_code == 201, exp.text
    with module_server.client(stranger) as c:
        # another project's prompt does not exist for a stranger: not to change, not to read (404), and its
        # name, unique on the server, is taken (409)
        r = c.post("/api/prompts", json={"name": "owned", "template": "hijacked"})
        assert r.status_code == 409 and "taken by another project" in r.json()["error"]["message"], r.text
        exp_id = exp.json()["id"]
        for r in (
            c.put("/api/prompts/owned/labels/production", json={"version": 2}),
            c.delete("/api/prompts/owned/labels/production"),
            c.post(f"/api/experiments/{exp_id}/stop"),
            c.post("/api/prompts/owned/experiments", json={"name": "x", "arms": [{"version": 1}, {"version": 2}]}),
            c.get("/api/prompts/owned"),
            c.get("/api/prompts/owned/versions/production"),
            c.get("/api/prompts/owned/diff", params={"a": 1, "b": 2}),
            c.post("/api/prompts/owned/render", json={}),
            c.get("/api/prompts/owned/experiments"),
            c.get(f"/api/experiments/{exp_id}"),
            c.get(f"/api/experiments/{exp_id}/results"),
        ):
            assert r.status_code == 404 and "secret" not in r.text, r.text
        assert "owned" not in [p["name"] for p in c.get("/api/prompts").json()]
        # and a reference through the gateway finds nothing either
        r = c.post("/v1/chat/completions", json={"prompt": {"name": "owned"}})
        assert r.status_code == 404 and r.json()["error"]["param"] == "prompt.name", r.text
    with module_server.client() as c:  # an admin may
        assert c.put("/api/prompts/owned/labels/production", json={"version": 2}).status_code == 200
        assert c.get("/api/prompts/owned").json()["latest_version"] == 2


def test_concurrent_label_moves_one_wins_history_shows_both(module_server: LiveServer) -> None:
    with module_server.client() as c:
        for text in ("a", "b", "c"):
            _push(c, {"name": "race", "template": text})
        c.put("/api/prompts/race/labels/production", json={"version": 1})
    barrier = threading.Barrier(2)
    results: list[int] = []

    def move(version: int) -> None:
        with module_server.client() as c:
            barrier.wait()
            r = c.put("/api/prompts/race/labels/production", json={"version": version})
            results.append(r.status_code)

    threads = [threading.Thread(target=move, args=(v,)) for v in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200]
    with module_server.client() as c:
        detail = c.get("/api/prompts/race").json()
    history = [(h["from_version"], h["to_version"]) for h in detail["history"] if h["from_version"] is not None]
    assert len(history) == 2
    (first_from, first_to), (second_from, second_to) = reversed(history)
    assert first_from == 1 and second_from == first_to  # serialised: the second move saw the first
    assert detail["labels"]["production"] == second_to


def test_render_types_defaults_and_missing_variables(module_server: LiveServer) -> None:
    with module_server.client() as c:
        _push(c, {**SUPPORT, "name": "rnd"})
        out = c.post(
            "/api/prompts/rnd/render", json={"variables": {"order_id": "A-17", "days": "3", "question": "Where is it?"}}
        ).json()
        assert out["messages"] == [
            {"role": "system", "content": "You are a support agent for Acme."},
            {"role": "user", "content": "Order A-17 is late by 3 days. Where is it?"},
        ]
        assert out["variables"]["days"] == 3 and out["model"]["temperature"] == 0.2
        err = _error(c.post("/api/prompts/rnd/render", json={"variables": {"company": "Initech"}}), 400)
        assert err["code"] == "missing_variables"
        assert err["details"]["missing"] == ["order_id", "days", "question"]
        assert "order_id, days, question" in err["message"]
        err = _error(
            c.post("/api/prompts/rnd/render", json={"variables": {"order_id": "1", "days": "three", "question": "?"}}),
            400,
        )
        assert "'days' must be integer" in err["message"]


def test_template_errors_and_sandbox_escapes_are_rejected_at_push(module_server: LiveServer) -> None:
    with module_server.client() as c:
        err = _error(c.post("/api/prompts", json={"name": "bad", "template": "Hello\n  {{ name }"}), 400)
        assert "line 2, column 11" in err["message"] and err["details"]["column"] == 11
        err = _error(
            c.post(
                "/api/prompts",
                json={
                    "name": "bad",
                    "messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": "{% if x %}"}],
                },
            ),
            400,
        )
        assert "messages[1].content" in err["message"] and "line 1" in err["message"]
        for escape in (
            "{{ ''.__class__.__mro__ }}",
            "{{ x['__globals__'] }}",
            "{{ x|attr('__class__') }}",
            "{% import 'os' as os %}",
            "{% include 'secrets.txt' %}",
        ):
            err = _error(c.post("/api/prompts", json={"name": "bad", "template": escape}), 400)
            assert "not allowed" in err["message"], escape
        for body, field in (
            ({"name": "bad"}, "template"),
            ({"name": "bad", "template": "x", "messages": [{"role": "user", "content": "y"}]}, "template"),
            ({"name": "Bad Name", "template": "x"}, "name"),
            ({"name": "bad", "messages": [{"role": "robot", "content": "y"}]}, "messages[0].role"),
            ({"name": "bad", "template": "x", "model": {"temprature": 1}}, "model"),
            ({"name": "bad", "template": "x", "variables": {"n": {"type": "float"}}}, None),
            ({"name": "bad", "template": "x", "surprise": 1}, "surprise"),
        ):
            err = _error(c.post("/api/prompts", json=body), 400)
            if field:
                assert err["details"].get("field") == field, (body, err)
        assert _error(c.get("/api/prompts/bad"), 404)  # nothing half-written


def test_sandbox_refuses_escapes_at_render_time() -> None:
    from podium.prompts import template

    # values are data, never code: a string variable cannot reach Python internals either
    with pytest.raises(InvalidInput, match="unsafe"):
        template.render("{{ v.__class__ }}", {"v": "x"})
    assert template.render("{{ v | upper }}", {"v": "x"}) == "X"


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("{{ x * n }}", {"x": "ab", "n": 10**9}),
        ("{{ 9 ** n }}", {"n": 10**7}),
        ("{% for i in range(n) %}.{% endfor %}", {"n": 10**9}),
        ("{{ '%999999999d' % n }}", {"n": 1}),
        ("{{ '{:>999999999}'.format(n) }}", {"n": 1}),
        ("{{ s | center(n) }}", {"s": "a", "n": 10**9}),
        ("{{ '%099999999d' | format(n) }}", {"n": 1}),
        ("{{ (['x' * 1000000] * 1000) | join }}", {}),
        ("{{ ('x' * 1000000) | replace('x', 'y' * 1000000) }}", {}),
        ("{% for a in items %}{{ 'y' * 1000 }}{% endfor %}", {"items": list(range(6000))}),
        # each of these passed the sandbox before (issue 14): doubling through a namespace, list `+`, a `*`
        # width, a nested format field, chained powers, a million groups
        ("{% set ns = namespace(s='x') %}{% for i in range(n) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", {"n": 64}),
        ("{% set ns = namespace(l=[1]) %}{% for i in range(n) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", {"n": 64}),
        ("{{ '%*d' % (n, 1) }}", {"n": 999999999}),
        ("{{ '%(a)*d' % {'a': 1} }}", {}),
        ("{{ '{:{w}}'.format(1, w=n) }}", {"n": 999999999}),
        ("{{ (9 ** 1000) ** n }}", {"n": 1000}),
        ("{{ [1] | slice(n) | list | length }}", {"n": 1000000}),
        ("{{ [1] | batch(n) | list | length }}", {"n": 1000000}),
    ],
)
def test_a_request_cannot_make_a_template_build_something_huge(source: str, values: dict[str, Any]) -> None:
    """Variables come from requests: the sandbox bounds what one expression may build."""
    from podium.prompts import template

    template.check(source, "template")  # fine at push: the sizes come from the variables
    with pytest.raises(InvalidInput, match=r"unsafe operation refused|Range too big"):
        template.render(source, values)


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}",
        "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}",
    ],
)
def test_a_template_that_loops_too_long_is_stopped_at_its_time_budget(source: str) -> None:
    from podium.prompts import template

    with pytest.raises(InvalidInput, match="took more than") as info:
        template.render(source, {"n": 100_000, "xs": list(range(5_000))})
    assert info.value.code == "render_timeout"
    assert template.render("{{ 1 + 1 }}", {}) == "2"  # the thread renders normally afterwards


def test_ordinary_arithmetic_and_formatting_still_work() -> None:
    from podium.prompts import template

    rendered = template.render(
        "{{ '-' * 3 }} {{ 2 ** 10 }} {{ '%5.1f' % x }} {{ '{:>4}'.format(n) }} {{ s | center(5) }}",
        {"x": 3.14159, "n": 7, "s": "a"},
    )
    assert rendered == "--- 1024   3.1    7   a  "
    joined = template.render(
        "{{ users | join(', ', attribute='name') }} {{ s | replace('a', 'o') }}",
        {"users": [{"name": "ada"}, {"name": "bo"}], "s": "banana"},
    )
    assert joined == "ada, bo bonono"
    assert template.render(
        "{{ a ~ '-' ~ b }} {{ xs + [3] }} {{ '%-6s|' % s }}", {"a": 1, "b": 2, "xs": [1, 2], "s": "x"}
    ) == ("1-2 [1, 2, 3] x     |")


def test_diff_between_versions(module_server: LiveServer) -> None:
    with module_server.client() as c:
        _push(c, {**SUPPORT, "name": "dif"})
        changed = {**SUPPORT, "name": "dif"}
        shorter = {"role": "user", "content": "Order {{ order_id }}: {{ question }}"}
        changed["messages"] = [SUPPORT["messages"][0], shorter]
        _push(c, changed)
        d = c.get("/api/prompts/dif/diff", params={"a": 1, "b": 2}).json()
        assert d["changed"] == ["messages"]
        assert "-    content: Order {{ order_id }} is late by {{ days }} days. {{ question }}" in d["unified"]
        assert "+    content: 'Order {{ order_id }}: {{ question }}'" in d["unified"]
        assert c.get("/api/prompts/dif/diff", params={"a": 2, "b": "latest"}).json()["changed"] == []


def test_cli_push_is_idempotent_and_pull_round_trips(module_server: LiveServer, tmp_path: Path) -> None:
    env = {"PODIUM_URL": module_server.url, "PODIUM_API_KEY": module_server.admin_key}
    src = tmp_path / "prompts"
    (src / "nested").mkdir(parents=True)
    (src / "support.yaml").write_text(SUPPORT_YAML.replace("support-reply", "cli-support"))
    (src / "nested" / "summary.md").write_text(
        "---\nname: cli-summary\nvariables:\n  words: {type: integer, default: 50}\n---\n"
        "Summarise in {{ words }} words:\n\n{{ text }}\n"
    )
    first = run_cli("prompts", "push", str(src), "-m", "initial", env=env)
    assert first.returncode == 0, first.stderr
    assert "cli-support: created version 1" in first.stdout and "cli-summary: created version 1" in first.stdout
    again = run_cli("prompts", "push", str(src), env=env)
    assert "cli-support: unchanged version 1" in again.stdout and "cli-summary: unchanged version 1" in again.stdout
    with module_server.client() as c:
        summary = c.get("/api/prompts/cli-summary/versions/1").json()
    assert summary["template"] == "Summarise in {{ words }} words:\n\n{{ text }}"
    assert summary["variables"] == {"words": {"type": "integer", "default": 50}, "text": {"type": "string"}}
    assert summary["message"] == "initial"

    out = tmp_path / "pulled"
    pulled = run_cli("prompts", "pull", str(out), "-n", "cli-support", "-n", "cli-summary", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "cli-support.yaml").exists() and (out / "cli-summary.yaml").exists()
    back = run_cli("prompts", "push", str(out), "--json", env=env)
    assert back.returncode == 0, back.stderr
    assert '"created": false' in back.stdout and '"created": true' not in back.stdout

    assert run_cli("prompts", "label", "cli-support", "production", "1", env=env).returncode == 0
    rendered = run_cli(
        "prompts", "render", "cli-support@production", "-v", "order_id=9", "-v", "days=2", "-v", "question=Hi?", env=env
    )
    assert "Order 9 is late by 2 days. Hi?" in rendered.stdout
    missing = run_cli("prompts", "render", "cli-support", "-v", "days=2", env=env)
    assert missing.returncode == 1 and "missing variables: order_id, question" in missing.stderr
    shown = run_cli("prompts", "show", "cli-support", env=env)
    assert "production" in shown.stdout
    (src / "support.yaml").write_text(SUPPORT_YAML.replace("support-reply", "cli-support").replace("0.2", "0.5"))
    assert run_cli("prompts", "push", str(src), env=env).returncode == 0
    diff = run_cli("prompts", "diff", "cli-support", "production", "latest", env=env)
    assert "-  temperature: 0.2\n+  temperature: 0.5\n" in diff.stdout, diff.stdout


def test_cli_push_with_a_bad_file_pushes_nothing_and_points_at_the_spot(
    module_server: LiveServer, tmp_path: Path
) -> None:
    env = {"PODIUM_URL": module_server.url, "PODIUM_API_KEY": module_server.admin_key}
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a-good.yaml").write_text("name: push-good\ntemplate: fine {{ x }}\n")
    (src / "b-bad.yaml").write_text(
        "name: push-bad\nmessages:\n  - role: system\n    content: ok\n"
        "  - role: user\n    content: |\n      line one\n      Hello {{ name }\n"
    )
    (src / "c-bad.md").write_text("---\nname: push-bad-md\n---\nfirst\n{% for x in y %}\n")
    result = run_cli("prompts", "push", str(src), env=env)
    assert result.returncode == 1
    assert f"{src / 'b-bad.yaml'}:8:21" in result.stderr  # the `}` after `name`, in the file
    assert f"{src / 'c-bad.md'}:5" in result.stderr
    assert "2 of 3 prompt files are invalid; nothing was pushed" in result.stderr
    with module_server.client() as c:
        assert c.get("/api/prompts/push-good").status_code == 404
    (src / "d.yaml").write_text("name: [unclosed\n")
    broken = run_cli("prompts", "push", str(src / "d.yaml"), env=env)
    assert broken.returncode == 1 and "d.yaml:2:1: invalid YAML" in broken.stderr


def test_sdk_get_render_cache_and_fallback(tmp_path: Path, db_url: str) -> None:
    from .conftest import make_settings

    settings = make_settings(tmp_path / "home", db_url)
    live = start_server(settings)
    cache_dir = tmp_path / "prompt-cache"
    try:
        with live.client() as c:
            _push(c, {**SUPPORT, "name": "sdk-support"})
            c.put("/api/prompts/sdk-support/labels/production", json={"version": 1})
        opts: dict[str, Any] = {"url": live.url, "api_key": live.admin_key}
        import podium.prompts.sdk as sdk

        sdk._cache = PromptCache(cache_dir)
        p = podium.prompts.get("sdk-support", label="production", ttl=0.5, **opts)
        assert p.version == 1 and not p.stale
        r = p.render(order_id="A1", days=3, question="Where?")
        assert r.messages is not None and r.messages[1]["content"] == "Order A1 is late by 3 days. Where?"
        kwargs = r.openai_kwargs(max_tokens=10)
        assert kwargs["model"] == "smollm2-135m-instruct" and kwargs["temperature"] == 0.2
        assert kwargs["max_tokens"] == 10 and kwargs["messages"] == r.messages
        with pytest.raises(InvalidInput, match="missing variables: order_id, days, question"):
            p.render()
        with pytest.raises(NotFound, match="no label 'canary'"):
            podium.prompts.get("sdk-support", label="canary", **opts)

        # the label moves: within the ttl the cached copy is served; after it, the stale copy is served
        # at once while a background fetch brings the new one
        with live.client() as c:
            _push(c, {**SUPPORT, "name": "sdk-support", "model": {**SUPPORT["model"], "temperature": 0.9}})
            c.put("/api/prompts/sdk-support/labels/production", json={"version": 2})
        # (ttls chosen so that a slow machine cannot expire the copy early or refresh it before it is read)
        assert podium.prompts.get("sdk-support", label="production", ttl=60, **opts).version == 1
        time.sleep(0.01)
        assert podium.prompts.get("sdk-support", label="production", ttl=0.001, **opts).version == 1  # stale
        deadline = time.monotonic() + 10
        while podium.prompts.get("sdk-support", label="production", ttl=0.001, **opts).version != 2:
            assert time.monotonic() < deadline, "background refresh never arrived"
            time.sleep(0.05)
    finally:
        live.stop()

    # server down: a new process (empty memory cache) gets the last good copy from disk
    sdk._cache = PromptCache(cache_dir)
    down = podium.prompts.get("sdk-support", label="production", **opts)
    assert down.version == 2 and down.stale and down.model["temperature"] == 0.9
    with pytest.raises(ServiceUnavailable, match="no cached copy"):
        podium.prompts.get("sdk-support", label="staging", **opts)
    # and the in-memory copy keeps serving after the ttl, with the refresh failing quietly
    time.sleep(0.6)
    assert podium.prompts.get("sdk-support", label="production", ttl=0.5, **opts).version == 2
    sdk._cache = PromptCache()


def test_sdk_drops_a_cached_prompt_whose_label_was_removed(module_server: LiveServer, tmp_path: Path) -> None:
    import podium.prompts.sdk as sdk

    opts: dict[str, Any] = {"url": module_server.url, "api_key": module_server.admin_key}
    with module_server.client() as c:
        _push(c, {"name": "sdk-gone", "template": "hi"})
        c.put("/api/prompts/sdk-gone/labels/beta", json={"version": 1})
    sdk._cache = PromptCache(tmp_path / "cache")
    try:
        assert podium.prompts.get("sdk-gone", label="beta", ttl=0.2, **opts).version == 1
        with module_server.client() as c:
            assert c.delete("/api/prompts/sdk-gone/labels/beta").status_code == 204
        time.sleep(0.3)
        podium.prompts.get("sdk-gone", label="beta", ttl=0.2, **opts)  # stale copy, refresh starts
        deadline = time.monotonic() + 10
        while True:  # once the refresh learns the label is gone, the copy is dropped: an error, not stale data
            try:
                podium.prompts.get("sdk-gone", label="beta", ttl=0.2, **opts)
            except NotFound:
                break
            assert time.monotonic() < deadline, "the removed label kept being served"
            time.sleep(0.05)
    finally:
        sdk._cache = PromptCache()


def test_sdk_render_links_the_current_span(tmp_path: Path) -> None:
    from podium.prompts.sdk import Prompt
    from podium.tracing import sdk as tracing

    prompt = Prompt.from_json(
        {
            "prompt": "linked",
            "version": 4,
            "id": "prv_TEST",
            "kind": "text",
            "template": "Hi {{ who }}",
            "variables": {"who": {"type": "string"}},
        }
    )
    tracing.configure(enabled=False)
    with podium.span("answer", kind="llm") as s:
        assert prompt.render(who="Ada").text == "Hi Ada"
        assert s.prompt_version_id == "prv_TEST"
