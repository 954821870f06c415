"""A schemathesis check the fuzz tests add (loaded through `SCHEMATHESIS_HOOKS`): every error answer has the
documented body, `{"error": {"message", "code"}}` on `/api` and OpenAI's `{"error": {"message", "type"}}` on
`/v1`, so a client can always read what went wrong."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def error_has_documented_shape(ctx: Any, response: Any, case: Any) -> None:
    """Fails on an error response whose body is not the documented error object."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except Exception:
        raise AssertionError(f"{response.status_code} answer is not JSON: {response.text[:200]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str) or not error["message"]:
        raise AssertionError(f"{response.status_code} answer has no error.message: {str(body)[:200]}")
    key = "type" if case.path.startswith("/v1/") else "code"
    if not isinstance(error.get(key), str):
        raise AssertionError(f"{response.status_code} answer's error has no '{key}': {str(body)[:200]}")
