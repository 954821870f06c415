"""Tools a chain's `tool` step or an agent can call: Python functions registered with `@tool`, their JSON
schema made from their type hints, their arguments checked against it before the function runs.

```python
from podium.chains.tools import tool

@tool(requires_approval=True)
def refund(order_id: str, amount: float) -> dict:
    "Refund part or all of an order."
    ...
```

A tool runs with a timeout (a synchronous function in a worker thread, which the timeout abandons but cannot
interrupt, so keep them short); whatever it raises fails the call with a message that names the tool, and an
agent gets that message back as the tool's result. The server's tools come from the `podium.tools`
entry-point group (each entry a `Tool`, or a module whose `Tool` attributes are all registered).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from podium.core.errors import Conflict, InvalidInput, NotFound

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")  # what OpenAI accepts as a function name
MAX_DESCRIPTION = 1024


class ToolFailed(Exception):
    """A tool call failed: bad arguments, the function raised, or it outlived its timeout."""


@dataclass(frozen=True)
class Tool:
    """A callable tool: its name, description, JSON schema of arguments, and the function."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    arguments: type[BaseModel]
    requires_approval: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def definition(self) -> dict[str, Any]:
        """The tool as OpenAI's tools protocol lists it."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    async def __call__(self, arguments: dict[str, Any], timeout: float) -> Any:
        """Check the arguments and run the function within `timeout` seconds (`ToolFailed` otherwise)."""
        try:
            checked = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            raise ToolFailed(f"tool {self.name!r} argument {where!r}: {err['msg']}") from None
        values = {name: getattr(checked, name) for name in type(checked).model_fields}
        try:
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(self.fn):
                    return await self.fn(**values)
                return await asyncio.to_thread(self.fn, **values)
        except TimeoutError:
            raise ToolFailed(f"tool {self.name!r} did not answer within {timeout:g} s") from None
        except ToolFailed:
            raise
        except Exception as exc:  # the tool's own error, reported to the model or the run
            raise ToolFailed(f"tool {self.name!r} raised {type(exc).__name__}: {exc}") from None


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
) -> Any:
    """Make a `Tool` of a function (use as `@tool` or `@tool(name=..., requires_approval=True)`): its
    parameters, with type hints and defaults, become the JSON schema of its arguments; its docstring the
    description."""

    def make(f: Callable[..., Any]) -> Tool:
        tool_name = name or f.__name__
        if not _NAME.match(tool_name):
            raise InvalidInput(
                f"tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter"
            )
        text = (description if description is not None else inspect.getdoc(f) or "").strip()
        if len(text) > MAX_DESCRIPTION:
            raise InvalidInput(f"tool {tool_name!r}: the description may be at most {MAX_DESCRIPTION} characters")
        model = _arguments_model(tool_name, f)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return Tool(tool_name, text, schema, f, model, requires_approval)

    return make(fn) if fn is not None else make


def _arguments_model(tool_name: str, fn: Callable[..., Any]) -> type[BaseModel]:
    signature = inspect.signature(fn)
    try:
        hints = get_type_hints(fn)
    except (NameError, TypeError) as exc:
        raise InvalidInput(f"tool {tool_name!r}: its type hints cannot be read ({exc})") from None
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidInput(f"tool {tool_name!r}: *args and **kwargs cannot be described to a model; name each")
        if param.name not in hints:
            raise InvalidInput(f"tool {tool_name!r}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    config = ConfigDict(extra="forbid")
    model: type[BaseModel] = create_model(f"{tool_name}_arguments", __config__=config, **fields)
    return model


class ToolRegistry:
    """The tools a server (or an SDK process) can call, by name."""

    def __init__(self, tools: Iterable[Tool] = ()):
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, t: Tool) -> Tool:
        """Add a tool (`Conflict` if another one has its name)."""
        if not isinstance(t, Tool):
            raise InvalidInput("only a Tool (made with @tool) can be registered")
        if t.name in self._tools and self._tools[t.name] is not t:
            raise Conflict(f"a tool named {t.name!r} is registered already")
        self._tools[t.name] = t
        return t

    def get(self, name: str) -> Tool:
        """The tool `name` (`NotFound` listing the ones there are)."""
        found = self._tools.get(name)
        if found is None:
            known = ", ".join(sorted(self._tools)) or "none are registered"
            raise NotFound(f"there is no tool {name!r} ({known})")
        return found

    def names(self) -> list[str]:
        return sorted(self._tools)

    def overlay(self, tools: Iterable[Tool]) -> ToolRegistry:
        """A registry of these tools and `tools`, which take the place of a tool of the same name (a chain's
        own tools over the server's)."""
        merged = ToolRegistry()
        merged._tools = {**self._tools, **{t.name: t for t in tools}}
        return merged

    def load_entry_points(self, group: str = "podium.tools") -> None:
        """Register the tools the installed packages declare in `group`."""
        for ep in entry_points(group=group):
            loaded = ep.load()
            for t in tools_in(loaded):
                self.register(t)


def tools_in(value: Any) -> list[Tool]:
    """The tools in an entry point's value or a module: a `Tool`, a list of them, or a module's `Tool`s."""
    if isinstance(value, Tool):
        return [value]
    if isinstance(value, ModuleType):
        return [v for v in vars(value).values() if isinstance(v, Tool)]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, Tool)]
    raise InvalidInput(f"a podium.tools entry point must name a Tool, a module or a list of tools, not {value!r}")


__all__ = ["Tool", "ToolFailed", "ToolRegistry", "tool", "tools_in"]
