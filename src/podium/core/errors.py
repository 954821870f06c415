"""Typed errors shared by services, routes and the CLI.

A service raises a `PodiumError`; the API turns it into `{"error": {code, message, details}}`
with its status, the CLI prints its message on one line. Users never see a traceback for these.
"""

from __future__ import annotations

from typing import Any


class PodiumError(Exception):
    """Base of every error a user can cause or fix."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The `/api` error body."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(PodiumError):
    """The request is malformed or a value is out of range."""

    status = 400
    code = "invalid_input"


class Unauthorized(PodiumError):
    """No valid credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(PodiumError):
    """Valid credentials, but the role may not do this."""

    status = 403
    code = "forbidden"


class NotFound(PodiumError):
    """The named object does not exist."""

    status = 404
    code = "not_found"


class Conflict(PodiumError):
    """The object exists already or changed underneath the caller."""

    status = 409
    code = "conflict"


class RateLimited(PodiumError):
    """Over a rate limit or budget."""

    status = 429
    code = "rate_limited"


class ConfigError(PodiumError):
    """The configuration file or environment holds a bad value."""

    code = "config_error"


class DatabaseError(PodiumError):
    """The database is unreachable or at an unexpected schema revision."""

    status = 503
    code = "database_error"


class CorruptArtifact(PodiumError):
    """An artifact's content does not match its sha256."""

    status = 500
    code = "corrupt_artifact"


class ServiceUnavailable(PodiumError):
    """The server cannot serve this right now (starting, draining, overloaded)."""

    status = 503
    code = "unavailable"
