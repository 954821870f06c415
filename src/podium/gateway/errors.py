"""OpenAI-shaped errors for `/v1`: `{"error": {"message", "type", "code", "param"}}`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from podium.core.errors import PodiumError
from podium.core.http import openai_type
from podium.gateway.guardrails import GuardrailViolation
from podium.models.providers.base import UpstreamError

_OPENAI_CODES = {
    "context_window": "context_length_exceeded",
    "rate_limit": "rate_limit_exceeded",
    "timeout": "upstream_timeout",
    "connection": "upstream_unreachable",
    "server_error": "upstream_error",
}


class GatewayError(Exception):
    """An error to answer on `/v1` with a status and OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        type_: str | None = None,
    ):
        super().__init__(message)
        self.type = type_
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    @classmethod
    def from_podium(cls, exc: PodiumError) -> GatewayError:
        """Map a service error (401, 403, 404, …) to the `/v1` shape."""
        return cls(exc.status, exc.message, code=exc.code, param=exc.details.get("field"))

    @classmethod
    def from_upstream(cls, exc: UpstreamError) -> GatewayError:
        """Map a provider failure, keeping the upstream's status."""
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        code = _OPENAI_CODES.get(exc.kind, exc.kind)
        if isinstance(exc.body, dict) and isinstance(exc.body.get("error"), dict) and exc.body["error"].get("code"):
            code = str(exc.body["error"]["code"])
        return cls(exc.status, exc.message, code=code, param=exc.param, headers=headers)

    def body(self) -> dict[str, Any]:
        """The error body."""
        kind = self.type or openai_type(self.status)
        return {"error": {"message": self.message, "type": kind, "code": self.code, "param": self.param}}

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        """The HTTP response (with `extra_headers`, such as which deployment answered)."""
        headers = {**(extra_headers or {}), **self.headers}
        if self.status == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        return Response(
            orjson.dumps(self.body()), status_code=self.status, media_type="application/json", headers=headers
        )


def as_gateway_error(exc: GatewayError | UpstreamError | GuardrailViolation) -> GatewayError:
    """What the client is told about a failed call: upstream failures keep their status, a guardrail's
    refusal is a 400."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, UpstreamError):
        return GatewayError.from_upstream(exc)
    return GatewayError(400, exc.message, code="guardrail_violation")
