"""Python SDK for models: `podium.models.get("name@alias")` returns a handle whose `.chat()`,
`.complete()` and `.embed()` work the same whatever provider serves the model.

Calls go through the server's `/v1` API (so keys, routing and recording apply). The server and key are the
SDK's one client configuration (`podium.configure(url=..., api_key=...)`, else `PODIUM_URL`,
`PODIUM_API_KEY`, podium.toml, `<home>/admin.key`), read when the handle is made; `url` and `api_key`
arguments override it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from podium.core import sse
from podium.core.client import Client
from podium.core.errors import PodiumError


@dataclass
class ChatResult:
    """A chat completion: the text, the whole message, usage, and the raw response."""

    text: str
    message: dict[str, Any]
    finish_reason: str | None
    usage: dict[str, int]
    raw: dict[str, Any] = field(repr=False)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Tool calls the model asked for (empty if none)."""
        calls: list[dict[str, Any]] = self.message.get("tool_calls") or []
        return calls


@dataclass
class CompletionResult:
    """A text completion."""

    text: str
    finish_reason: str | None
    usage: dict[str, int]
    raw: dict[str, Any] = field(repr=False)


class ModelHandle:
    """One model reference (`name`, `name@3`, `name@production`) on a Podium server."""

    def __init__(self, ref: str, client: Client):
        self.ref = ref
        self._client = client

    def __repr__(self) -> str:
        return f"ModelHandle({self.ref!r} at {self._client.url})"

    def info(self) -> dict[str, Any]:
        """The registered version this reference resolves to now."""
        name, _, tag = self.ref.partition("@")
        result: dict[str, Any] = self._client.get(f"/api/models/{name}/versions/{tag or 'latest'}")
        return result

    def rollback(self) -> dict[str, Any]:
        """Move this handle's alias (`name@alias`) back to the version it pointed at before its latest move;
        returns `{"model", "alias", "from_version", "to_version", "version"}`."""
        name, _, alias = self.ref.partition("@")
        if not alias:
            raise PodiumError(f"rollback needs NAME@ALIAS; {self.ref!r} names no alias")
        result: dict[str, Any] = self._client.post(f"/api/models/{name}/aliases/{alias}/rollback")
        return result

    def batch(
        self,
        dataset: str,
        *,
        input_column: str | None = None,
        messages_column: str | None = None,
        system: str | None = None,
        output_dataset: str | None = None,
        output_column: str = "output",
        params: dict[str, Any] | None = None,
        concurrency: int = 8,
        limit: int | None = None,
        message: str = "",
        wait: bool = True,
        timeout: float = 3600.0,
    ) -> dict[str, Any]:
        """Run this model over a dataset version (`name@version`) as a job writing its answers as a new dataset
        version; returns the job (with `wait`, once it ended: its `result` names the version written)."""
        body = {
            "model": self.ref,
            "dataset": dataset,
            "input_column": input_column,
            "messages_column": messages_column,
            "system": system,
            "output_dataset": output_dataset,
            "output_column": output_column,
            "params": params or {},
            "concurrency": concurrency,
            "limit": limit,
            "message": message,
        }
        job: dict[str, Any] = self._client.post("/api/models/batch", body)
        deadline = time.monotonic() + timeout
        while wait and job["status"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = self._client.get(f"/api/jobs/{job['id']}", log_tail=0)
        if wait and job["status"] in ("failed", "cancelled"):
            raise PodiumError(f"batch job {job['id']} {job['status']}: {job.get('error') or job['message']}")
        return job

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._v1("POST", path, body)
        return result

    def _v1(self, method: str, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._client._http.request(method, path, content=orjson.dumps(body), headers=_JSON)
        except httpx.HTTPError as exc:
            raise PodiumError(f"cannot reach Podium at {self._client.url}: {exc}") from None
        if response.status_code >= 400:
            raise _v1_error(response)
        return response.json()

    def chat(
        self,
        messages: list[dict[str, Any]] | str,
        **params: Any,
    ) -> ChatResult:
        """A chat completion. `messages` may be a plain string (one user message); params are OpenAI's."""
        body = {"model": self.ref, "messages": _messages(messages), **params, "stream": False}
        raw = self._post("/v1/chat/completions", body)
        choice = raw["choices"][0]
        message = choice["message"]
        return ChatResult(
            message.get("content") or "", message, choice.get("finish_reason"), raw.get("usage") or {}, raw
        )

    def stream_chat(self, messages: list[dict[str, Any]] | str, **params: Any) -> Iterator[str]:
        """A streamed chat completion: yields text as it arrives."""
        body = {"model": self.ref, "messages": _messages(messages), **params, "stream": True}
        yield from self._stream("/v1/chat/completions", body, chat=True)

    def complete(self, prompt: str, **params: Any) -> CompletionResult:
        """A text completion."""
        raw = self._post("/v1/completions", {"model": self.ref, "prompt": prompt, **params, "stream": False})
        choice = raw["choices"][0]
        return CompletionResult(choice.get("text") or "", choice.get("finish_reason"), raw.get("usage") or {}, raw)

    def stream_complete(self, prompt: str, **params: Any) -> Iterator[str]:
        """A streamed text completion."""
        yield from self._stream(
            "/v1/completions", {"model": self.ref, "prompt": prompt, **params, "stream": True}, chat=False
        )

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        """Embeddings, one vector per text."""
        single = isinstance(texts, str)
        raw = self._post("/v1/embeddings", {"model": self.ref, "input": [texts] if single else texts})
        vectors = [d["embedding"] for d in sorted(raw["data"], key=lambda d: d["index"])]
        return vectors

    def _stream(self, path: str, body: dict[str, Any], *, chat: bool) -> Iterator[str]:
        with self._client._http.stream("POST", path, content=orjson.dumps(body), headers=_JSON) as response:
            if response.status_code >= 400:
                response.read()
                raise _v1_error(response)
            for event in sse.events(response.iter_lines()):
                chunk = event.data
                if "error" in chunk and not chunk.get("choices"):
                    raise PodiumError(str(chunk["error"].get("message", chunk["error"])))
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    if piece:
                        yield piece


_JSON = {"Content-Type": "application/json"}


def _messages(messages: list[dict[str, Any]] | str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else messages


def _v1_error(response: httpx.Response) -> PodiumError:
    try:
        err = response.json().get("error", {})
        message = err.get("message") or response.text
    except ValueError:
        message = response.text[:300]
    error = PodiumError(f"HTTP {response.status_code}: {message}")
    error.status = response.status_code
    return error


def get(ref: str, *, url: str | None = None, api_key: str | None = None) -> ModelHandle:
    """A handle on a model reference, on the configured (or given) server."""
    return ModelHandle(ref, Client(url, api_key))


def rollback(ref: str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Move the alias `ref` (`name@alias`) back to the version it pointed at before its latest move."""
    with Client(url, api_key) as client:
        return ModelHandle(ref, client).rollback()


def list_models(*, url: str | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
    """Registered models."""
    with Client(url, api_key) as client:
        rows: list[dict[str, Any]] = client.get("/api/models")
        return rows
