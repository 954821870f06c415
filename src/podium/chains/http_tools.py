"""HTTP tools declared in a chain's YAML: a tool the agent (or a `tool` step) calls by name, which the server
turns into one HTTP request.

```yaml
tools:
  weather:
    type: http
    description: The weather forecast for a city.
    method: GET
    url: "https://api.example.com/forecast?city={{ city }}&days={{ days }}"
    headers: {Accept: application/json}
    parameters:
      type: object
      properties: {city: {type: string}, days: {type: integer, minimum: 1, maximum: 7}}
      required: [city]
```

The arguments are checked against `parameters` (a JSON Schema) before anything is sent. The URL is a
template over the arguments, each value URL-encoded where it lands. Header values are templates too; a
value with a line break is refused. For POST, PUT and PATCH the arguments are the JSON body. The answer is
its JSON, or its text (at most `MAX_RESPONSE` bytes). A status of 400 or above fails the call with the
status and the start of the body. Requests go through the server's network guard (`core/netguard.py`):
link-local and cloud metadata addresses are never reached, private networks only as
`upstream_allow_private` allows, checked on the addresses the host resolves to at connection time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from podium.chains.tools import Tool, ToolFailed
from podium.core.errors import InvalidInput
from podium.core.jsonschemas import compile_schema
from podium.core.netguard import GuardedResolver, NetGuard
from podium.prompts import template

MAX_RESPONSE = 1024 * 1024
MAX_TEMPLATE = 4000


class HttpTool(BaseModel):
    """One HTTP tool as a chain declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["http"] = "http"
    description: str = Field("", max_length=1024)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=8, max_length=MAX_TEMPLATE)
    headers: dict[str, str] = Field(default_factory=dict, max_length=30)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout: float = Field(30.0, gt=0, le=300)
    requires_approval: bool = False

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or any(c in name for c in ":\r\n ") or len(text) > MAX_TEMPLATE:
                raise ValueError(f"header {name!r} is not a valid header name, or its value is too long")
        return value


def check(name: str, spec: HttpTool, where: str) -> None:
    """An HTTP tool's schema, URL and header templates, checked when its chain is pushed."""
    if spec.parameters.get("type") != "object":
        raise InvalidInput(f"{where}: parameters must be a JSON Schema of type object")
    try:
        compile_schema(spec.parameters)
    except ValueError as exc:
        raise InvalidInput(f"{where}: parameters is not a valid JSON Schema: {exc}") from None
    known = set(spec.parameters.get("properties") or {})
    for label, text in [("url", spec.url), *((f"header {h!r}", v) for h, v in spec.headers.items())]:
        used = template.check(text, f"{where} {label}")
        unknown = sorted(used - known)
        if unknown:
            raise InvalidInput(f"{where} {label} uses {', '.join(unknown)}, which parameters does not declare")
    if not spec.url.lower().startswith(("http://", "https://")):
        raise InvalidInput(f"{where}: url must start with http:// or https://")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def build(name: str, spec: HttpTool, guard: NetGuard) -> Tool:
    """The `Tool` that makes the request (arguments checked against `parameters` first)."""
    properties: Mapping[str, Any] = spec.parameters.get("properties") or {}
    required = set(spec.parameters.get("required") or [])
    fields: dict[str, Any] = {p: (Any, ... if p in required else None) for p in properties}
    model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    validator = compile_schema(spec.parameters)

    async def call(**given: Any) -> Any:
        arguments = {k: v for k, v in given.items() if v is not None or k in required}
        errors = list(validator.iter_errors(arguments))
        if errors:
            path = ".".join(str(p) for p in errors[0].instance_path) or "arguments"
            raise ToolFailed(f"tool {name!r} argument {path!r}: {errors[0].message}")
        encoded = {k: quote(_text(v), safe="") for k, v in arguments.items()}
        url = template.render(spec.url, encoded, f"tool {name!r} url")
        headers = {h: template.render(v, arguments, f"tool {name!r} header {h!r}") for h, v in spec.headers.items()}
        if any("\r" in v or "\n" in v for v in headers.values()):
            raise ToolFailed(f"tool {name!r}: a header value may not hold a line break")
        try:
            guard.check_url(url, resolve=False)
        except InvalidInput as exc:
            raise ToolFailed(f"tool {name!r}: {exc.message}") from None
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard))
        body = arguments if spec.method in ("POST", "PUT", "PATCH") else None
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=spec.timeout)) as s,
                s.request(spec.method, url, json=body, headers=headers, allow_redirects=False) as r,
            ):
                raw = await r.content.read(MAX_RESPONSE + 1)
                if len(raw) > MAX_RESPONSE:
                    raise ToolFailed(f"tool {name!r}: the answer is larger than {MAX_RESPONSE // 1024} KB")
                text = raw.decode(r.charset or "utf-8", errors="replace")
                if r.status >= 400:
                    raise ToolFailed(f"tool {name!r}: HTTP {r.status} from {spec.method} {url}: {text[:300]}")
                if "json" in (r.content_type or ""):
                    try:
                        return orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        return text
                return text
        except aiohttp.ClientError as exc:
            raise ToolFailed(f"tool {name!r}: {spec.method} {url} failed: {exc}") from None

    parameters = dict(spec.parameters)
    return Tool(name, spec.description, parameters, call, model, spec.requires_approval, {"http": spec.url})


__all__ = ["MAX_RESPONSE", "HttpTool", "build", "check"]
