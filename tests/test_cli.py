"""The `podium` CLI against a live server, reached through PODIUM_URL/PODIUM_API_KEY or admin.key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from podium.tracing.writer import TraceWriter

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


# --- list output: whole names and ids in pipes, JSON for every list ----------------------------------------


def _commands() -> dict[str, Any]:
    """Every leaf command of `podium` by its full name (`prompts experiment ls`), from the real app."""
    from typer.main import get_command

    from podium.cli import app

    root = get_command(app)
    ctx = root.make_context("podium", [], resilient_parsing=True)
    found: dict[str, Any] = {}

    def walk(group: Any, path: list[str]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if hasattr(command, "list_commands"):
                walk(command, [*path, name])
            else:
                found[" ".join([*path, name])] = command

    walk(root, [])
    return found


# every `ls` and `kinds` command is a list (found, not listed by hand); these are too, or need arguments
MORE_LISTS = ["config show"]
LIST_ARGS = {"prompts experiment ls": ["hello"]}


def test_piped_tables_keep_names_and_ids_whole(server: LiveServer) -> None:
    env = {**_env(server), "COLUMNS": "40"}  # a narrow "terminal": Rich used to cut names to fit it
    made = run_cli(
        "models", "register", "smollm2-135m-instruct", "--provider", "openai",
        "--base-url", "http://127.0.0.1:9/v1", "--upstream-model", "smollm2", "-d", "a [bracketed] note", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    trace_id = "trc_01JDZQ8X4M6N2P3R5S7T9V0W1Y"
    with server.client() as c:
        span = {"id": "spn_piped", "trace_id": trace_id, "name": "piped", "start_time": "2026-11-30T12:00:00+00:00"}
        assert c.post("/api/traces/ingest", json={"spans": [span]}).status_code == 202

    listed = run_cli("models", "ls", env=env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == ["name", "task", "provider", "latest_version", "aliases", "builtin", "archived"]
    assert [r.split("\t")[:3] for r in rows] == [["smollm2-135m-instruct", "chat", "openai"]]
    assert "…" not in listed.stdout and "│" not in listed.stdout
    grep = subprocess.run(["grep", "smollm2-135m-instruct"], input=listed.stdout, capture_output=True, text=True)
    assert grep.returncode == 0

    shown = run_cli("models", "show", "smollm2-135m-instruct", env=env)
    assert "description: a [bracketed] note" in shown.stdout  # values are text, never Rich markup

    assert server.app.state.runtime.get(TraceWriter).flush(10)
    traces = run_cli("traces", "ls", env=env)
    row = next(line.split("\t") for line in traces.stdout.splitlines() if "piped" in line)
    assert row[0] == trace_id


def test_every_list_command_answers_json(server: LiveServer, tmp_path: Path) -> None:
    commands = _commands()
    lists = sorted(name for name in commands if name.split()[-1] in ("ls", "kinds")) + MORE_LISTS
    for name in lists:
        assert any("--json" in getattr(p, "opts", ()) for p in commands[name].params), f"podium {name} has no --json"
    assert {"audit ls", "jobs ls", "keys ls", "traces ls", "scores ls", "routes ls", "limits ls"} <= set(lists)
    assert {"prompts ls", "prompts experiment ls", "models ls", "projects ls", "users ls", "jobs kinds"} <= set(lists)

    env = _env(server)
    (tmp_path / "hello.yaml").write_text("name: hello\ntemplate: Hello {{ who }}\n")
    assert run_cli("prompts", "push", str(tmp_path), env=env).returncode == 0
    for name in lists:
        args = [*name.split(), *LIST_ARGS.get(name, []), "--json"]
        result = run_cli(*args, env=env, cwd=tmp_path)
        assert result.returncode == 0, (name, result.stderr)
        json.loads(result.stdout)  # valid JSON, and nothing else on stdout
