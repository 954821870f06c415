"""The fine-tuning SDK: plan a blueprint, run it, follow, cancel and promote runs, from Python.

    import podium
    bp = podium.finetune.plan("blueprint.yaml")            # a path, YAML text or a dict; returns the stored one
    run = podium.finetune.run(bp["id"], wait=True)        # a dict: status, stages, metrics, result
    podium.finetune.promote(run["id"])

Everything goes through the server's `/api/finetunes` endpoints on the SDK's one client configuration
(`podium.configure(url=..., api_key=...)`, else `PODIUM_URL`, `PODIUM_API_KEY`, podium.toml,
`<home>/admin.key`); `url` and `api_key` arguments override it.
"""

from __future__ import annotations

import builtins
import time
from pathlib import Path
from typing import Any

from podium.core.client import Client
from podium.core.errors import InvalidInput, PodiumError

FINAL = ("succeeded", "failed", "cancelled")
MAX_BLUEPRINT = 64 * 1024


class RunFailed(PodiumError):
    """A run waited for ended without success (`run` holds it: its stages, error and metrics)."""

    status = 422
    code = "finetune_failed"

    def __init__(self, run: dict[str, Any]):
        super().__init__(run.get("error") or f"the run ended {run.get('status')}", details={"run": run.get("id")})
        self.run = run


def _is_path(text: str) -> bool:
    return "\n" not in text and text.endswith((".yaml", ".yml"))


def _client(url: str | None, api_key: str | None, timeout: float = 600.0) -> Client:
    return Client(url, api_key, timeout=timeout)


def plan(
    blueprint: str | Path | dict[str, Any] | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    **choices: Any,
) -> dict[str, Any]:
    """Plan and store a blueprint (a YAML path or text, or a mapping, and/or choices such as `base_model`,
    `train`, `prompt_field`); returns the stored blueprint with its report and estimate."""
    body: dict[str, Any] = dict(choices)
    if isinstance(blueprint, dict):
        body["blueprint"] = blueprint
    elif isinstance(blueprint, Path) or (isinstance(blueprint, str) and _is_path(blueprint)):
        path = Path(blueprint)
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file", details={"field": "blueprint"})
        if path.stat().st_size > MAX_BLUEPRINT:
            raise InvalidInput(f"{path} is larger than {MAX_BLUEPRINT // 1024} KB", details={"field": "blueprint"})
        body["source"] = path.read_text()
    elif isinstance(blueprint, str):
        body["source"] = blueprint
    with _client(url, api_key) as c:
        planned: dict[str, Any] = c.post("/api/finetunes/blueprints/plan", body)
    return dict(planned["blueprint"])


def get(run_id: str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """A run with its stages, metrics and log tail."""
    with _client(url, api_key, 60) as c:
        return dict(c.get(f"/api/finetunes/runs/{run_id}"))


def run(
    blueprint_id: str,
    *,
    backend: str | None = None,
    wait: bool = False,
    timeout: float = 7200.0,
    check: bool = True,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Start a run of a stored blueprint; with `wait`, follow it to its end (`RunFailed` if it does not
    succeed, unless `check=False`)."""
    body: dict[str, Any] = {"blueprint": blueprint_id}
    if backend is not None:
        body["backend"] = backend
    with _client(url, api_key, 60) as c:
        started: dict[str, Any] = c.post("/api/finetunes/runs", body)
        if not wait:
            return started
        deadline = time.monotonic() + timeout
        current = started
        while current["status"] not in FINAL:
            if time.monotonic() > deadline:
                raise PodiumError(f"run {started['id']} did not end in {timeout:.0f}s (it goes on on the server)")
            time.sleep(2)
            current = c.get(f"/api/finetunes/runs/{started['id']}")
    if check and current["status"] != "succeeded":
        raise RunFailed(current)
    return dict(current)


def list(*, url: str | None = None, api_key: str | None = None) -> builtins.list[dict[str, Any]]:
    """The runs you see, newest first."""
    with _client(url, api_key, 60) as c:
        return builtins.list(c.get("/api/finetunes/runs"))


def cancel(run_id: str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Stop a run (its checkpoints stay; nothing is registered)."""
    with _client(url, api_key, 60) as c:
        return dict(c.post(f"/api/finetunes/runs/{run_id}/cancel", {}))


def promote(run_id: str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Give a deployed run's tuned version all of its route's traffic (its model's `stable` alias moves)."""
    with _client(url, api_key, 60) as c:
        return dict(c.post(f"/api/finetunes/runs/{run_id}/promote", {}))
