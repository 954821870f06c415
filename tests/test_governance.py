"""Gateway governance end to end: limits on keys, projects and users set through `/api/limits` and the CLI,
enforced on `/v1` (allowed models, requests and tokens per minute, daily and monthly budgets that hold
exactly under concurrency, in-process and through Redis with two gateway processes sharing counters)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from podium.gateway.governor import Governor
from podium.gateway.store import Spend
from podium.gateway.table import RouteTable
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, make_db_url, make_settings, release_db_url, run_cli, serve_for_module, start_server
from .fakes import FakeServer, start_fake_openai

# output at $1,000 per 1M tokens: a completion token costs 1,000 micro-dollars; input is free. The fake
# upstream answers with 7 completion tokens, so a call costs $0.007 and reserves $0.010 at max_tokens=10.
PRICE = {"input": 0, "output": 1000}
COST, RESERVED = 7_000, 10_000


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    server = start_fake_openai()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory, upstream: FakeServer) -> Iterator[LiveServer]:
    serving = serve_for_module(backend, tmp_path_factory.mktemp(f"gov-{backend}"))
    live = next(serving)
    with live.client() as c:
        route = {
            "name": "priced",
            "deployments": [{"provider": "openai", "base_url": upstream.url + "/v1", "model": "m", "price": PRICE}],
        }
        assert c.post("/api/routes", json=route).status_code == 201
        assert c.post("/api/routes", json={**route, "name": "other-model"}).status_code == 201
    yield live
    next(serving, None)  # stops the server and releases its database


def new_key(gw: LiveServer, project: str | None = None) -> dict[str, Any]:
    with gw.client() as c:
        if project is not None:
            c.post("/api/projects", json={"name": project})
        r = c.post("/api/keys", json={"name": "k-" + uuid.uuid4().hex[:6], "project": project})
    assert r.status_code == 201, r.text
    return dict(r.json())


def set_limits(gw: LiveServer, scope: str, ref: str, **limits: Any) -> dict[str, Any]:
    with gw.client() as c:
        r = c.put(f"/api/limits/{scope}/{ref}", json=limits)
    assert r.status_code == 200, r.text
    return dict(r.json())


def ask(url: str, key: str, text: str = "hi", timeout: float = 30, **extra: Any) -> httpx.Response:
    body = {"model": "priced", "messages": [{"role": "user", "content": text}], "max_tokens": 10, **extra}
    auth = {"Authorization": f"Bearer {key}"}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=auth, timeout=timeout)


async def burst(urls: list[str], key: str, n: int, text: str) -> list[int]:
    """`n` concurrent requests spread over the servers; their statuses."""
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"model": "priced", "messages": [{"role": "user", "content": text}], "max_tokens": 10}
        calls = [
            client.post(
                urls[i % len(urls)] + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            for i in range(n)
        ]
        return [r.status_code for r in await asyncio.gather(*calls)]


def spent(gw: LiveServer, scope: str, scope_id: str) -> int:
    assert gw.app.state.runtime.get(TraceWriter).flush(10)
    with gw.platform.db.read_session() as s:
        rows = s.scalars(select(Spend).where(Spend.scope == scope, Spend.scope_id == scope_id)).all()
        return max((r.spent_micros for r in rows if r.period.startswith("d:")), default=0)


def wait_for_fresh_minute() -> None:
    """Per-minute windows reset on the minute: start a minute-window test well inside one."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


# --- the management API and CLI -----------------------------------------------------------------------


def test_limits_api_sets_shows_lists_and_removes_with_audit(gw: LiveServer) -> None:
    key = new_key(gw)
    info = set_limits(gw, "key", key["prefix"], rpm=60, tpm=10_000, daily_budget_usd="5.25", allowed_models=["pri*"])
    assert info["rpm"] == 60 and info["daily_budget_usd"] == "5.25" and info["name"] == key["prefix"]
    assert info["spent_today_usd"] == "0"
    with gw.client() as c:
        assert c.get(f"/api/limits/key/{key['id']}").json()["tpm"] == 10_000
        assert any(row["scope_id"] == key["id"] for row in c.get("/api/limits").json())
        audit = c.get("/api/audit", params={"object_type": "key_limits"}).json()["items"]
        assert audit[0]["action"] == "gateway.limits.set" and audit[0]["object_id"] == key["id"]
        assert c.delete(f"/api/limits/key/{key['id']}").status_code == 204
        assert c.get(f"/api/limits/key/{key['id']}").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/limits/team/x", {}, "scope"),
        ("/api/limits/key/pk-nothere", {"rpm": 5}, None),
        ("/api/limits/project/default", {"rpm": 0}, "rpm"),
        ("/api/limits/project/default", {"daily_budget_usd": "-1"}, "daily_budget_usd"),
        ("/api/limits/project/default", {"daily_budget_usd": "0.0000001"}, "daily_budget_usd"),
        ("/api/limits/project/default", {"rpm": "many"}, "rpm"),
        ("/api/limits/project/default", {"budget": 5}, "budget"),
        ("/api/limits/project/default", {"allowed_models": [""]}, "allowed_models"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(gw: LiveServer, path: str, body: dict[str, Any], field: str) -> None:
    with gw.client() as c:
        r = c.put(path, json=body)
        assert r.status_code in (400, 404), r.text
        if field is None:
            assert r.status_code == 404 and "pk-nothere" in r.json()["error"]["message"]
        else:
            assert field in r.json()["error"]["message"]
        assert c.get("/api/limits/project/default").status_code == 404  # nothing half-written


def test_only_admins_set_limits(gw: LiveServer) -> None:
    with gw.client() as c:
        viewer = c.post("/api/keys", json={"name": "viewer", "role": "viewer"}).json()
    with gw.client(viewer["key"]) as c:
        r = c.put(f"/api/limits/key/{viewer['id']}", json={"rpm": 1000})
        assert r.status_code == 403
        assert c.get("/api/limits").status_code == 200


def test_limits_and_spend_of_other_projects_are_not_shown(gw: LiveServer) -> None:
    # before, any key listed every scope's limits and spend
    with gw.client() as c:
        assert c.post("/api/projects", json={"name": "limits-other"}).status_code == 201
        assert c.put("/api/limits/project/limits-other", json={"daily_budget_usd": 7}).status_code == 200
        assert c.put("/api/limits/project/default", json={"rpm": 100000}).status_code == 200
        mine = c.post("/api/keys", json={"name": "looker", "role": "member"}).json()["key"]
    with gw.client(mine) as c:
        listed = c.get("/api/limits").json()
        assert "limits-other" not in str(listed) and any(row["name"] == "default" for row in listed)
        assert c.get("/api/limits/project/limits-other").status_code == 404
        assert c.get("/api/limits/project/default").status_code == 200
    with gw.client() as c:  # a server admin sees them all
        assert "limits-other" in str(c.get("/api/limits").json())
        c.delete("/api/limits/project/default")


def test_limits_cli(gw: LiveServer) -> None:
    key = new_key(gw)
    env = {"PODIUM_URL": gw.url, "PODIUM_API_KEY": gw.admin_key}
    out = run_cli(
        "limits", "set", "key", key["prefix"], "--rpm", "30", "--daily", "1.50", "--models", "priced", env=env
    )
    assert out.returncode == 0, out.stderr
    assert "$0.00 of $1.50" in out.stdout
    gw.app.state.runtime.get(Governor).refresh()
    assert ask(gw.url, key["key"]).status_code == 200
    assert gw.app.state.runtime.get(TraceWriter).flush(10)
    out = run_cli("limits", "ls", env=env)
    assert key["prefix"] in out.stdout and "priced" in out.stdout
    # a fraction of a cent shows as such, not as $0.00
    assert re.search(r"\$0\.\d*[1-9]\d* of \$1\.50", out.stdout), out.stdout
    out = run_cli("limits", "set", "key", key["prefix"], "--daily", "lots", env=env)
    assert out.returncode != 0 and "daily_budget_usd" in out.stderr
    out = run_cli("limits", "rm", "key", key["prefix"], env=env)
    assert out.returncode == 0 and "Removed" in out.stdout


# --- enforcement ----------------------------------------------------------------------------------------


def test_allowed_models_through_the_sdk(gw: LiveServer) -> None:
    key = new_key(gw)
    set_limits(gw, "key", key["id"], allowed_models=["pri*"])
    gw.app.state.runtime.get(Governor).refresh()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0)
    ok = client.chat.completions.create(model="priced", messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="other-model", messages=[{"role": "user", "content": "hi"}])
    assert "may not use model 'other-model'" in str(err.value) and "pri*" in str(err.value)


def test_requests_per_minute(gw: LiveServer) -> None:
    key = new_key(gw)
    set_limits(gw, "key", key["id"], rpm=3)
    wait_for_fresh_minute()
    assert [ask(gw.url, key["key"]).status_code for _ in range(3)] == [200, 200, 200]
    r = ask(gw.url, key["key"])
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert f"key {key['prefix']} is over its limit of 3 requests per minute" in error["message"]
    assert "resets at" in error["message"] and 1 <= int(r.headers["retry-after"]) <= 60
    with pytest.raises(openai.RateLimitError):  # the SDK sees a 429 it can back off on
        openai.OpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0).chat.completions.create(
            model="priced", messages=[{"role": "user", "content": "hi"}]
        )


def test_tokens_per_minute_reserve_then_settle(gw: LiveServer) -> None:
    key = new_key(gw)
    wait_for_fresh_minute()
    # a request reserves its body's bytes plus max_tokens, and settles to the upstream's 18 tokens
    set_limits(gw, "key", key["id"], tpm=1_000)
    r = ask(gw.url, key["key"], max_tokens=2_000)
    assert r.status_code == 429 and "1,000 tokens per minute" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "tokens_per_minute_exceeded"
    statuses = [ask(gw.url, key["key"], max_tokens=100).status_code for _ in range(8)]
    assert statuses == [200] * 8  # reservations of ~200 settle to 18 each: 8 calls fit in 1,000


def test_budget_holds_exactly_under_concurrency(gw: LiveServer) -> None:
    key = new_key(gw)
    info = set_limits(gw, "key", key["id"], daily_budget_usd="0.05")
    assert info["daily_budget_usd"] == "0.05"
    # 20 at once, each reserving $0.010 of $0.05: exactly 5 go through while the others are refused
    statuses = asyncio.run(burst([gw.url], key["key"], 20, "slow:0.5"))
    assert statuses.count(200) == 5 and statuses.count(429) == 15
    # settled at $0.007 each ($0.035): one more fits ($0.035 + $0.010 reserved), then $0.042 + $0.010 would not
    assert [ask(gw.url, key["key"]).status_code for _ in range(2)] == [200, 429]
    r = ask(gw.url, key["key"])
    message = r.json()["error"]["message"]
    assert r.json()["error"]["type"] == "insufficient_quota" and r.json()["error"]["code"] == "budget_exceeded"
    assert f"key {key['prefix']} is over its daily budget of $0.05" in message
    assert "this request may cost up to $0.01" in message and "resets at" in message and "T00:00:00Z" in message
    assert spent(gw, "key", key["id"]) == 6 * COST <= 50_000
    with gw.client() as c:
        assert c.get(f"/api/limits/key/{key['id']}").json()["spent_today_usd"] == "0.042"


def test_project_budget_is_shared_by_its_keys_and_monthly_budgets_hold_too(gw: LiveServer) -> None:
    project = "proj-" + uuid.uuid4().hex[:6]
    one, two = new_key(gw, project), new_key(gw, project)
    set_limits(gw, "project", project, monthly_budget_usd="0.02")
    assert ask(gw.url, one["key"]).status_code == 200  # $0.007
    assert ask(gw.url, two["key"]).status_code == 200  # $0.014
    r = ask(gw.url, one["key"])  # would reserve up to $0.024
    assert r.status_code == 429 and f"project {project!r} is over its monthly budget of $0.02" in r.text
    with gw.client() as c:
        project_id = c.get(f"/api/projects/{project}").json()["id"]
    assert spent(gw, "project", project_id) == 2 * COST


def test_a_disconnected_client_gives_its_reservation_back(gw: LiveServer, upstream: FakeServer) -> None:
    key = new_key(gw)
    set_limits(gw, "key", key["id"], daily_budget_usd="0.015")  # room for one reservation of $0.010
    before = upstream.disconnected
    gone: list[BaseException] = []

    def hang() -> None:
        try:
            ask(gw.url, key["key"], "hang", timeout=1.5)
        except httpx.ReadTimeout as exc:  # the client gives up and disconnects
            gone.append(exc)

    held = threading.Thread(target=hang)
    held.start()
    time.sleep(0.5)
    assert ask(gw.url, key["key"]).status_code == 429  # the hanging call holds its reservation while it runs
    held.join()
    assert gone
    deadline = time.monotonic() + 5
    while upstream.disconnected == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.disconnected == before + 1  # the upstream call was cancelled
    assert ask(gw.url, key["key"]).status_code == 200  # and its reservation given back


def test_streamed_calls_settle_their_cost(gw: LiveServer) -> None:
    key = new_key(gw)
    set_limits(gw, "key", key["id"], daily_budget_usd="1")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0)
    stream = client.chat.completions.create(
        model="priced", messages=[{"role": "user", "content": "hi"}], max_tokens=10, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    # the stream's record is queued when the server's generator finishes, just after the client read [DONE]
    deadline = time.monotonic() + 10
    while spent(gw, "key", key["id"]) != COST and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spent(gw, "key", key["id"]) == COST


# --- Redis: two gateway processes share the counters ----------------------------------------------------


def test_two_gateways_on_redis_share_one_budget(
    backend: str, tmp_path_factory: pytest.TempPathFactory, upstream: FakeServer, redis_url: str
) -> None:
    folder = tmp_path_factory.mktemp(f"gov-redis-{backend}")
    url = make_db_url(backend, folder)
    one = start_server(make_settings(folder / "home", url, redis_url=redis_url))
    two = start_server(make_settings(folder / "home", url, redis_url=redis_url), key=one.admin_key)
    try:
        with one.client() as c:
            route = {
                "name": "priced",
                "deployments": [{"provider": "openai", "base_url": upstream.url + "/v1", "model": "m", "price": PRICE}],
            }
            assert c.post("/api/routes", json=route).status_code == 201
        key = new_key(one)
        set_limits(one, "key", key["id"], daily_budget_usd="0.05", rpm=1000)
        two.app.state.runtime.get(Governor).refresh()
        two.app.state.runtime.get(RouteTable).refresh()
        statuses = asyncio.run(burst([one.url, two.url], key["key"], 20, "slow:0.5"))
        assert statuses.count(200) == 5, statuses
        time.sleep(0.2)  # settlements reach Redis in the background
        assert [ask(u, key["key"]).status_code for u in (two.url, one.url)] == [200, 429]
        assert one.app.state.runtime.get(TraceWriter).flush(10) and two.app.state.runtime.get(TraceWriter).flush(10)
        with one.platform.db.read_session() as s:
            rows = s.scalars(select(Spend).where(Spend.scope == "key", Spend.scope_id == key["id"])).all()
            assert max(r.spent_micros for r in rows if r.period.startswith("d:")) == 6 * COST
    finally:
        one.stop()
        two.stop()
        release_db_url(backend, url)


def test_a_completion_that_only_scores_its_prompt_reserves_no_completion_tokens(gw: LiveServer) -> None:
    """`max_tokens: 0` with `echo` (prompt log-probs, as perplexity asks) generates nothing: the budget
    reserves none of the default completion allowance for it, while an unbounded call is still refused."""
    key = new_key(gw)
    set_limits(gw, "key", key["prefix"], daily_budget_usd="0.005")  # 5 completion tokens' worth
    auth = {"Authorization": f"Bearer {key['key']}"}
    body = {"model": "priced", "prompt": "score me", "echo": True, "logprobs": 0}
    scored = httpx.post(gw.url + "/v1/completions", json={**body, "max_tokens": 0}, headers=auth, timeout=30)
    assert scored.status_code == 200, scored.text
    unbounded = httpx.post(gw.url + "/v1/completions", json=body, headers=auth, timeout=30)
    assert unbounded.status_code == 429 and "budget" in unbounded.json()["error"]["message"]
