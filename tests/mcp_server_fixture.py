"""A small MCP server for tests/test_chains_mcp.py, made with the `mcp` SDK's `MCPServer`.

`python tests/mcp_server_fixture.py` serves it over stdio (extra arguments are ignored, so a test can mark
its processes); `app()` is its streamable-HTTP ASGI app (at /mcp), which the tests serve with uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import os

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.applications import Starlette


def _server() -> MCPServer:
    # MCPServer() calls logging.basicConfig (INFO, a rich handler on the root logger); in the test process
    # that would change every other test's logging, so the root logger is put back as it was.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return MCPServer("fixture", log_level="WARNING")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


server = _server()


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep for a while, then answer."""
    await asyncio.sleep(seconds)
    return "woke"


@server.tool()
def die() -> str:
    """End the server's process at once, mid-call."""
    os._exit(1)


@server.tool(structured_output=False)
def shout(text: str, times: int = 1) -> str:
    """Upper-case the text, repeated; answers with text content only."""
    return " ".join([text.upper()] * times)


@server.tool()
def picture() -> Image:
    """A tiny PNG (not a real one)."""
    return Image(data=b"\x89PNG\r\n\x1a\n", format="png")


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of a header of the HTTP request that carried the call ('' if absent or not over HTTP)."""
    headers = ctx.headers or {}
    return headers.get(name, "")


def app() -> Starlette:
    """The server as a streamable-HTTP ASGI app (at /mcp)."""
    return server.streamable_http_app()


if __name__ == "__main__":
    server.run("stdio")
