"""Tools from MCP servers: each tool an MCP server lists becomes a Podium `Tool` a chain or an agent can call.

```python
from podium.chains.mcp import McpServer, load_servers

servers = [
    McpServer(name="files", transport="stdio", command="npx", args=["-y", "@modelcontextprotocol/server-filesystem"]),
    McpServer(name="search", transport="http", url="https://mcp.example.com/mcp", headers={"Authorization": "..."}),
]
tools, errors = await load_servers(servers)  # errors: server name -> why it could not be listed
```

Design:

- A server is reached over stdio (Podium starts `command` as a child process, in its own process group, with
  only a safe part of the environment plus `env`) or over streamable HTTP (`url`, with `headers` on every
  request), through the official `mcp` SDK's `ClientSession`.
- `list_tools` opens a session, lists the tools (every page), and closes it again. Every call a tool makes
  opens a fresh session of its own: a little slower than a pooled session, but a server that died, hung or
  restarted fails only the calls it was part of, and nothing long-lived has to be supervised. The SDK's
  transports clean up when cancelled (the stdio one closes the child's stdin, then terminates and finally
  kills its process group), so the timeout `Tool.__call__` puts around a call leaves no process behind.
- A tool is named `{server}__{tool}` (characters OpenAI refuses become `_`, cut at 64) and keeps the MCP
  tool's description and input schema; `meta` names the server and the tool as the server knows it.
- Arguments are checked against the tool's JSON schema (with `jsonschema_rs`) before any connection is made,
  so a model's mistake is answered at once, naming the argument. Podium is stricter than JSON Schema's
  default in one way: when the schema lists its `properties` and says nothing about other ones, an argument
  it does not list is refused (servers generated from function signatures omit `additionalProperties`, and
  drop unknown arguments silently, which hides a model's typo). Since `Tool.__call__` checks arguments with a
  pydantic model and passes only its fields to the function, an MCP tool's model has a single field that
  takes the whole arguments object, and the function does the checking.
- A call answers with the result's structured content when there is some (for a tool made with the SDK's
  `MCPServer` that returns a plain value, that is `{"result": value}`), else with its text contents joined
  (other contents summarised, like `[image: image/png]`). A result flagged as an error, a protocol error,
  a lost connection or a server that cannot be started all raise `ToolFailed`, whose message names the
  tool, the server and what happened (with the end of a stdio server's stderr, when it wrote any).
- Nothing waits forever: connecting and listing are bounded by the server's `timeout`, a call's connecting
  too, and a call as a whole by the timeout its caller gives `Tool.__call__`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any, Literal, TextIO, TypeVar, cast
from urllib.parse import urlsplit

import httpx2
import jsonschema_rs
import mcp.types as mt
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from podium.chains.tools import MAX_DESCRIPTION, Tool, ToolFailed
from podium.core.version import __version__

log = logging.getLogger("podium.chains.mcp")

_SERVER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")
MAX_TOOL_NAME = 64
MAX_PAGES = 100  # tools/list pages followed before giving up on a server that never stops paginating
HTTP_READ_TIMEOUT = 300.0  # seconds; a backstop only, the caller's timeouts are the ones that matter
STDERR_TAIL = 400  # characters of a stdio server's stderr quoted in an error

_T = TypeVar("_T")


class McpServer(BaseModel):
    """An MCP server whose tools Podium offers: a command it starts (stdio) or a URL (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Names the server and prefixes its tools' names: `{name}__{tool}`.")
    transport: Literal["stdio", "http"]
    command: str | None = Field(default=None, description="stdio: the program to run.")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments.")
    env: dict[str, str] | None = Field(
        default=None, description="stdio: variables set over the few inherited ones (HOME, PATH, USER, ...)."
    )
    cwd: str | None = Field(default=None, description="stdio: the directory it runs in.")
    url: str | None = Field(default=None, description="http: the MCP endpoint, http:// or https://.")
    headers: dict[str, str] = Field(default_factory=dict, description="http: sent with every request.")
    timeout: float = Field(default=30.0, gt=0, le=3600, description="Seconds to connect and list the tools.")

    @model_validator(mode="after")
    def _check(self) -> McpServer:
        if not _SERVER_NAME.match(self.name):
            raise ValueError(
                f"MCP server name {self.name!r} must be 1-40 letters, digits, '_' or '-', starting with a letter"
            )
        if self.transport == "stdio":
            if not self.command or not self.command.strip():
                raise ValueError(f"MCP server {self.name!r}: a stdio server needs the `command` that starts it")
            if self.url is not None or self.headers:
                raise ValueError(f"MCP server {self.name!r}: `url` and `headers` are for http servers, not stdio")
        else:
            if not self.url:
                raise ValueError(f"MCP server {self.name!r}: an http server needs the `url` of its MCP endpoint")
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"MCP server {self.name!r}: `url` must be an http:// or https:// URL with a host")
            if self.command is not None or self.args or self.env is not None or self.cwd is not None:
                raise ValueError(
                    f"MCP server {self.name!r}: `command`, `args`, `env` and `cwd` are for stdio servers, not http"
                )
        return self


class McpArguments(BaseModel):
    """The arguments of an MCP tool as one object (its `arguments` field): the tool's function checks them
    against the MCP tool's JSON schema, since `Tool.__call__` hands a function only its model's fields."""

    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _whole(cls, data: Any) -> Any:
        return {"arguments": data}


class _Stage(enum.Enum):
    START = "start"
    INITIALIZE = "initialize the session"
    LIST = "list its tools"
    CALL = "answer the call"


async def list_tools(server: McpServer) -> list[Tool]:
    """The tools `server` offers, as Podium tools (`ToolFailed` naming the server if it cannot be listed
    within `server.timeout` seconds)."""

    async def listing(session: ClientSession) -> list[mt.Tool]:
        found: list[mt.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = mt.PaginatedRequestParams(cursor=cursor) if cursor is not None else None
            page = await session.list_tools(params=params)
            found.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return found
        log.warning("MCP server %r: stopped listing tools after %d pages", server.name, MAX_PAGES)
        return found

    listed = await _with_session(server, listing, f"MCP server {server.name!r}", whole_timeout=True)
    tools: list[Tool] = []
    names: set[str] = set()
    for mcp_tool in listed:
        made = _make_tool(server, mcp_tool)
        if made is None:
            continue
        if made.name in names:
            log.warning(
                "MCP server %r: tool %r skipped, its name %r is taken by another of its tools",
                server.name,
                mcp_tool.name,
                made.name,
            )
            continue
        names.add(made.name)
        tools.append(made)
    return tools


async def load_servers(servers: Iterable[McpServer]) -> tuple[list[Tool], dict[str, str]]:
    """The tools of every server, listed concurrently, in the servers' order; and, by server name, why each
    server that failed could not be listed (a failed server does not stop the others)."""
    chosen = list(servers)
    errors: dict[str, str] = {}
    seen: set[str] = set()
    todo: list[McpServer] = []
    for server in chosen:
        if server.name in seen:
            errors[server.name] = f"more than one MCP server is named {server.name!r}"
            continue
        seen.add(server.name)
        todo.append(server)

    async def one(server: McpServer) -> list[Tool] | str:
        try:
            return await list_tools(server)
        except ToolFailed as exc:
            return str(exc)
        except Exception as exc:  # a bug must not take the other servers down with it
            log.exception("MCP server %r: listing its tools failed", server.name)
            return f"MCP server {server.name!r}: {type(exc).__name__}: {exc}"

    results = await asyncio.gather(*(one(s) for s in todo))
    tools: list[Tool] = []
    names: set[str] = set()
    for server, result in zip(todo, results, strict=True):
        if isinstance(result, str):
            errors[server.name] = f"{errors[server.name]}; {result}" if server.name in errors else result
            continue
        for t in result:
            if t.name in names:  # "a" + "b__c" and "a__b" + "c" are both a__b__c
                log.warning("MCP server %r: tool %r skipped, another server has one of that name", server.name, t.name)
                continue
            names.add(t.name)
            tools.append(t)
    return tools, errors


def tool_name(server: str, tool: str) -> str:
    """The Podium name of the MCP tool `tool` of `server`: `{server}__{tool}`, made to fit OpenAI's pattern."""
    return _NOT_IN_NAME.sub("_", f"{server}__{tool}")[:MAX_TOOL_NAME]


def _make_tool(server: McpServer, mcp_tool: mt.Tool) -> Tool | None:
    name = tool_name(server.name, mcp_tool.name)
    schema = dict(mcp_tool.input_schema)
    try:
        validator = jsonschema_rs.validator_for(_strict(schema), offline=True)  # never fetch a $ref
    except (ValueError, TypeError) as exc:
        log.warning("MCP server %r: tool %r skipped, its input schema is invalid: %s", server.name, mcp_tool.name, exc)
        return None
    description = (mcp_tool.description or mcp_tool.title or "").strip()[:MAX_DESCRIPTION]
    label = f"tool {name!r} (MCP server {server.name!r})"

    async def call(arguments: dict[str, Any]) -> Any:
        _check_arguments(name, validator, arguments)

        async def calling(session: ClientSession) -> mt.CallToolResult:
            return await session.call_tool(mcp_tool.name, arguments)

        result = await _with_session(server, calling, label, whole_timeout=False)
        if result.is_error:
            raise ToolFailed(f"{label} failed: {_text(result.content) or 'the server gave no reason'}")
        if result.structured_content is not None:
            return result.structured_content
        return _text(result.content)

    call.__name__ = call.__qualname__ = name
    meta = {"mcp_server": server.name, "mcp_tool": mcp_tool.name}
    return Tool(name=name, description=description, parameters=schema, fn=call, arguments=McpArguments, meta=meta)


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema arguments are checked against: unlisted top-level arguments refused when the schema lists
    its properties, says nothing about others and combines no other schemas."""
    open_keys = {"additionalProperties", "patternProperties", "unevaluatedProperties", "allOf", "anyOf", "oneOf"}
    if isinstance(schema.get("properties"), dict) and "$ref" not in schema and not open_keys & schema.keys():
        return {**schema, "additionalProperties": False}
    return schema


def _check_arguments(name: str, validator: jsonschema_rs.Validator, arguments: dict[str, Any]) -> None:
    """`ToolFailed` naming the first argument the schema refuses."""
    for error in validator.iter_errors(arguments):
        path = [str(p) for p in error.instance_path]
        kind = error.kind
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            path.append(kind.property)
            message = "required, and missing"
        elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties) and kind.unexpected:
            path.append(kind.unexpected[0])
            message = "not an argument this tool takes"
        else:
            message = error.message
        where = ".".join(path) or "arguments"
        raise ToolFailed(f"tool {name!r} argument {where!r}: {message}")


async def _with_session(
    server: McpServer,
    action: Callable[[ClientSession], Awaitable[_T]],
    label: str,
    *,
    whole_timeout: bool,
) -> _T:
    """Open a session with `server`, run `action` in it, close it; any failure a `ToolFailed` that starts with
    `label`. `server.timeout` bounds the connecting, and also the action when `whole_timeout`."""
    stage = [_Stage.START]
    with _stderr_file(server) as errlog:
        try:
            async with asyncio.timeout(server.timeout) as deadline:
                async with _session(server, errlog, stage) as session:
                    if not whole_timeout:
                        deadline.reschedule(None)  # connected: the caller's own timeout bounds the call
                    stage[0] = _Stage.LIST if whole_timeout else _Stage.CALL
                    return await action(session)
        except TimeoutError:
            raise ToolFailed(f"{label} did not {stage[0].value} within {server.timeout:g} s") from None
        except Exception as exc:
            raise ToolFailed(f"{label}: {_describe(server, stage[0], exc)}{_stderr_tail(errlog)}") from None


@contextmanager
def _stderr_file(server: McpServer) -> Iterator[TextIO | None]:
    """Where a stdio server's stderr goes (a temporary file, quoted in errors); None for an http server."""
    if server.transport != "stdio":
        yield None
        return
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        yield cast(TextIO, errlog)


@asynccontextmanager
async def _session(server: McpServer, errlog: TextIO | None, stage: list[_Stage]) -> AsyncIterator[ClientSession]:
    async with AsyncExitStack() as stack:
        if server.transport == "stdio":
            assert server.command is not None and errlog is not None
            params = StdioServerParameters(command=server.command, args=server.args, env=server.env, cwd=server.cwd)
            read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        else:
            assert server.url is not None
            timeout = httpx2.Timeout(server.timeout, read=HTTP_READ_TIMEOUT)
            client = await stack.enter_async_context(httpx2.AsyncClient(headers=server.headers, timeout=timeout))
            read, write = await stack.enter_async_context(streamable_http_client(server.url, http_client=client))
        stage[0] = _Stage.INITIALIZE
        info = mt.Implementation(name="podium", version=__version__)
        session = await stack.enter_async_context(ClientSession(read, write, client_info=info))
        await session.initialize()
        yield session


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _describe(server: McpServer, stage: _Stage, exc: Exception) -> str:
    """What went wrong, in words: the most telling of the errors the SDK's task groups gathered."""
    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)] or [exc]
    error = next((e for e in leaves if isinstance(e, OSError | httpx2.HTTPError | MCPError)), leaves[0])
    if stage is _Stage.START and isinstance(error, OSError):
        if server.cwd is not None and not os.path.isdir(server.cwd):
            return f"cannot start {server.command!r} in {server.cwd!r}: there is no such directory"
        return f"cannot start {server.command!r}: {error.strerror or error}"
    if isinstance(error, httpx2.ConnectError | httpx2.ConnectTimeout):
        return f"cannot connect to {_public_url(server.url)}: {error}"
    if isinstance(error, httpx2.HTTPError):
        return f"HTTP error talking to {_public_url(server.url)}: {type(error).__name__}: {error}"
    if isinstance(error, MCPError):
        if error.code == mt.CONNECTION_CLOSED:
            ended = "the server process ended" if server.transport == "stdio" else "the connection was closed"
            return f"{ended} before it could {stage.value}"
        return f"the server could not {stage.value}: {error.message} (MCP error {error.code})"
    return f"{type(error).__name__} while trying to {stage.value}: {error}"


def _public_url(url: str | None) -> str:
    """The URL without credentials or query, fit for an error message."""
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _stderr_tail(errlog: TextIO | None) -> str:
    if errlog is None:
        return ""
    try:
        errlog.seek(0)
        text = errlog.read()
    except (OSError, ValueError):
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    tail = " | ".join(lines[-3:])
    return f" (its stderr ends: {tail[-STDERR_TAIL:]})"


def _text(content: list[mt.ContentBlock]) -> str:
    """A result's contents as text: text as it is, anything else summarised."""
    parts: list[str] = []
    for block in content:
        if isinstance(block, mt.TextContent):
            parts.append(block.text)
        elif isinstance(block, mt.ImageContent):
            parts.append(f"[image: {block.mime_type}]")
        elif isinstance(block, mt.AudioContent):
            parts.append(f"[audio: {block.mime_type}]")
        elif isinstance(block, mt.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        elif isinstance(block, mt.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mt.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri} {resource.mime_type or ''}]".replace(" ]", "]"))
        else:
            parts.append(f"[{getattr(block, 'type', type(block).__name__)}]")
    return "\n".join(parts)


__all__ = ["McpArguments", "McpServer", "list_tools", "load_servers", "tool_name"]
