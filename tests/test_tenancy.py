"""Roles per project: members act in their projects only, project admins manage their project, server
admins manage everything; a key never does more than its user can do there now."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from podium.core.db import Database, forget_database
from podium.core.migrate import upgrade

from .conftest import LiveServer, make_db_url, release_db_url


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call(srv: LiveServer, key: str | None, method: str, path: str, body: Any = None) -> Any:
    with srv.client(key) as c:
        return c.request(method, path, json=body)


def setup_team(srv: LiveServer) -> dict[str, Any]:
    """Two projects; in `a` an admin, a member and a viewer; `b` has its own member."""
    a, b = _name("team-a"), _name("team-b")
    names = {r: _name(r) for r in ("padmin", "member", "viewer", "other")}
    keys: dict[str, str] = {}
    for p in (a, b):
        assert call(srv, None, "POST", "/api/projects", {"name": p}).status_code == 201
    for role, project in (("padmin", a), ("member", a), ("viewer", a), ("other", b)):
        body = {
            "name": names[role],
            "role": "admin" if role == "padmin" else "member" if role != "viewer" else "viewer",
        }
        assert call(srv, None, "POST", "/api/users", {**body, "project": project}).status_code == 201
        r = call(srv, None, "POST", "/api/keys", {"name": role, "user": names[role], "project": project})
        assert r.status_code == 201, r.text
        keys[role] = r.json()["key"]
    return {"a": a, "b": b, "names": names, "keys": keys}


def test_a_project_admin_manages_its_project_and_nothing_else(module_server: LiveServer) -> None:
    t = setup_team(module_server)
    admin = t["keys"]["padmin"]
    me = call(module_server, admin, "GET", "/api/whoami").json()
    assert me["role"] == "admin" and me["admin"] is False and me["project"] == t["a"]
    # its project's members, their roles, its audit log
    members = call(module_server, admin, "GET", f"/api/projects/{t['a']}/members").json()
    assert {m["user"]: m["role"] for m in members} == {
        t["names"]["padmin"]: "admin",
        t["names"]["member"]: "member",
        t["names"]["viewer"]: "viewer",
    }
    r = call(module_server, admin, "PUT", f"/api/projects/{t['a']}/members/{t['names']['viewer']}", {"role": "member"})
    assert r.status_code == 200 and r.json()["role"] == "member"
    users = call(module_server, admin, "GET", "/api/users").json()
    assert t["names"]["other"] not in {u["name"] for u in users}  # not another project's people
    audit = call(module_server, admin, "GET", "/api/audit").json()["items"]
    assert audit and all(row["project_id"] == me["project_id"] for row in audit)
    # a key for a member of its project, not for anyone else
    r = call(module_server, admin, "POST", "/api/keys", {"name": "for-member", "user": t["names"]["member"]})
    assert r.status_code == 201 and r.json()["role"] == "member"
    r = call(module_server, admin, "POST", "/api/keys", {"name": "x", "user": t["names"]["other"]})
    assert r.status_code == 400 and "not a member of project" in r.json()["error"]["message"]
    # nothing outside its project, and nothing server-wide
    for method, path, body in [
        ("POST", "/api/projects", {"name": _name("p")}),
        ("POST", "/api/users", {"name": _name("u"), "role": "viewer"}),
        ("PUT", f"/api/projects/{t['b']}/members/{t['names']['member']}", {"role": "admin"}),
        ("POST", "/api/keys", {"name": "x", "project": t["b"]}),
        ("PATCH", f"/api/users/{t['names']['member']}", {"disabled": True}),
        ("PUT", "/api/routes/hijack", {"name": "hijack", "deployments": [{"provider": "model", "model": "x"}]}),
    ]:
        r = call(module_server, admin, method, path, body)
        assert r.status_code in (403, 404), (path, r.status_code, r.text)
    assert call(module_server, admin, "GET", f"/api/projects/{t['b']}/members").status_code == 404
    assert t["b"] not in [p["name"] for p in call(module_server, admin, "GET", "/api/projects").json()]


def test_a_removed_member_and_a_lowered_role_take_effect_at_once(module_server: LiveServer) -> None:
    t = setup_team(module_server)
    member, padmin = t["keys"]["member"], t["keys"]["padmin"]
    assert call(module_server, member, "GET", "/api/whoami").json()["role"] == "member"
    r = call(module_server, padmin, "PUT", f"/api/projects/{t['a']}/members/{t['names']['member']}", {"role": "viewer"})
    assert r.status_code == 200
    assert call(module_server, member, "GET", "/api/whoami").json()["role"] == "viewer"
    r = call(module_server, padmin, "DELETE", f"/api/projects/{t['a']}/members/{t['names']['member']}")
    assert r.status_code == 204
    r = call(module_server, member, "GET", "/api/whoami")
    assert r.status_code == 401 and "no longer a member" in r.json()["error"]["message"]


def test_a_change_made_by_another_process_reaches_this_one_at_its_next_epoch_read(module_server: LiveServer) -> None:
    """Another server process (its own database engine and key cache) revokes a key and removes a member; this
    server forgets its cached principals at its next read of the access epoch (each second), not after their
    five-second lifetime."""
    from podium.auth.service import key_cache, remove_member, revoke_key
    from podium.core.identity import Actor

    t = setup_team(module_server)
    member, viewer = t["keys"]["member"], t["keys"]["viewer"]
    for key in (member, viewer):
        assert call(module_server, key, "GET", "/api/whoami").status_code == 200  # cached here now
    other = Database(module_server.settings.effective_database_url)
    try:
        revoke_key(other, Actor.system(), viewer[:11])
        remove_member(other, Actor.system(), t["a"], t["names"]["member"])
    finally:
        other.dispose()
    key_cache(module_server.platform.db).watch()  # what the server's watcher does every second
    r = call(module_server, viewer, "GET", "/api/whoami")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"], r.text
    r = call(module_server, member, "GET", "/api/whoami")
    assert r.status_code == 401 and "no longer a member" in r.json()["error"]["message"], r.text


def test_a_key_acts_in_its_own_project_only(module_server: LiveServer) -> None:
    t = setup_team(module_server)
    other = t["keys"]["other"]
    assert call(module_server, other, "GET", f"/api/projects/{t['a']}").status_code == 404
    r = call(module_server, other, "POST", "/api/jobs", {"kind": "models.pull", "params": {}, "project": t["a"]})
    assert r.status_code == 403
    # a viewer's key makes no key stronger than itself
    r = call(module_server, t["keys"]["viewer"], "POST", "/api/keys", {"name": "up", "role": "member"})
    assert r.status_code == 400


def test_server_admins_are_made_and_unmade_by_server_admins(module_server: LiveServer) -> None:
    boss = _name("boss")
    r = call(module_server, None, "POST", "/api/users", {"name": boss, "admin": True})
    assert r.status_code == 201 and r.json()["admin"] is True and r.json()["projects"] == {}
    key = call(module_server, None, "POST", "/api/keys", {"name": "boss", "user": boss}).json()["key"]
    me = call(module_server, key, "GET", "/api/whoami").json()
    assert me["admin"] is True and me["role"] == "admin"
    assert call(module_server, key, "POST", "/api/projects", {"name": _name("by-boss")}).status_code == 201
    assert call(module_server, None, "PATCH", f"/api/users/{boss}", {"admin": False}).status_code == 200
    r = call(module_server, key, "GET", "/api/whoami")
    assert r.status_code == 401  # no longer an admin, and a member of no project


def test_the_migration_keeps_what_every_user_could_do(backend: str, tmp_path: Any) -> None:
    """0007 turns global roles into memberships: admins become server admins, everyone keeps their role in
    the default project and in every project they hold a key in."""
    url = make_db_url(backend, tmp_path)
    try:
        db = Database(url)
        upgrade(db, "0006")
        now = "2026-11-30T00:00:00+00:00"
        with db.engine.begin() as c:
            for pid, name in (("prj_d", "default"), ("prj_x", "x")):
                c.execute(
                    sa.text("INSERT INTO projects (id, name, description, created_at) VALUES (:i, :n, '', :t)"),
                    {"i": pid, "n": name, "t": now},
                )
            for uid, role in (("usr_a", "admin"), ("usr_m", "member"), ("usr_v", "viewer")):
                c.execute(
                    sa.text(
                        "INSERT INTO users (id, name, email, role, disabled, created_at)"
                        " VALUES (:i, :i, NULL, :r, false, :t)"
                    ),
                    {"i": uid, "r": role, "t": now},
                )
            c.execute(
                sa.text(
                    "INSERT INTO api_keys (id, prefix, key_hash, name, user_id, project_id, role, created_at)"
                    " VALUES ('key_1', 'pk-x', 'h', 'k', 'usr_m', 'prj_x', 'member', :t)"
                ),
                {"t": now},
            )
        upgrade(db)
        with db.engine.connect() as c:
            admins = {r[0]: bool(r[1]) for r in c.execute(sa.text("SELECT id, is_admin FROM users"))}
            members = {
                (r[0], r[1]): r[2] for r in c.execute(sa.text("SELECT project_id, user_id, role FROM memberships"))
            }
        assert admins == {"usr_a": True, "usr_m": False, "usr_v": False}
        assert members == {
            ("prj_d", "usr_a"): "admin",
            ("prj_d", "usr_m"): "member",
            ("prj_d", "usr_v"): "viewer",
            ("prj_x", "usr_m"): "member",
        }
    finally:
        forget_database(url)
        release_db_url(backend, url)
