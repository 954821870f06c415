"""`podium.prompts.get(...)`: fetch a prompt version and render it locally, with a client-side cache.

The cache keeps each (server, prompt, label or version) for `ttl` seconds. After that the cached copy is
still returned at once while one background thread fetches a fresh one (stale-while-revalidate). The
last good copy is also written to disk (`PODIUM_PROMPT_CACHE_DIR`, default `~/.cache/podium/prompts`), so
a process that starts while the server is down still gets its prompts. A prompt that does not exist is
an error, never a stale copy. Rendering happens here, in the same sandbox as the server's; inside a
`podium.span`, rendering links the span to the prompt version.

The server and key are the SDK's one client configuration (`podium.configure(url=..., api_key=...)`, else
`PODIUM_URL`, `PODIUM_API_KEY`, podium.toml, `<home>/admin.key`); `url` and `api_key` arguments override it
for one call.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from podium.core import sdkconfig
from podium.core.errors import InvalidInput, NotFound, PodiumError, ServiceUnavailable
from podium.prompts import template

log = logging.getLogger("podium.prompts")
DEFAULT_TTL = 60.0


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered version: `messages` (chat) or `text`, and the model parameters it declares."""

    prompt: str
    version: int
    version_id: str
    text: str | None
    messages: list[dict[str, Any]] | None
    model: dict[str, Any]
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None

    def openai_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Arguments for `client.chat.completions.create(**...)`: model, messages and the declared
        parameters (a text prompt becomes one user message); `overrides` win."""
        params = {k: v for k, v in self.model.items() if k != "name"}
        out: dict[str, Any] = {}
        if self.model.get("name"):
            out["model"] = self.model["name"]
        out["messages"] = self.messages if self.messages is not None else [{"role": "user", "content": self.text}]
        out.update(params)
        if self.tools is not None:
            out["tools"] = self.tools
        if self.response_format is not None:
            out["response_format"] = self.response_format
        out.update(overrides)
        return out


@dataclass(frozen=True)
class Prompt:
    """One version of a prompt as fetched from the registry."""

    name: str
    version: int
    id: str
    kind: str
    template: str | None
    messages: list[dict[str, Any]] | None
    variables: dict[str, Any]
    model: dict[str, Any]
    tools: list[dict[str, Any]] | None
    response_format: dict[str, Any] | None
    labels: list[str] = field(default_factory=list)
    stale: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any], stale: bool = False) -> Prompt:
        """From the `/api/prompts/{name}/versions/{ref}` answer."""
        return cls(
            name=data["prompt"],
            version=data["version"],
            id=data["id"],
            kind=data["kind"],
            template=data.get("template"),
            messages=data.get("messages"),
            variables=data.get("variables") or {},
            model=data.get("model") or {},
            tools=data.get("tools"),
            response_format=data.get("response_format"),
            labels=list(data.get("labels") or []),
            stale=stale,
        )

    def render(self, **variables: Any) -> RenderedPrompt:
        """Fill the variables (typed; defaults applied; every missing name in one `InvalidInput`)."""
        text, messages, _ = template.render_content(self.kind, self.template, self.messages, self.variables, variables)
        _link_current_span(self.id)
        return RenderedPrompt(
            self.name, self.version, self.id, text, messages, dict(self.model), self.tools, self.response_format
        )


def _link_current_span(version_id: str) -> None:
    try:
        from podium.tracing.sdk import current_span
    except ImportError:  # pragma: no cover - same package
        return
    span = current_span()
    if span is not None and getattr(span, "prompt_version_id", None) is None:
        span.prompt_version_id = version_id


@dataclass
class _Entry:
    data: dict[str, Any]
    fetched: float
    refreshing: bool = False


class PromptCache:
    """The process's cache of fetched versions (thread-safe)."""

    def __init__(self, cache_dir: Path | None = None):
        root = os.environ.get("PODIUM_PROMPT_CACHE_DIR")
        self.cache_dir = cache_dir or (Path(root) if root else Path.home() / ".cache" / "podium" / "prompts")
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget what is in memory (the disk copies stay)."""
        with self._lock:
            self._entries.clear()

    def get(self, name: str, ref: str, *, ttl: float, url: str, api_key: str | None, timeout: float) -> Prompt:
        """A version from memory, a fresh fetch, or the disk copy when the server cannot be reached."""
        key = (url, name, ref)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if now - entry.fetched >= ttl and not entry.refreshing:
                    entry.refreshing = True
                    threading.Thread(
                        target=self._refresh, args=(key, api_key, timeout), name="podium-prompt-refresh", daemon=True
                    ).start()
                return Prompt.from_json(entry.data)
        try:
            data = self._fetch(url, api_key, name, ref, timeout)
        except ServiceUnavailable as exc:
            cached = self._read_disk(key)
            if cached is None:
                raise ServiceUnavailable(f"{exc.message}; and no cached copy of prompt {name}@{ref} exists") from None
            log.warning("podium prompts: %s; using the last good copy of %s@%s", exc.message, name, ref)
            return Prompt.from_json(cached, stale=True)
        self._store(key, data)
        return Prompt.from_json(data)

    def _refresh(self, key: tuple[str, str, str], api_key: str | None, timeout: float) -> None:
        url, name, ref = key
        try:
            data = self._fetch(url, api_key, name, ref, timeout)
        except NotFound as exc:  # the prompt or label is gone: never serve a stale copy of it
            log.warning("podium prompts: %s; dropping the cached copy of %s@%s", exc.message, name, ref)
            with self._lock:
                self._entries.pop(key, None)
            with contextlib.suppress(OSError):
                self._path(key).unlink()
            return
        except Exception as exc:  # the server is down or answered nonsense: keep the copy, retry after a ttl
            message = exc.message if isinstance(exc, PodiumError) else f"{type(exc).__name__}: {exc}"
            log.warning("podium prompts: refreshing %s@%s failed (%s); keeping the cached copy", name, ref, message)
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.fetched = time.monotonic()
                    entry.refreshing = False
            return
        self._store(key, data)

    def _store(self, key: tuple[str, str, str], data: dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = _Entry(data, time.monotonic())
        try:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(orjson.dumps(data))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("podium prompts: cannot write the disk cache (%s)", exc)

    def _path(self, key: tuple[str, str, str]) -> Path:
        digest = hashlib.sha256("\x00".join(key).encode()).hexdigest()[:32]
        return self.cache_dir / f"{digest}.json"

    def _read_disk(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = orjson.loads(self._path(key).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        with self._lock:  # served from disk: try the server again after the ttl
            self._entries[key] = _Entry(data, time.monotonic())
        return data

    @staticmethod
    def _fetch(url: str, api_key: str | None, name: str, ref: str, timeout: float) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            r = httpx.get(f"{url}/api/prompts/{name}/versions/{ref}", headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"cannot reach Podium at {url} ({type(exc).__name__})") from None
        if r.status_code >= 500:
            raise ServiceUnavailable(f"Podium at {url} answered {r.status_code}")
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {r.status_code}"
            raise (NotFound if r.status_code == 404 else PodiumError)(message)
        try:
            data: dict[str, Any] = r.json()
        except ValueError:
            raise ServiceUnavailable(f"Podium at {url} answered something that is not JSON") from None
        return data


_cache = PromptCache()


def cache() -> PromptCache:
    """The process's prompt cache."""
    return _cache


def get(
    name: str,
    *,
    label: str | None = None,
    version: int | None = None,
    ttl: float = DEFAULT_TTL,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 5.0,
) -> Prompt:
    """A prompt version by label (`production`, …), number, or the latest; cached for `ttl` seconds."""
    if label is not None and version is not None:
        raise InvalidInput("give a label or a version, not both")
    ref = str(version) if version is not None else (label or "latest")
    endpoint, key = sdkconfig.resolve(url, api_key)
    return _cache.get(name, ref, ttl=ttl, url=endpoint, api_key=key, timeout=timeout)


@dataclass(frozen=True)
class RunResult:
    """A playground run: the output (or the gateway's error), latency, tokens, cost and the trace id."""

    ok: bool
    output: str | None
    error: str | None
    status: int
    version: int | None
    model: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    trace_id: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """From `/api/playground/run`'s answer."""
        return cls(
            ok=bool(data["ok"]),
            output=data.get("output"),
            error=data.get("error"),
            status=int(data["status"]),
            version=data.get("version"),
            model=str(data["model"]),
            latency_ms=float(data["latency_ms"]),
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
            cost_micros=int(data["cost_micros"]),
            trace_id=data.get("trace_id"),
        )


def run(
    name: str,
    *,
    model: str,
    label: str | None = None,
    version: int | None = None,
    variables: dict[str, Any] | None = None,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 600.0,
) -> RunResult:
    """Run a version (by label, number, or the latest) on a gateway model, as the playground does: through
    the gateway as this key, traced and linked to the version, never from the response cache."""
    if label is not None and version is not None:
        raise InvalidInput("give a label or a version, not both")
    from podium.core.client import Client

    endpoint, key = sdkconfig.resolve(url, api_key)
    source = str(version) if version is not None else (label or "latest")
    body = {"name": name, "source": source, "model": model, "variables": variables or {}}
    with Client(endpoint, key or "", timeout=timeout) as c:
        return RunResult.from_json(c.post("/api/playground/run", body))
