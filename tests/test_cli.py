"""The `podium` CLI against a live server, reached through PODIUM_URL/PODIUM_API_KEY or admin.key."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import LiveServer, run_cli


def _env(srv: LiveServer, key: str | None = None) -> dict[str, str]:
    return {"PODIUM_URL": srv.url, "PODIUM_API_KEY": key or srv.admin_key}


def test_key_lifecycle_through_cli(server: LiveServer) -> None:
    env = _env(server)
    made = run_cli("users", "create", "carol", "--role", "member", "--json", env=env)
    assert made.returncode == 0, made.stderr
    created = run_cli("keys", "create", "--name", "carol-ci", "--user", "carol", "--expires", "7d", env=env)
    assert created.returncode == 0, created.stderr
    secret = next(w for w in created.stdout.split() if w.startswith("pk-"))
    assert "not shown again" in created.stdout

    who = run_cli("whoami", "--json", env=_env(server, secret))
    assert who.returncode == 0
    assert json.loads(who.stdout)["user"] == "carol"

    listed = run_cli("keys", "ls", "--json", env=env)
    keys = json.loads(listed.stdout)
    mine = next(k for k in keys if k["name"] == "carol-ci")
    assert mine["prefix"] == secret[:11] and mine["status"] == "active"
    assert secret not in listed.stdout

    human = run_cli("keys", "ls", env=env)
    assert secret[:11] in human.stdout and "carol-ci" in human.stdout

    revoked = run_cli("keys", "revoke", secret[:11], env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"Revoked {secret[:11]}" in revoked.stdout
    denied = run_cli("whoami", env=_env(server, secret))
    assert denied.returncode == 1
    assert denied.stderr.strip() == f"error: API key {secret[:11]}… was revoked"

    all_keys = json.loads(run_cli("keys", "ls", "--all", "--json", env=env).stdout)
    assert any(k["prefix"] == secret[:11] and k["status"] == "revoked" for k in all_keys)

    audit = run_cli("audit", "ls", "--action", "key.*", "--json", env=env)
    actions = [row["action"] for row in json.loads(audit.stdout)["items"]]
    assert actions[:2] == ["key.revoke", "key.create"]


def test_projects_and_users_commands(server: LiveServer) -> None:
    env = _env(server)
    assert run_cli("projects", "create", "search", "-d", "Search quality", env=env).returncode == 0
    listed = json.loads(run_cli("projects", "ls", "--json", env=env).stdout)
    assert {p["name"] for p in listed} == {"default", "search"}
    shown = run_cli("projects", "show", "search", env=env)
    assert "Search quality" in shown.stdout
    assert run_cli("users", "create", "dave", "--role", "viewer", env=env).returncode == 0
    assert run_cli("users", "set-role", "dave", "member", env=env).returncode == 0
    users = json.loads(run_cli("users", "ls", "--json", env=env).stdout)
    assert {u["name"]: u["role"] for u in users} == {"admin": "admin", "dave": "member"}
    dup = run_cli("projects", "create", "search", env=env)
    assert dup.returncode == 1 and dup.stderr.strip() == "error: project 'search' exists already"


def test_cli_reads_admin_key_from_home(server: LiveServer, tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "admin.key").write_text(server.admin_key + "\n")
    result = run_cli("whoami", "--json", env={"PODIUM_URL": server.url, "PODIUM_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["role"] == "admin"


def test_cli_errors_are_one_line(server: LiveServer, tmp_path: Path) -> None:
    nokey = run_cli("projects", "ls", env={"PODIUM_URL": server.url, "PODIUM_HOME": str(tmp_path / "empty")})
    assert nokey.returncode == 1
    assert nokey.stderr.startswith("error: no API key")
    down = run_cli("projects", "ls", env={"PODIUM_URL": "http://127.0.0.1:9", "PODIUM_API_KEY": "pk-x"})
    assert down.returncode == 1
    assert down.stderr.strip().startswith("error: cannot reach Podium at http://127.0.0.1:9")
    missing = run_cli("jobs", "show", "job_nope", env=_env(server))
    assert missing.returncode == 1 and missing.stderr.strip() == "error: job 'job_nope' not found"
    for r in (nokey, down, missing):
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
