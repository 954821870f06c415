"""The model registry over HTTP and the CLI: versions, hashes, formats, aliases, lineage; both databases."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from pathlib import Path

import sqlalchemy as sa

from .conftest import LiveServer, project_key, run_cli


def _name(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_versions_and_dedup(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    name = _name()
    with module_server.client() as c:
        r = c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"]), "message": "first"})
        assert r.status_code == 201, r.text
        v1 = r.json()
        assert (v1["version"], v1["format"], v1["task"], v1["provider"]) == (1, "hf", "chat", "local")
        assert v1["context_length"] == 256
        weights = next(f for f in v1["files"] if f["path"] == "model.safetensors")
        assert weights["sha256"] == _sha(tiny_models["llama"] / "model.safetensors")
        assert 2_000_000 < v1["parameters"] < 2_100_000  # 30522*64 embedding + two small blocks
        again = c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"])}).json()
        assert again["id"] == v1["id"] and again["version"] == 1
        v2 = c.post("/api/models", json={"name": name, "source": str(tiny_models["llama2"])}).json()
        assert v2["version"] == 2 and v2["sha256"] != v1["sha256"]
        detail = c.get(f"/api/models/{name}").json()
        assert [v["version"] for v in detail["versions"]] == [2, 1]
        assert detail["latest_version"] == 2
    # content is in the artifact store, verified
    blobs = module_server.platform.blobs
    assert blobs.get(weights["sha256"]) == (tiny_models["llama"] / "model.safetensors").read_bytes()


def test_hash_mismatch_registers_nothing(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    name = _name()
    with module_server.client() as c:
        r = c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"]), "sha256": "0" * 64})
        assert r.status_code == 400
        assert "hash mismatch" in r.json()["error"]["message"]
        assert "nothing was registered" in r.json()["error"]["message"]
        assert c.get(f"/api/models/{name}").status_code == 404
    with module_server.platform.db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM models WHERE name = :n"), {"n": name}).scalar() == 0


def test_bad_formats_are_rejected(module_server: LiveServer, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a model")
    fake_gguf = tmp_path / "model.gguf"
    fake_gguf.write_bytes(b"GGML" + b"\0" * 100)
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_models["llama"], truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases = {
        str(junk): "cannot tell the format",
        str(fake_gguf): "not a GGUF file",
        str(truncated): "truncated",
        str(tmp_path / "missing"): "neither an existing path",
        "pip:not-an-installed-package": "is not installed",
    }
    with module_server.client() as c:
        for source, expected in cases.items():
            name = _name()
            r = c.post("/api/models", json={"name": name, "source": source})
            assert r.status_code in (400, 404), (source, r.text)
            assert expected in r.json()["error"]["message"], (source, r.json())
            assert c.get(f"/api/models/{name}").status_code == 404


def test_aliases_move_with_history(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    name = _name()
    with module_server.client() as c:
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"])})
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama2"])})
        assert c.put(f"/api/models/{name}/aliases/production", json={"version": 1}).status_code == 200
        assert c.get(f"/api/models/{name}/versions/production").json()["version"] == 1
        assert c.put(f"/api/models/{name}/aliases/production", json={"version": "v2"}).status_code == 200
        assert c.get(f"/api/models/{name}/versions/production").json()["version"] == 2
        assert c.get(f"/api/models/{name}/versions/latest").json()["version"] == 2
        history = c.get(f"/api/models/{name}").json()["history"]
        assert [(h["from_version"], h["to_version"]) for h in history] == [(1, 2), (None, 1)]
        assert all(h["actor"].startswith("admin (pk-") for h in history)
        r = c.put(f"/api/models/{name}/aliases/latest", json={"version": 1})
        assert r.status_code == 400 and "latest" in r.json()["error"]["message"]
        r = c.put(f"/api/models/{name}/aliases/staging", json={"version": 9})
        assert r.status_code == 404 and "no version 9" in r.json()["error"]["message"]
        r = c.get(f"/api/models/{name}/versions/canary")
        assert r.status_code == 404 and "its aliases: production" in r.json()["error"]["message"]
        # an alias can follow another alias or name a version by id; `v3` is a version number, never an alias
        v1_id = c.get(f"/api/models/{name}/versions/1").json()["id"]
        assert c.put(f"/api/models/{name}/aliases/staging", json={"version": "production"}).json()["version"] == 2
        assert c.put(f"/api/models/{name}/aliases/first", json={"version": v1_id}).json()["version"] == 1
        r = c.put(f"/api/models/{name}/aliases/v3", json={"version": 1})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "alias"
        assert c.delete(f"/api/models/{name}/aliases/staging").status_code == 204
        assert c.delete(f"/api/models/{name}/aliases/first").status_code == 204
        assert c.delete(f"/api/models/{name}/aliases/production").status_code == 204
        assert c.get(f"/api/models/{name}").json()["history"][0]["to_version"] is None


def test_concurrent_alias_moves_all_recorded(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    name = _name()
    with module_server.client() as c:
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"])})
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama2"])})
    statuses: list[int] = []

    def move(i: int) -> None:
        with module_server.client() as c:
            statuses.append(c.put(f"/api/models/{name}/aliases/prod", json={"version": 1 + i % 2}).status_code)

    threads = [threading.Thread(target=move, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 10
    with module_server.client() as c:
        detail = c.get(f"/api/models/{name}").json()
    history = detail["history"]
    assert len(history) == 10
    assert history[0]["to_version"] == detail["aliases"]["prod"]
    # the history is a chain: each move starts where the previous one ended
    chain = list(reversed(history))
    assert chain[0]["from_version"] is None
    assert all(chain[i]["from_version"] == chain[i - 1]["to_version"] for i in range(1, len(chain)))


def test_remote_model_key_is_encrypted_and_hidden(module_server: LiveServer) -> None:
    name = _name("remote")
    secret = "sk-upstream-" + uuid.uuid4().hex
    body = {
        "name": name,
        "provider": "openai",
        "base_url": "http://10.0.0.5:8000/v1",
        "upstream_model": "llama-3-8b",
        "api_key": secret,
        "context_length": 8192,
    }
    with module_server.client() as c:
        r = c.post("/api/models/remote", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["config"]["api_key"] == "********"
        assert secret not in c.get(f"/api/models/{name}").text
        bad = c.post("/api/models/remote", json={**body, "name": _name(), "base_url": "ftp://x"})
        assert bad.status_code == 400 and "base_url" in bad.json()["error"]["message"]
    with module_server.platform.db.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT config FROM model_versions WHERE id = :i"), {"i": r.json()["id"]}
        ).scalar()
    assert secret not in str(stored)
    assert "enc:v1:" in str(stored)


def test_lora_needs_its_base_and_records_lineage(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    base, adapter = _name("base"), _name("lora")
    with module_server.client() as c:
        c.post("/api/models", json={"name": base, "source": str(tiny_models["llama"])})
        r = c.post("/api/models", json={"name": adapter, "source": str(tiny_models["lora"])})
        assert r.status_code == 400 and "adapter" in r.json()["error"]["message"]
        r = c.post(
            "/api/models",
            json={
                "name": adapter,
                "source": str(tiny_models["lora"]),
                "base": f"{base}@1",
                "lineage": {"trained_on": ["dsv_example"]},
            },
        )
        assert r.status_code == 201, r.text
        v = r.json()
        assert v["format"] == "peft" and v["base_version_id"]
        assert v["lineage"]["adapter_of"] == v["base_version_id"]
        assert v["lineage"]["trained_on"] == ["dsv_example"]


def test_unknown_model_and_roles(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    with module_server.client() as c:
        r = c.get("/api/models/does-not-exist")
        assert r.status_code == 404
        assert "known models:" in r.json()["error"]["message"]
        c.post("/api/users", json={"name": _name("viewer"), "role": "viewer"})
        users = [u["name"] for u in c.get("/api/users").json() if u["role"] == "viewer"]
        key = c.post("/api/keys", json={"name": "v", "user": users[-1]}).json()["key"]
    with module_server.client(key) as viewer:
        r = viewer.post("/api/models", json={"name": _name(), "source": str(tiny_models["llama"])})
        assert r.status_code == 403
        assert viewer.get("/api/models").status_code == 200


def test_archive_hides_and_reregister_restores(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    name = _name()
    with module_server.client() as c:
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"])})
        assert c.delete(f"/api/models/{name}").json()["archived"] is True
        assert name not in [m["name"] for m in c.get("/api/models").json()]
        assert c.get(f"/api/models/{name}/versions/1").status_code == 200  # kept for lineage
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"])})
        assert name in [m["name"] for m in c.get("/api/models").json()]


def test_cli_register_pull_alias_show(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    env = {"PODIUM_URL": module_server.url, "PODIUM_API_KEY": module_server.admin_key}
    name = _name("cli")
    reg = run_cli("models", "register", name, "--source", str(tiny_models["llama"]), "-m", "from the cli", env=env)
    assert reg.returncode == 0, reg.stderr
    assert f"Registered {name}@1 (hf" in reg.stdout
    pulled = run_cli("models", "pull", str(tiny_models["llama2"]), "--name", name, "--json", env=env)
    assert pulled.returncode == 0, pulled.stderr
    job = json.loads(pulled.stdout)
    assert job["status"] == "succeeded" and job["result"]["version"] == 2
    alias = run_cli("models", "alias", name, "production", "1", env=env)
    assert alias.returncode == 0 and f"{name}@production → version 1" in alias.stdout
    shown = run_cli("models", "show", name, env=env)
    assert "production" in shown.stdout and "hf" in shown.stdout
    one = run_cli("models", "show", f"{name}@production", "--json", env=env)
    assert json.loads(one.stdout)["version"] == 1
    listed = json.loads(run_cli("models", "ls", "--json", env=env).stdout)
    assert any(m["name"] == name and m["aliases"] == {"production": 1} for m in listed)
    bad = run_cli("models", "pull", "/nonexistent/path", "--name", _name(), env=env)
    assert bad.returncode == 1
    assert "neither an existing path" in bad.stdout + bad.stderr
    missing = run_cli("models", "show", "ghost-model", env=env)
    assert missing.returncode == 1 and missing.stderr.startswith("error: model 'ghost-model' not found")
    assert run_cli("models", "rm", name, env=env).returncode == 0


def test_rollback_moves_an_alias_back_and_is_audited(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    name = _name("rb")
    with module_server.client() as c:
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"])})
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama2"])})
        model_id = c.get(f"/api/models/{name}").json()["id"]
        # an alias that was never moved has nothing to go back to
        assert c.put(f"/api/models/{name}/aliases/prod", json={"version": 1}).status_code == 200
        r = c.post(f"/api/models/{name}/aliases/prod/rollback")
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert "no earlier version" in message and f"podium models alias {name} prod VERSION" in message
        r = c.post(f"/api/models/{name}/aliases/canary/rollback")
        assert r.status_code == 404 and "has no alias 'canary'" in r.json()["error"]["message"]
        assert "its aliases: prod" in r.json()["error"]["message"]
        # moving onto the same version is no move: rollback skips it
        assert c.put(f"/api/models/{name}/aliases/prod", json={"version": 2}).status_code == 200
        assert c.put(f"/api/models/{name}/aliases/prod", json={"version": 2}).status_code == 200
        r = c.post(f"/api/models/{name}/aliases/prod/rollback")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model"], body["alias"], body["from_version"], body["to_version"]) == (name, "prod", 2, 1)
        assert body["version"]["version"] == 1 and "prod" in body["version"]["aliases"]
        assert c.get(f"/api/models/{name}/versions/prod").json()["version"] == 1
        history = c.get(f"/api/models/{name}").json()["history"]
        assert [(h["from_version"], h["to_version"]) for h in history] == [(2, 1), (2, 2), (1, 2), (None, 1)]
        # a second rollback undoes the first
        assert c.post(f"/api/models/{name}/aliases/prod/rollback").json()["to_version"] == 2
        audit = c.get("/api/audit", params={"action": "model.alias.rollback", "object_id": model_id}).json()["items"]
        assert [a["details"] for a in audit] == [
            {"alias": "prod", "from_version": 1, "to_version": 2},
            {"alias": "prod", "from_version": 2, "to_version": 1},
        ]
        assert audit[0]["actor"].startswith("admin")


def test_rollback_refuses_viewers_and_other_projects(module_server: LiveServer) -> None:
    team, name = _name("team"), _name("rbp")
    with module_server.client(project_key(module_server, team, "admin")) as c:
        for upstream in ("one", "two"):  # a project's own models are remote ones (server paths are admins')
            body = {
                "name": name,
                "provider": "openai",
                "base_url": "http://10.0.0.5:8000/v1",
                "upstream_model": upstream,
            }
            assert c.post("/api/models/remote", json=body).status_code == 201
    member = project_key(module_server, team)
    with module_server.client(member) as c:
        for version in (1, 2):
            assert c.put(f"/api/models/{name}/aliases/prod", json={"version": version}).status_code == 200
    with module_server.client(project_key(module_server, _name("other"))) as other:
        r = other.post(f"/api/models/{name}/aliases/prod/rollback")
        assert r.status_code == 404 and team not in r.text
    with module_server.client(project_key(module_server, team, "viewer")) as viewer:
        r = viewer.post(f"/api/models/{name}/aliases/prod/rollback")
        assert r.status_code == 403 and "move model aliases" in r.json()["error"]["message"]
    with module_server.client(member) as c:
        assert c.get(f"/api/models/{name}/versions/prod").json()["version"] == 2  # nothing moved
        assert c.post(f"/api/models/{name}/aliases/prod/rollback").json()["to_version"] == 1


def test_cli_rollback(module_server: LiveServer, tiny_models: dict[str, Path]) -> None:
    env = {"PODIUM_URL": module_server.url, "PODIUM_API_KEY": module_server.admin_key}
    name = _name("clirb")
    with module_server.client() as c:
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama"])})
        c.post("/api/models", json={"name": name, "source": str(tiny_models["llama2"])})
    assert run_cli("models", "alias", name, "production", "1", env=env).returncode == 0
    assert run_cli("models", "alias", name, "production", "2", env=env).returncode == 0
    done = run_cli("models", "rollback", f"{name}@production", env=env)
    assert done.returncode == 0, done.stderr
    assert f"{name}@production: version 2 → 1" in done.stdout
    again = run_cli("models", "rollback", f"{name}@production", "--json", env=env)
    assert json.loads(again.stdout)["to_version"] == 2
    bad = run_cli("models", "rollback", name, env=env)
    assert bad.returncode != 0 and "is not NAME@ALIAS" in bad.stderr
    missing = run_cli("models", "rollback", f"{name}@canary", env=env)
    assert missing.returncode == 1 and missing.stderr.startswith(f"error: model '{name}' has no alias 'canary'")
