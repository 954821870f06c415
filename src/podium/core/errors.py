"""Typed errors shared by services, routes and the CLI.

A service raises a `PodiumError`; the API turns it into `{"error": {code, message, details}}`
with its status, the CLI prints its message on one line. Users never see a traceback for these.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError


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


M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """A pydantic error location as a field path: `arms[0].version`."""
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return prefix + path if path else prefix.rstrip(".")


def validated(model: type[M], data: Any, what: str, *, prefix: str = "", default: str = "body") -> M:
    """`model.model_validate(data)`, or an `InvalidInput` naming the first bad field ("route field 'x': …")."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = field_path(tuple(err["loc"]), prefix) or default
        message = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"{what} field {where!r}: {message}", details={"field": where}) from None
