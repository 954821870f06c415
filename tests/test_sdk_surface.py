"""The SDK's surface: `import podium` is cheap and exposes every domain (`podium.models`, `podium.prompts`,
`podium.kb`) and the tracing SDK lazily; one client configuration (`podium.configure`) reaches models, prompts
and tracing alike, in a real script against a live server; the resolution order of url and key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from podium.core import sdkconfig
from podium.core.errors import ConfigError
from podium.tracing.store import Span, Trace
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer
from .fakes import FakeServer, start_fake_openai

HEAVY = ("torch", "sqlalchemy", "fastapi", "starlette", "transformers", "openai", "pydantic", "httpx", "jinja2")


def run_script(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter in `cwd`, with no PODIUM_* setting, an empty home and no podium.toml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env["PODIUM_HOME"] = str(cwd / "empty-home")
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


IMPORT = f"""
import json, sys
import podium
loaded = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
out = {{"after_import": loaded()}}
out["models"] = [podium.models.__name__, callable(podium.models.get), callable(podium.models.list)]
out["prompts"] = [podium.prompts.__name__, callable(podium.prompts.get), callable(podium.prompts.run)]
out["kb"] = [podium.kb.__name__, *(callable(getattr(podium.kb, f)) for f in ("get", "create", "build", "list"))]
out["tracing"] = [callable(podium.trace), callable(podium.span), callable(podium.configure)]
out["after_use"] = loaded()
out["dir"] = [n for n in ("models", "prompts", "kb", "tracing", "gateway", "trace") if n in dir(podium)]
try:
    podium.no_such_domain
except AttributeError as exc:
    out["missing"] = str(exc)
print(json.dumps(out))
"""


def test_import_podium_is_light_and_exposes_domains_lazily(tmp_path: Path) -> None:
    result = run_script(IMPORT, tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["after_import"] == []
    assert out["models"] == ["podium.models", True, True]
    assert out["prompts"] == ["podium.prompts", True, True]
    assert out["kb"] == ["podium.kb", True, True, True, True]
    assert out["tracing"] == [True, True, True]
    assert out["after_use"] == []  # reaching the SDK entry points imports no server code
    assert out["dir"] == ["models", "prompts", "kb", "tracing", "gateway", "trace"]
    assert out["missing"] == "module 'podium' has no attribute 'no_such_domain'"


@pytest.fixture
def upstream() -> Iterator[FakeServer]:
    fake = start_fake_openai()
    yield fake
    fake.stop()


CONFIGURED = """
import json, os, sys
import podium
from podium.core.errors import PodiumError

podium.configure(url=sys.argv[1], api_key=sys.argv[2], flush_interval=0.1)
out = {}
out["models"] = sorted(m["name"] for m in podium.models.list())
out["chat"] = podium.models.get("echo").chat("hello there").text
out["prompt"] = podium.prompts.get("greet", label="production").render(name="Ada").messages
run = podium.prompts.run("greet", model="echo", label="production", variables={"name": "Bo"})
out["run"] = [run.ok, run.output]
with podium.span("configured-span") as s:
    pass
out["trace_id"] = s.trace_id
out["flushed"] = podium.flush(20)
try:  # a per-call url still wins over the configuration
    podium.models.list(url="http://127.0.0.1:9")
except PodiumError as exc:
    out["override"] = exc.message
print(json.dumps(out))
"""


def test_one_configuration_reaches_models_prompts_and_tracing(
    server: LiveServer, upstream: FakeServer, tmp_path: Path
) -> None:
    with server.client() as c:
        body = {"name": "echo", "provider": "openai", "base_url": upstream.url + "/v1", "upstream_model": "up"}
        assert c.post("/api/models/remote", json=body).status_code == 201, body
        prompt = {"name": "greet", "messages": [{"role": "user", "content": "Hello {{ name }}"}]}
        assert c.post("/api/prompts", json=prompt).status_code == 201
        assert c.put("/api/prompts/greet/labels/production", json={"version": 1}).status_code == 200

    # no PODIUM_URL, no key, no podium.toml: only podium.configure() says where the server is
    result = run_script(CONFIGURED, tmp_path, server.url, server.admin_key)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["models"] == ["echo"]
    assert out["chat"] == "echo: hello there"
    assert out["prompt"] == [{"role": "user", "content": "Hello Ada"}]
    assert out["run"] == [True, "echo: Hello Bo"]
    assert out["flushed"] is True
    assert out["override"].startswith("cannot reach Podium at http://127.0.0.1:9")

    assert server.app.state.runtime.get(TraceWriter).flush(10)
    with server.platform.db.read_session() as s:
        assert s.get(Trace, out["trace_id"]) is not None
        names = set(s.scalars(select(Span.name).where(Span.trace_id == out["trace_id"])))
    assert names == {"configured-span"}


@pytest.fixture
def pristine() -> Iterator[None]:
    """The process's client configuration, restored after the test."""
    saved = sdkconfig.configured()
    sdkconfig.reset()
    yield
    sdkconfig.reset()
    sdkconfig.configure(url=saved.url, api_key=saved.api_key)


def test_resolution_order(pristine: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PODIUM_HOME", str(home))
    monkeypatch.setenv("PODIUM_PORT", "8123")
    assert sdkconfig.resolve() == ("http://127.0.0.1:8123", None)  # nothing anywhere: the local default

    (home / "admin.key").write_text("pk-from-file\n")
    assert sdkconfig.resolve() == ("http://127.0.0.1:8123", "pk-from-file")  # a key written meanwhile is seen

    (tmp_path / "podium.toml").write_text('url = "http://toml:1"\napi_key = "pk-toml"\n')
    monkeypatch.setenv("PODIUM_TEST_NUDGE", "1")  # the environment changed: settings are read again
    assert sdkconfig.resolve() == ("http://toml:1", "pk-toml")

    monkeypatch.setenv("PODIUM_URL", "http://env:2/")
    monkeypatch.setenv("PODIUM_API_KEY", "pk-env")
    assert sdkconfig.resolve() == ("http://env:2", "pk-env")

    sdkconfig.configure(url="http://configured:3/")
    assert sdkconfig.resolve() == ("http://configured:3", "pk-env")  # url and key resolve separately
    sdkconfig.configure(api_key="pk-configured")
    assert sdkconfig.resolve() == ("http://configured:3", "pk-configured")

    assert sdkconfig.resolve("http://explicit:4", None) == ("http://explicit:4", "pk-configured")
    assert sdkconfig.resolve(None, "pk-explicit") == ("http://configured:3", "pk-explicit")


def test_a_bad_podium_toml_is_an_error_except_for_tracing(
    pristine: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "podium.toml").write_text("url = [unclosed\n")
    monkeypatch.setenv("PODIUM_API_KEY", "pk-env")
    with pytest.raises(ConfigError, match=r"podium\.toml: not valid TOML"):
        sdkconfig.resolve()
    assert sdkconfig.resolve(lenient=True) == ("http://127.0.0.1:8800", "pk-env")
    assert "cannot read settings" in caplog.text
