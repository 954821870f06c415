"""Configuration: precedence, one-line errors, and `podium config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podium.core.config import load_settings
from podium.core.errors import ConfigError

from .conftest import run_cli


def test_defaults(tmp_path: Path) -> None:
    s = load_settings()
    assert s.port == 8800
    assert s.host == "127.0.0.1"
    assert s.home_dir == (tmp_path / ".podium").resolve()
    assert s.effective_database_url == f"sqlite:///{tmp_path.resolve() / '.podium' / 'podium.db'}"
    assert s.effective_url == "http://127.0.0.1:8800"


def test_toml_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "podium.toml").write_text('port = 9000\nworkers = 3\nlog_level = "DEBUG"\n')
    s = load_settings()
    assert (s.port, s.workers, s.log_level) == (9000, 3, "debug")
    monkeypatch.setenv("PODIUM_PORT", "9100")
    assert load_settings().port == 9100
    assert load_settings(port=9200).port == 9200
    assert load_settings(port=None).port == 9100


def test_podium_config_env_points_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "conf" / "p.toml"
    cfg.parent.mkdir()
    cfg.write_text("port = 9300\n")
    monkeypatch.setenv("PODIUM_CONFIG", str(cfg))
    assert load_settings().port == 9300
    monkeypatch.setenv("PODIUM_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_unknown_toml_key(tmp_path: Path) -> None:
    (tmp_path / "podium.toml").write_text("prot = 9000\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "unknown key 'prot'" in err.value.message
    assert "port" in err.value.message


def test_wrong_type_in_toml_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "podium.toml").write_text('workers = "many"\n')
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.message.startswith("config 'workers' (from podium.toml): expected integer, got 'many'")
    (tmp_path / "podium.toml").write_text("")
    monkeypatch.setenv("PODIUM_PORT", "eighty")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "'port' (from env PODIUM_PORT): expected integer" in err.value.message
    monkeypatch.setenv("PODIUM_PORT", "70000")
    with pytest.raises(ConfigError, match="port"):
        load_settings()
    monkeypatch.delenv("PODIUM_PORT")
    monkeypatch.setenv("PODIUM_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="one of 'debug', 'info', 'warning', 'error'"):
        load_settings()


def test_bad_toml_syntax(tmp_path: Path) -> None:
    (tmp_path / "podium.toml").write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


def test_config_show_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    (tmp_path / "podium.toml").write_text('workers = 2\nsecret_key = "s3cret-value"\n')
    env = {
        "PODIUM_PORT": "8123",
        "PODIUM_DATABASE_URL": "postgresql://bob:hunter2@db.example:5432/podium",
        "PODIUM_API_KEY": "pk-abcdef",
    }
    result = run_cli("config", "show", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["port"] == {"value": 8123, "source": "env PODIUM_PORT"}
    assert shown["workers"]["source"].endswith("podium.toml")
    assert shown["host"]["source"] == "default"
    assert shown["secret_key"]["value"] == "********"
    assert shown["api_key"]["value"] == "********"
    assert "hunter2" not in result.stdout
    assert "bob:***@db.example" in shown["database_url"]["value"]
    human = run_cli("config", "show", env=env, cwd=tmp_path)
    assert human.returncode == 0
    assert "s3cret" not in human.stdout and "hunter2" not in human.stdout


def test_cli_config_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "podium.toml").write_text("port = 'x'\n")
    result = run_cli("config", "show", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: config 'port'")
    assert "Traceback" not in result.stderr
