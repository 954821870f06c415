"""HTTP client the CLI and SDK use to reach a Podium server; which server and key is `core.sdkconfig`'s
resolution (`podium.configure()`, `PODIUM_URL`, `PODIUM_API_KEY`, podium.toml, `<home>/admin.key`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx

from podium.core import sdkconfig, sse
from podium.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PodiumError,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)

_BY_STATUS: dict[int, type[PodiumError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    429: RateLimited,
    503: ServiceUnavailable,
}


class Client:
    """A thin, synchronous client for the `/api` endpoints; errors come back as `PodiumError`s."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0):
        self.url, self.api_key = sdkconfig.resolve(url, api_key)
        headers = {"User-Agent": "podium-cli"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_key(self, path: str) -> None:
        if not self.api_key and path.startswith(("/api", "/v1")):
            raise Unauthorized(
                "no API key: set PODIUM_API_KEY, or run `podium serve` once so that "
                f"{os.environ.get('PODIUM_HOME', '.podium')}/admin.key exists"
            )

    def _unreachable(self, exc: httpx.HTTPError) -> PodiumError:
        if isinstance(exc, httpx.TimeoutException):
            return ServiceUnavailable(f"Podium at {self.url} did not answer in time")
        return ServiceUnavailable(
            f"cannot reach Podium at {self.url}: is `podium serve` running? (set PODIUM_URL to use another server)"
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; returns decoded JSON or raises a `PodiumError` with the server's message."""
        self._check_key(path)
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        if not response.content:
            return None
        return response.json()

    def download(self, path: str, target: Any, **params: Any) -> dict[str, str]:
        """GET a file into the binary stream `target`, chunk by chunk; returns the answer's headers."""
        self._check_key(path)
        try:
            with self._http.stream("GET", path, params={k: v for k, v in params.items() if v is not None}) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self._error(r)
                for chunk in r.iter_bytes(1024 * 1024):
                    target.write(chunk)
                return dict(r.headers)
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            raise self._unreachable(exc) from None

    def stream(self, path: str, json: Any = None) -> Iterator[sse.Event]:
        """POST a JSON body and read the answer's server-sent events as they come."""
        self._check_key(path)
        try:
            with self._http.stream("POST", path, json=json) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield from sse.events(response.iter_lines())
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            raise self._unreachable(exc) from None

    def _error(self, response: httpx.Response) -> PodiumError:
        message = f"HTTP {response.status_code}"
        details: dict[str, Any] = {}
        try:
            body = response.json()
            err = body.get("error", {})
            message = err.get("message", message)
            details = err.get("details") or {}
        except ValueError:
            message = f"HTTP {response.status_code}: {response.text[:200]}"
        cls = _BY_STATUS.get(response.status_code, PodiumError)
        error = cls(message, details=details)
        error.status = response.status_code
        return error

    def get(self, path: str, **params: Any) -> Any:
        """GET with query parameters (None values dropped)."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, json: Any = None) -> Any:
        """POST a JSON body."""
        return self.request("POST", path, json=json)

    def put(self, path: str, json: Any = None) -> Any:
        """PUT a JSON body."""
        return self.request("PUT", path, json=json)

    def patch(self, path: str, json: Any = None) -> Any:
        """PATCH a JSON body."""
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        """DELETE."""
        return self.request("DELETE", path)
