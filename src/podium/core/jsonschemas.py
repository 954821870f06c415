"""JSON Schemas that users write (chain output schemas, HTTP tools' parameters, the json_schema evaluator),
compiled one way: offline, so a `$ref` to a URL is an error rather than a request the server makes on a
user's behalf (SSRF), and with the first line of the library's message as the error."""

from __future__ import annotations

from typing import Any

import jsonschema_rs


def compile_schema(schema: Any) -> jsonschema_rs.Validator:
    """A validator for `schema`; `ValueError` with a one-line reason if it is not a valid JSON Schema."""
    try:
        return jsonschema_rs.validator_for(schema, offline=True)
    except (ValueError, jsonschema_rs.ReferencingError) as exc:  # ValidationError is a ValueError
        raise ValueError(str(getattr(exc, "message", None) or exc).splitlines()[0]) from None


__all__ = ["compile_schema"]
