"""Tools from MCP servers (podium.chains.mcp), against a real MCP server made with the `mcp` SDK
(tests/mcp_server_fixture.py): over stdio, as a child process, and over streamable HTTP, served by uvicorn."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvicorn
from pydantic import ValidationError

from podium.chains.mcp import McpServer, list_tools, load_servers, tool_name
from podium.chains.tools import Tool, ToolFailed, ToolRegistry
from tests.conftest import free_port

FIXTURE = str(Path(__file__).with_name("mcp_server_fixture.py"))
MARK = f"--podium-test-{uuid.uuid4().hex}"  # on every fixture process this module starts, to find leftovers


def stdio_server(name: str = "fixture", **extra: Any) -> McpServer:
    return McpServer(name=name, transport="stdio", command=sys.executable, args=[FIXTURE, MARK], **extra)


def leftovers() -> list[psutil.Process]:
    """Fixture processes this module started that are still alive."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if MARK in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def wait_for_no_leftovers(seconds: float = 5) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (found := leftovers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def by_tool(tools: list[Tool]) -> dict[str, Tool]:
    return {t.meta["mcp_tool"]: t for t in tools}


def call(t: Tool, arguments: Any, timeout: float = 10) -> Any:
    return asyncio.run(t(arguments, timeout))


@pytest.fixture(scope="module")
def stdio_tools() -> Iterator[dict[str, Tool]]:
    yield by_tool(asyncio.run(list_tools(stdio_server())))
    assert not wait_for_no_leftovers(), "an MCP server process outlived the tests"


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    from tests.mcp_server_fixture import app

    port = free_port()
    config = uvicorn.Config(
        app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the MCP test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive(), "the MCP test server did not stop"


@pytest.fixture(scope="module")
def http_tools(http_url: str) -> dict[str, Tool]:
    server = McpServer(name="web", transport="http", url=http_url, headers={"X-Podium-Test": "yes"})
    return by_tool(asyncio.run(list_tools(server)))


# --- the server's configuration ---


def test_server_configuration_is_checked():
    assert stdio_server().timeout == 30
    assert McpServer(name="w", transport="http", url="https://mcp.example.com/mcp").headers == {}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": "fixture", "transport": "stdio"}, "needs the `command`"),
        ({"name": "fixture", "transport": "stdio", "command": "x", "url": "http://h/mcp"}, "for http servers"),
        ({"name": "w", "transport": "http"}, "needs the `url`"),
        ({"name": "w", "transport": "http", "url": "ftp://h/mcp"}, "http:// or https://"),
        ({"name": "w", "transport": "http", "url": "http:///mcp"}, "with a host"),
        ({"name": "w", "transport": "http", "url": "http://h/mcp", "command": "x"}, "for stdio servers"),
        ({"name": "w", "transport": "http", "url": "http://h/mcp", "args": ["-v"]}, "for stdio servers"),
        ({"name": "1st", "transport": "stdio", "command": "x"}, "starting with a letter"),
        ({"name": "a" * 41, "transport": "stdio", "command": "x"}, "1-40 letters"),
        ({"name": "has space", "transport": "stdio", "command": "x"}, "1-40 letters"),
        ({"name": "w", "transport": "sse", "url": "http://h/mcp"}, "transport"),
        ({"name": "w", "transport": "stdio", "command": "x", "timeout": 0}, "greater than 0"),
        ({"name": "w", "transport": "stdio", "command": "x", "extra": 1}, "Extra inputs"),
    ]
    for fields, message in bad:
        with pytest.raises(ValidationError, match=message):
            McpServer(**fields)


def test_tool_names_fit_the_pattern_models_accept():
    assert tool_name("fixture", "add") == "fixture__add"
    assert tool_name("srv", "files/read.v2 now") == "srv__files_read_v2_now"
    long = tool_name("srv", "x" * 100)
    assert len(long) == 64 and long.startswith("srv__xxx")


# --- over stdio ---


def test_stdio_lists_the_tools(stdio_tools: dict[str, Tool]):
    assert set(stdio_tools) >= {"add", "echo", "fail", "sleep", "die", "shout"}
    add = stdio_tools["add"]
    assert add.name == "fixture__add"
    assert add.description == "Add two integers."
    assert add.parameters["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert add.parameters["required"] == ["a", "b"]
    assert add.meta == {"mcp_server": "fixture", "mcp_tool": "add"}
    assert add.definition()["function"]["name"] == "fixture__add"
    assert ToolRegistry(stdio_tools.values()).names() == sorted(t.name for t in stdio_tools.values())


def test_stdio_calls(stdio_tools: dict[str, Tool]):
    # MCPServer wraps a tool's plain return value as structured content {"result": value} (and as text);
    # Podium answers with the structured content when there is some.
    assert call(stdio_tools["add"], {"a": 2, "b": 3}) == {"result": 5}
    assert call(stdio_tools["echo"], {"text": "héllo\nwörld"}) == {"result": "héllo\nwörld"}
    # A tool made with structured_output=False answers with text only.
    assert call(stdio_tools["shout"], {"text": "hi", "times": 2}) == "HI HI"
    assert call(stdio_tools["shout"], {"text": "hi"}) == "HI"


def test_stdio_tool_error(stdio_tools: dict[str, Tool]):
    with pytest.raises(ToolFailed, match=r"fixture__fail.*failed on purpose: the disk is full"):
        call(stdio_tools["fail"], {"reason": "the disk is full"})


def test_bad_arguments_are_refused_before_any_call(stdio_tools: dict[str, Tool]):
    add = stdio_tools["add"]
    cases = [
        ({"a": 1}, "argument 'b': required"),
        ({"a": 1, "b": "two"}, 'argument \'b\': "two" is not of type "integer"'),
        ({"a": 1, "b": 2.5}, "argument 'b'"),
        ({"a": 1, "b": None}, "argument 'b'"),
        ({"a": 1, "b": 2, "c": 3}, "argument 'c': not an argument this tool takes"),
        (["a", "b"], "valid dictionary"),
    ]
    before = len(leftovers())
    for arguments, message in cases:
        started = time.monotonic()
        with pytest.raises(ToolFailed, match=r"tool 'fixture__add'") as failed:
            call(add, arguments)
        assert message in str(failed.value)
        assert time.monotonic() - started < 0.2  # no server was started to say so
    assert len(leftovers()) == before
    with pytest.raises(ToolFailed, match="argument 'times': \"many\" is not of type"):
        call(stdio_tools["shout"], {"text": "x", "times": "many"})


def test_stdio_timeout_leaves_no_process(stdio_tools: dict[str, Tool]):
    async def sleep_and_look() -> tuple[list[psutil.Process], BaseException | None]:
        task = asyncio.create_task(stdio_tools["sleep"]({"seconds": 30}, 1.0))
        seen: list[psutil.Process] = []
        while not task.done():
            seen = seen or leftovers()
            await asyncio.sleep(0.05)
        return seen, task.exception()

    started = time.monotonic()
    seen, error = asyncio.run(sleep_and_look())
    assert isinstance(error, ToolFailed)
    assert str(error) == "tool 'fixture__sleep' did not answer within 1 s"
    assert time.monotonic() - started < 3.5
    assert len(seen) == 1  # the server ran while the call waited...
    assert not leftovers()  # ...and the transport saw it end before the call returned


def test_stdio_server_dying_mid_call_fails_that_call(stdio_tools: dict[str, Tool]):
    started = time.monotonic()
    with pytest.raises(ToolFailed, match=r"fixture__die.*MCP server 'fixture'.*process ended"):
        call(stdio_tools["die"], {})
    assert time.monotonic() - started < 5
    assert not leftovers()
    assert call(stdio_tools["add"], {"a": 1, "b": 1}) == {"result": 2}  # the next call starts a new one


def test_stdio_command_that_does_not_exist():
    server = McpServer(name="ghost", transport="stdio", command="/nonexistent/podium-mcp-server", timeout=5)
    started = time.monotonic()
    with pytest.raises(ToolFailed, match=r"MCP server 'ghost': cannot start '/nonexistent/podium-mcp-server'"):
        asyncio.run(list_tools(server))
    assert time.monotonic() - started < 5
    with pytest.raises(ToolFailed, match=r"MCP server 'ghost'.*no such directory"):
        asyncio.run(list_tools(stdio_server("ghost", cwd="/nonexistent/dir")))


def test_stdio_server_that_exits_at_once_is_quoted():
    script = "import sys; print('config file missing', file=sys.stderr); sys.exit(3)"
    server = McpServer(name="quitter", transport="stdio", command=sys.executable, args=["-c", script, MARK])
    with pytest.raises(ToolFailed, match=r"MCP server 'quitter'.*ended.*stderr ends: config file missing"):
        asyncio.run(list_tools(server))


def test_stdio_server_that_never_answers_is_given_up_on():
    script = "import time; time.sleep(60)"  # reads nothing, answers nothing, ignores its stdin closing
    server = McpServer(name="mute", transport="stdio", command=sys.executable, args=["-c", script, MARK], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ToolFailed, match=r"MCP server 'mute' did not initialize the session within 0.5 s"):
        asyncio.run(list_tools(server))
    # The SDK gives a server 2 s to exit after its stdin closes, then terminates its process group.
    assert time.monotonic() - started < 5
    assert not leftovers()


# --- over streamable HTTP ---


def test_http_lists_and_calls(http_tools: dict[str, Tool]):
    add = http_tools["add"]
    assert add.name == "web__add"
    assert add.meta == {"mcp_server": "web", "mcp_tool": "add"}
    assert add.parameters["required"] == ["a", "b"]
    assert call(add, {"a": 2, "b": 3}) == {"result": 5}
    assert call(http_tools["echo"], {"text": "hi"}) == {"result": "hi"}
    assert call(http_tools["shout"], {"text": "hi", "times": 3}) == "HI HI HI"
    assert call(http_tools["picture"], {}) == "[image: image/png]"
    assert call(http_tools["header"], {"name": "x-podium-test"}) == {"result": "yes"}


def test_http_errors(http_tools: dict[str, Tool]):
    with pytest.raises(ToolFailed, match=r"web__fail.*failed on purpose: no reason"):
        call(http_tools["fail"], {"reason": "no reason"})
    with pytest.raises(ToolFailed, match="argument 'b': required"):
        call(http_tools["add"], {"a": 1})
    with pytest.raises(ToolFailed, match="argument 'z': not an argument"):
        call(http_tools["echo"], {"text": "x", "z": 1})


def test_http_timeout(http_tools: dict[str, Tool]):
    started = time.monotonic()
    with pytest.raises(ToolFailed, match=r"tool 'web__sleep' did not answer within 0.3 s"):
        call(http_tools["sleep"], {"seconds": 30}, timeout=0.3)
    assert time.monotonic() - started < 2
    assert call(http_tools["add"], {"a": 1, "b": 2}) == {"result": 3}  # the server is none the worse


def test_http_where_nothing_listens():
    server = McpServer(name="down", transport="http", url=f"http://127.0.0.1:{free_port()}/mcp", timeout=5)
    started = time.monotonic()
    with pytest.raises(ToolFailed, match=r"MCP server 'down': cannot connect to http://127\.0\.0\.1:\d+/mcp"):
        asyncio.run(list_tools(server))
    assert time.monotonic() - started < 5


def test_http_wrong_path_and_credentials_not_quoted(http_url: str):
    url = http_url.replace("://", "://user:secret@").replace("/mcp", "/elsewhere?token=secret")
    with pytest.raises(ToolFailed, match=r"MCP server 'lost'.*Not Found") as failed:
        asyncio.run(list_tools(McpServer(name="lost", transport="http", url=url, timeout=5)))
    assert "secret" not in str(failed.value)


# --- several servers ---


def test_load_servers_reports_the_ones_that_fail(http_url: str):
    servers = [
        stdio_server("good"),
        McpServer(name="down", transport="http", url=f"http://127.0.0.1:{free_port()}/mcp", timeout=5),
        McpServer(name="web", transport="http", url=http_url),
        McpServer(name="ghost", transport="stdio", command="/nonexistent/podium-mcp-server"),
    ]
    started = time.monotonic()
    tools, errors = asyncio.run(load_servers(servers))
    assert time.monotonic() - started < 5
    names = [t.name for t in tools]
    assert "good__add" in names and "web__add" in names
    assert names.index("good__add") < names.index("web__add")  # in the servers' order
    assert set(errors) == {"down", "ghost"}
    assert "cannot connect" in errors["down"] and "MCP server 'down'" in errors["down"]
    assert "cannot start" in errors["ghost"]
    good_add = next(t for t in tools if t.name == "good__add")
    assert call(good_add, {"a": 20, "b": 22}) == {"result": 42}


def test_load_servers_refuses_a_name_twice():
    tools, errors = asyncio.run(load_servers([stdio_server("twin"), stdio_server("twin")]))
    assert {t.meta["mcp_server"] for t in tools} == {"twin"}
    assert errors == {"twin": "more than one MCP server is named 'twin'"}
