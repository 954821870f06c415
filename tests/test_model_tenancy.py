"""Models belong to projects: another project's model is invisible and untouchable, remote upstreams are a
project admin's to register and may not point where only the server can reach, and paths on the server are
a server admin's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podium.core.netguard import Blocked, NetGuard
from podium.models.providers import registry
from podium.models.providers.base import UpstreamError
from podium.models.providers.registry import Connection

from .conftest import LiveServer, make_settings, serve_for_module, start_server
from .fakes import FakeServer, serving, start_fake_openai


def _name(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    yield from serving(start_fake_openai)


def call(srv: LiveServer, key: str | None, method: str, path: str, body: Any = None) -> Any:
    with srv.client(key) as c:
        return c.request(method, path, json=body)


def team(srv: LiveServer, role: str = "admin") -> str:
    """A new project and a key of a user with `role` in it."""
    project, user = _name("proj"), _name("user")
    assert call(srv, None, "POST", "/api/projects", {"name": project}).status_code == 201
    assert call(srv, None, "POST", "/api/users", {"name": user, "role": role, "project": project}).status_code == 201
    r = call(srv, None, "POST", "/api/keys", {"name": "k", "user": user, "project": project})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def remote(name: str, upstream: FakeServer, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "base_url": upstream.url + "/v1", "upstream_model": "up", **extra}


def test_another_projects_model_is_invisible_and_untouchable(module_server: LiveServer, upstream: FakeServer) -> None:
    a, b = team(module_server), team(module_server)
    name = _name("private")
    assert call(module_server, a, "POST", "/api/models/remote", remote(name, upstream)).status_code == 201
    # a sees and calls it
    assert name in [m["name"] for m in call(module_server, a, "GET", "/api/models").json()]
    chat = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
    assert call(module_server, a, "POST", "/v1/chat/completions", chat).status_code == 200
    # b does not, anywhere
    assert name not in [m["name"] for m in call(module_server, b, "GET", "/api/models").json()]
    assert name not in [m["id"] for m in call(module_server, b, "GET", "/v1/models").json()["data"]]
    r = call(module_server, b, "POST", "/v1/chat/completions", chat)
    assert r.status_code == 404 and name not in r.json()["error"]["message"].split("known models:")[1]
    assert call(module_server, b, "GET", f"/api/models/{name}").status_code == 404
    assert call(module_server, b, "GET", f"/v1/models/{name}").status_code == 404
    # nor can it take the model over: no new version, no alias, no archiving
    r = call(module_server, b, "POST", "/api/models/remote", remote(name, upstream, upstream_model="evil"))
    assert r.status_code == 409 and "taken" in r.json()["error"]["message"]
    for method, path, body in [
        ("PUT", f"/api/models/{name}/aliases/production", {"version": 1}),
        ("DELETE", f"/api/models/{name}", None),
    ]:
        assert call(module_server, b, method, path, body).status_code == 404
    # the built-in models are everyone's
    names = [m["name"] for m in call(module_server, b, "GET", "/api/models").json()]
    assert call(module_server, None, "GET", "/api/models").status_code == 200 and isinstance(names, list)


def test_remote_upstreams_are_a_project_admins_and_never_metadata(
    module_server: LiveServer, upstream: FakeServer
) -> None:
    member = team(module_server, "member")
    r = call(module_server, member, "POST", "/api/models/remote", remote(_name(), upstream))
    assert r.status_code == 403 and "needs role 'admin'" in r.json()["error"]["message"]
    admin = team(module_server)
    for url in ("http://169.254.169.254/latest/v1", "http://metadata.google.internal/v1", "http://[fe80::1]:8000/v1"):
        r = call(module_server, admin, "POST", "/api/models/remote", remote(_name(), upstream, base_url=url))
        assert r.status_code == 400, (url, r.text)
        assert "metadata" in r.json()["error"]["message"] or "link-local" in r.json()["error"]["message"]


def test_paths_on_the_server_are_a_server_admins(module_server: LiveServer, tmp_path: Path) -> None:
    member = team(module_server, "admin")  # even a project admin
    for source in (str(tmp_path), "/etc/no-such-folder", "file:///etc"):
        r = call(module_server, member, "POST", "/api/models", {"name": _name(), "source": source})
        assert r.status_code == 400, r.text
        assert "paths on the server are for server admins" in r.json()["error"]["message"]


def test_model_source_roots_bound_a_server_admins_paths(
    tmp_path: Path, db_url: str, tiny_models: dict[str, Path]
) -> None:
    allowed = tiny_models["llama"].parent
    srv = start_server(make_settings(tmp_path / "home", db_url, model_source_roots=[str(allowed)]))
    try:
        r = call(srv, None, "POST", "/api/models", {"name": _name(), "source": str(tmp_path)})
        assert r.status_code == 403 and "model_source_roots" in r.json()["error"]["message"]
        r = call(srv, None, "POST", "/api/models", {"name": _name(), "source": str(tiny_models["llama"])})
        assert r.status_code == 201, r.text
    finally:
        srv.stop()


def test_private_upstreams_can_be_refused_at_registration_and_at_connection(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeServer
) -> None:
    for srv in serve_for_module("sqlite", tmp_path_factory.mktemp("closed"), upstream_allow_private=False):
        r = call(srv, None, "POST", "/api/models/remote", remote(_name(), upstream))
        assert r.status_code == 400 and "private network" in r.json()["error"]["message"]
    # at connection time: a name that resolves to a refused address is refused when connecting
    guard = NetGuard(allow_private=False)
    provider = registry.create(
        "openai", Connection("up", upstream.url.replace("127.0.0.1", "localhost") + "/v1", guard=guard)
    )

    async def go() -> None:
        try:
            await provider.chat({"model": "up", "messages": [{"role": "user", "content": "hi"}]})
        finally:
            await provider.aclose()

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(go())
    assert caught.value.kind == "connection" and "private network" in caught.value.message
    with pytest.raises(Blocked):
        NetGuard().check_url("http://169.254.169.254/")
    NetGuard().check_url(upstream.url)  # loopback is allowed by default
