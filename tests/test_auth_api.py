"""Identity over real HTTP: 401/403, key lifecycle, audit rows; on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from podium.auth.service import hash_key

from .conftest import LiveServer


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _key(srv: LiveServer, role: str, *, project: str = "default", expires: str | None = None) -> str:
    user = _name(role)
    with srv.client() as c:
        assert c.post("/api/users", json={"name": user, "role": role}).status_code == 201
        r = c.post("/api/keys", json={"name": f"{role} key", "user": user, "project": project, "expires": expires})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


def test_missing_and_invalid_keys_get_401(module_server: LiveServer) -> None:
    with httpx.Client(base_url=module_server.url) as c:
        r = c.get("/api/projects")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        assert "missing API key" in r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == "Bearer"
        r = c.get("/api/projects", headers={"Authorization": "Bearer pk-not-a-real-key"})
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "invalid API key"
        r = c.get("/api/projects", headers={"Authorization": "Bearer sk-openai-style"})
        assert r.status_code == 401 and "start with 'pk-'" in r.json()["error"]["message"]
        r = c.get("/api/projects", headers={"X-API-Key": module_server.admin_key})
        assert r.status_code == 200


def test_viewer_cannot_write_member_cannot_administer(module_server: LiveServer) -> None:
    viewer, member = _key(module_server, "viewer"), _key(module_server, "member")
    with module_server.client(viewer) as c:
        assert c.get("/api/projects").status_code == 200
        r = c.post("/api/jobs", json={"kind": "artifacts.verify"})
        assert r.status_code == 403
        r = c.post("/api/projects", json={"name": _name("p")})
        assert r.status_code == 403
        assert "only a server admin may create projects" in r.json()["error"]["message"]
    with module_server.client(member) as c:
        for method, path, body in [
            ("POST", "/api/projects", {"name": _name("p")}),
            ("POST", "/api/users", {"name": _name("u"), "role": "viewer"}),
            ("POST", "/api/keys", {"name": "k", "user": "admin"}),
            ("GET", "/api/users", None),
            ("GET", "/api/audit", None),
        ]:
            r = c.request(method, path, json=body)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"] == "forbidden"
        # members only see their own keys and project
        keys = c.get("/api/keys").json()
        assert len(keys) == 1 and keys[0]["role"] == "member"
        # and make keys for themselves, never stronger than their own
        assert c.post("/api/keys", json={"name": "mine", "role": "viewer"}).status_code == 201
        r = c.post("/api/keys", json={"name": "k", "role": "admin"})
        assert r.status_code == 400 and "a key cannot carry more" in r.json()["error"]["message"]
        assert [p["name"] for p in c.get("/api/projects").json()] == ["default"]


def test_expired_key_gets_401(module_server: LiveServer) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    key = _key(module_server, "member", expires=soon)
    with module_server.client(key) as c:
        assert c.get("/api/whoami").status_code == 200
        time.sleep(2.2)
        r = c.get("/api/whoami")
        assert r.status_code == 401
        assert "expired" in r.json()["error"]["message"]


def test_past_expiry_is_rejected(module_server: LiveServer) -> None:
    with module_server.client() as c:
        r = c.post("/api/keys", json={"name": "old", "expires": "2020-01-01T00:00:00Z"})
        assert r.status_code == 400 and "in the past" in r.json()["error"]["message"]
        r = c.post("/api/keys", json={"name": "odd", "expires": "soonish"})
        assert r.status_code == 400 and "duration" in r.json()["error"]["message"]


def test_revoked_key_gets_401_at_once(module_server: LiveServer) -> None:
    key = _key(module_server, "member")
    with module_server.client(key) as c:
        me = c.get("/api/whoami").json()
        assert me["role"] == "member"
    with module_server.client() as admin:
        r = admin.post(f"/api/keys/{me['key_prefix']}/revoke")
        assert r.status_code == 200
        assert r.json()["status"] == "revoked"
    with module_server.client(key) as c:
        r = c.get("/api/whoami")
        assert r.status_code == 401
        assert "revoked" in r.json()["error"]["message"]


def test_key_shown_once_stored_as_hash(module_server: LiveServer) -> None:
    with module_server.client() as c:
        r = c.post("/api/keys", json={"name": "ci", "role": "viewer", "expires": "30d"})
        assert r.status_code == 201
        new = r.json()
        secret = new["key"]
        assert secret.startswith("pk-") and len(secret) == 43
        assert new["prefix"] == secret[:11]
        listed = c.get("/api/keys").json()
        assert all("key" not in k for k in listed)
        assert secret not in c.get("/api/keys").text
        assert any(k["prefix"] == new["prefix"] and k["status"] == "active" for k in listed)
    from sqlalchemy import text

    with module_server.platform.db.engine.connect() as conn:
        stored = conn.execute(text("SELECT key_hash FROM api_keys WHERE id = :i"), {"i": new["id"]}).scalar()
        raw = conn.execute(text("SELECT COUNT(*) FROM api_keys WHERE key_hash = :k"), {"k": secret}).scalar()
    assert stored == hash_key(secret)
    assert raw == 0


def test_key_cannot_exceed_its_users_role(module_server: LiveServer) -> None:
    user = _name("v")
    with module_server.client() as c:
        c.post("/api/users", json={"name": user, "role": "viewer"})
        r = c.post("/api/keys", json={"name": "x", "user": user, "role": "admin"})
        assert r.status_code == 400
        assert "cannot carry more" in r.json()["error"]["message"]


def test_disabled_user_keys_stop_working(module_server: LiveServer) -> None:
    key = _key(module_server, "member")
    with module_server.client(key) as c:
        user = c.get("/api/whoami").json()["user"]
    with module_server.client() as admin:
        assert admin.patch(f"/api/users/{user}", json={"disabled": True}).status_code == 200
    with module_server.client(key) as c:
        r = c.get("/api/whoami")
        assert r.status_code == 401 and "disabled" in r.json()["error"]["message"]


def test_every_mutation_is_audited_with_request_id(module_server: LiveServer) -> None:
    name = _name("audited")
    rid = f"test-{uuid.uuid4().hex[:10]}"
    with module_server.client() as c:
        r = c.post("/api/projects", json={"name": name, "description": "d"}, headers={"X-Request-ID": rid})
        assert r.status_code == 201 and r.headers["x-request-id"] == rid
        project_id = r.json()["id"]
        r = c.patch(f"/api/projects/{name}", json={"description": "e"})
        auto_rid = r.headers["x-request-id"]
        assert auto_rid.startswith("req_")
        rows = c.get("/api/audit", params={"object_id": project_id}).json()["items"]
    actions = {row["action"]: row for row in rows}
    assert set(actions) == {"project.create", "project.update"}
    create = actions["project.create"]
    assert create["request_id"] == rid
    assert create["actor"].startswith("admin (pk-")
    assert create["actor_key_id"] and create["actor_user_id"]
    assert create["details"] == {"name": name}
    assert actions["project.update"]["request_id"] == auto_rid


def test_audit_pagination_and_filter(module_server: LiveServer) -> None:
    with module_server.client() as c:
        for _ in range(3):
            c.post("/api/users", json={"name": _name("pg"), "role": "viewer"})
        first = c.get("/api/audit", params={"action": "user.*", "limit": 2}).json()
        assert len(first["items"]) == 2 and first["next_cursor"]
        second = c.get("/api/audit", params={"action": "user.*", "limit": 2, "cursor": first["next_cursor"]}).json()
        assert second["items"] and second["items"][0]["id"] < first["items"][-1]["id"]
        assert all(i["action"].startswith("user.") for i in first["items"] + second["items"])
        assert c.get("/api/audit", params={"limit": 0}).status_code == 400


def test_failed_mutation_writes_no_audit_row(module_server: LiveServer) -> None:
    with module_server.client() as c:
        before = c.get("/api/audit", params={"action": "project.create"}).json()["items"]
        assert c.post("/api/projects", json={"name": "default"}).status_code == 409
        after = c.get("/api/audit", params={"action": "project.create"}).json()["items"]
    assert [r["id"] for r in before] == [r["id"] for r in after]


def test_bad_bodies_name_the_field(module_server: LiveServer) -> None:
    with module_server.client() as c:
        r = c.post("/api/projects", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = c.post("/api/users", json={"name": "x", "role": "superuser"})
        assert r.status_code == 400 and "superuser" in r.json()["error"]["message"]
        r = c.post("/api/keys", json={"name": "x", "rol": "viewer"})
        assert r.status_code == 400
        assert {"field": "rol", "message": "Extra inputs are not permitted"} in r.json()["error"]["details"]["errors"]
        r = c.get("/api/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/openapi.json", "/metrics"])
def test_public_endpoints(module_server: LiveServer, path: str) -> None:
    r = httpx.get(module_server.url + path)
    assert r.status_code == 200
    if path == "/api/openapi.json":
        spec = r.json()
        assert "/api/keys" in spec["paths"] and "/api/audit" in spec["paths"]
    if path == "/readyz":
        assert r.json()["status"] == "ready"
    if path == "/metrics":
        from prometheus_client.parser import text_string_to_metric_families

        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert "podium_http_requests" in names


def test_metrics_can_require_a_key_and_readyz_never_shows_the_database_url(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from podium.core.config import load_settings
    from podium.server.app import create_app
    from podium.server.serve import prepare

    settings = load_settings(home=str(tmp_path / "h"), metrics_require_key=True)
    key = prepare(settings, register_builtins=False)
    client = TestClient(create_app(settings))
    r = client.get("/metrics")
    assert r.status_code == 401 and "/metrics needs an API key" in r.json()["error"]["message"]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # a database that cannot be reached: the readiness answer names no host, user or password
    away = "postgresql://dbuser-secret:pw-secret@127.0.0.1:1/podium"
    down = TestClient(create_app(load_settings(home=str(tmp_path / "h"), database_url=away)))
    r = down.get("/readyz")
    assert r.status_code == 503 and r.json() == {"status": "unavailable", "database": "unreachable"}


def test_sign_in_needs_the_forms_token_and_sign_out_ends_the_session_everywhere(module_server: LiveServer) -> None:
    from .conftest import sign_in_http

    with httpx.Client(base_url=module_server.url, timeout=30) as c:
        # a form posted from another site has no token: no session (login CSRF)
        r = c.post("/login", data={"api_key": module_server.admin_key, "next": "/"}, follow_redirects=False)
        assert r.status_code == 400 and "podium_session" not in c.cookies and "expired" in r.text
        assert sign_in_http(c, module_server.admin_key).status_code == 303
        cookie = c.cookies["podium_session"]
        page = c.get("/")
        assert page.status_code == 200
        csrf = page.text.split('action="/logout"')[1].split('name="csrf" value="')[1].split('"')[0]
        assert c.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    # a copy of the cookie (kept by an attacker, or another tab) no longer signs anyone in
    with httpx.Client(base_url=module_server.url, timeout=30, cookies={"podium_session": cookie}) as c:
        r = c.get("/", follow_redirects=False)
        assert r.status_code in (302, 303, 307) and "/login" in r.headers["location"]


def test_a_demoted_users_keys_lose_the_power_at_once(module_server: LiveServer) -> None:
    """A key carries the role it was made with, but never more than its user holds now."""
    user = _name("demoted")
    with module_server.client() as c:
        assert c.post("/api/users", json={"name": user, "role": "admin"}).status_code == 201
        key = c.post("/api/keys", json={"name": "k", "user": user}).json()["key"]
    with module_server.client(key) as c:
        assert c.get("/api/whoami").json()["role"] == "admin"
        assert c.get("/api/users").status_code == 200
    with module_server.client() as c:
        assert c.patch(f"/api/users/{user}", json={"role": "viewer"}).status_code == 200
    with module_server.client(key) as c:
        assert c.get("/api/whoami").json()["role"] == "viewer"
        r = c.get("/api/users")
        assert r.status_code == 403 and "role 'viewer'" in r.json()["error"]["message"]
        r = c.post("/api/projects", json={"name": _name("p")})
        assert r.status_code == 403


def test_a_missing_project_error_names_no_other_project(module_server: LiveServer) -> None:
    secret = _name("secret-project")
    with module_server.client() as c:
        assert c.post("/api/projects", json={"name": secret}).status_code == 201
    key = _key(module_server, "member")
    with module_server.client(key) as c:
        r = c.get("/api/keys", params={"project": "no-such-project"})
        assert r.status_code == 404, r.text
        assert secret not in r.text and "default" not in r.json()["error"]["message"].replace("'", " ").split()
