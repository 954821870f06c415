"""`json_schema`: an answer that must be JSON valid against a schema (the project's offline JSON-Schema
compiler, so a `$ref` to a URL is refused, never fetched). A fenced ```json block is accepted when
`allow_fences` is on."""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import Field

from podium.core.jsonschemas import compile_schema
from podium.guard.base import OUTPUT, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register

_FENCE = re.compile(r"```(?:json)?[ \t]*\n(.*?)\n?```", re.DOTALL)


class JsonSchemaSettings(ScannerSettings):
    """Settings of `json_schema`: the schema the answer must satisfy (`{}` checks only that it is JSON)."""

    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    allow_fences: bool = True


@register
class JsonSchema(Scanner):
    """Answers that are not JSON, or not valid against the schema."""

    name = "json_schema"
    description = "output must be JSON valid against a JSON Schema"
    stages = OUTPUT
    whole = True
    Settings = JsonSchemaSettings
    settings: JsonSchemaSettings

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        try:
            self.validator = compile_schema(self.settings.json_schema)
        except ValueError as exc:
            raise ScannerError(f"scanner 'json_schema' setting 'schema': {exc}", "schema") from None

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        body = text.strip()
        if self.settings.allow_fences and (m := _FENCE.search(body)):
            body = m.group(1)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return [self.finding("INVALID_JSON", 0, len(text), 1.0, f"not JSON: {str(exc).splitlines()[0]}")]
        errors = list(self.validator.iter_errors(value))
        if errors:
            first = errors[0]
            path = "/".join(str(p) for p in first.instance_path) or "(root)"
            return [self.finding("SCHEMA_MISMATCH", 0, len(text), 1.0, f"at {path}: {first.message}")]
        return []
