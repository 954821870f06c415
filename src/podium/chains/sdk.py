"""The chains SDK: `podium.chains.get("support-bot@prod").run(question="where is my order?")`.

A handle names a chain and, optionally, a version (`bot`, `bot@3`, `bot@prod`; a bare name runs the latest
version). Everything goes through the server's `/api/chains` endpoints (the run happens on the server, its
model calls through the gateway on the SDK's key), on the SDK's one client configuration
(`podium.configure(url=..., api_key=...)`, else `PODIUM_URL`, `PODIUM_API_KEY`, podium.toml,
`<home>/admin.key`); `url` and `api_key` arguments override it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium.core.client import Client
from podium.core.errors import InvalidInput, PodiumError

TIMEOUT = 600.0  # seconds a run may take


def _split(ref: str) -> tuple[str, str | None]:
    name, _, tag = ref.partition("@")
    if not name:
        raise InvalidInput(f"chain reference {ref!r} is not `name` or `name@version`", details={"field": "ref"})
    return name, tag or None


class ChainError(PodiumError):
    """A run ended with a failed step (`run` holds the whole run: its steps, error and trace id)."""

    status = 422
    code = "chain_failed"

    def __init__(self, run: Run):
        super().__init__(run.error or "the chain failed", details={"step": run.failed_step, "trace_id": run.trace_id})
        self.run = run


@dataclass(frozen=True)
class Run:
    """A run as the server recorded it."""

    id: str
    ref: str
    status: str
    output: Any
    error: str | None
    failed_step: str | None
    steps: builtins.list[dict[str, Any]]
    trace_id: str
    latency_ms: float | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> Run:
        return cls(
            id=str(body["id"]),
            ref=str(body["ref"]),
            status=str(body["status"]),
            output=body.get("output"),
            error=body.get("error"),
            failed_step=body.get("failed_step"),
            steps=builtins.list(body.get("steps") or []),
            trace_id=str(body["trace_id"]),
            latency_ms=body.get("latency_ms"),
            prompt_tokens=int(body.get("prompt_tokens") or 0),
            completion_tokens=int(body.get("completion_tokens") or 0),
            cost_micros=int(body.get("cost_micros") or 0),
            raw=dict(body),
        )


class Chain:
    """A handle on a chain (and optionally one version of it) on a Podium server."""

    def __init__(self, ref: str, client: Client):
        self.ref = ref
        self.name, self.version = _split(ref)
        self._client = client

    def __repr__(self) -> str:
        return f"Chain({self.ref!r} at {self._client.url})"

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the handle's connections."""
        self._client.close()

    def info(self) -> dict[str, Any]:
        """The chain: its versions (newest first), labels and label history."""
        detail: dict[str, Any] = self._client.get(f"/api/chains/{self.name}")
        return detail

    def run(self, inputs: Mapping[str, Any] | None = None, *, check: bool = True, **named: Any) -> Run:
        """Run the version on `inputs` (a mapping, and/or keyword arguments) on the server. With `check` (the
        default) a failed step raises `ChainError`; otherwise the failed run is returned."""
        body: dict[str, Any] = {"inputs": {**(dict(inputs) if inputs else {}), **named}}
        if self.version is not None:
            body["version"] = self.version
        result = Run.from_api(self._client.post(f"/api/chains/{self.name}/run", body))
        if check and result.status != "ok":
            raise ChainError(result)
        return result

    def runs(self, limit: int = 100) -> builtins.list[Run]:
        """The newest runs of the chain."""
        return [Run.from_api(r) for r in self._client.get(f"/api/chains/{self.name}/runs", limit=limit)]


def get(ref: str, *, url: str | None = None, api_key: str | None = None) -> Chain:
    """A handle on `name`, `name@3` or `name@label`, on the configured (or given) server."""
    _split(ref)
    return Chain(ref, Client(url, api_key, timeout=TIMEOUT))


def push(
    name: str,
    chain: str | Path | Mapping[str, Any],
    *,
    message: str = "",
    label: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Push a chain (YAML text, a path to a YAML file, or the chain as a dict built in Python) as the next
    version of `name`, optionally pointing `label` at it; the version."""
    if isinstance(chain, Path):
        body: dict[str, Any] = {"source": chain.read_text()}
    elif isinstance(chain, str):
        body = {"source": chain}
    elif isinstance(chain, Mapping):
        body = {"spec": dict(chain)}
    else:
        raise InvalidInput("a chain is YAML text, a path to a YAML file, or a dict")
    with Client(url, api_key) as c:
        pushed = c.post(f"/api/chains/{name}/versions", {**body, "message": message})
        version: dict[str, Any] = pushed["version"]
        if label is not None:
            version = c.put(f"/api/chains/{name}/labels/{label}", {"version": version["version"]})
    return version


def list(*, url: str | None = None, api_key: str | None = None) -> builtins.list[dict[str, Any]]:
    """The chains you see, by name."""
    with Client(url, api_key) as c:
        rows: builtins.list[dict[str, Any]] = c.get("/api/chains")
    return rows
