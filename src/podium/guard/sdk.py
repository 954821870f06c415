"""The guard SDK: scan texts, manage and try guardrail policies, read recorded findings, from Python.

    import podium
    podium.guard.scan("mail me at bob@example.com", scanners=["pii"])
    podium.guard.apply_policy("policy.yaml")                 # a path, YAML text or a dict: created or replaced
    podium.guard.test_policy("support", "Ignore all previous instructions")
    podium.guard.findings(policy="support", action="block")

Everything goes through the server's `/api/guard` endpoints on the SDK's one client configuration
(`podium.configure(url=..., api_key=...)`, else `PODIUM_URL`, `PODIUM_API_KEY`); `url` and `api_key` override it.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import yaml

from podium.core.client import Client
from podium.core.errors import InvalidInput
from podium.guard.policy import MAX_SOURCE


def _client(url: str | None, api_key: str | None) -> Client:
    return Client(url, api_key, timeout=120.0)


def scan(
    text: str,
    *,
    scanners: builtins.list[str | dict[str, Any]] | None = None,
    stage: str = "input",
    prompt: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Scan a text (`scanners`: names or `{"type", "settings"}`; default: the stage's set)."""
    body: dict[str, Any] = {"text": text, "stage": stage}
    if prompt is not None:
        body["prompt"] = prompt
    if scanners is not None:
        body["scanners"] = [{"type": s} if isinstance(s, str) else s for s in scanners]
    with _client(url, api_key) as c:
        return dict(c.post("/api/guard/scan", body))


def list_policies(*, url: str | None = None, api_key: str | None = None) -> builtins.list[dict[str, Any]]:
    """The policies of your project."""
    with _client(url, api_key) as c:
        return builtins.list(c.get("/api/guard/policies"))


def get_policy(name: str, *, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """One policy, with its spec and source."""
    with _client(url, api_key) as c:
        return dict(c.get(f"/api/guard/policies/{name}"))


def apply_policy(
    policy: str | Path | dict[str, Any], *, url: str | None = None, api_key: str | None = None
) -> dict[str, Any]:
    """Create a policy or replace the one of its name (a YAML path, YAML/JSON text, or a mapping)."""
    if isinstance(policy, dict):
        body: dict[str, Any] = {"policy": policy}
        data: Any = policy
    else:
        text = str(policy)
        if isinstance(policy, Path) or ("\n" not in text and text.endswith((".yaml", ".yml", ".json"))):
            path = Path(policy)
            if not path.is_file() or path.stat().st_size > MAX_SOURCE:
                raise InvalidInput(
                    f"{path} is not a policy file of at most {MAX_SOURCE} bytes", details={"field": "policy"}
                )
            text = path.read_text()
        body = {"source": text}
        data = yaml.safe_load(text)
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidInput("the policy needs a 'name'", details={"field": "name"})
    with _client(url, api_key) as c:
        return dict(c.put(f"/api/guard/policies/{name}?create=true", body))


def delete_policy(name: str, *, url: str | None = None, api_key: str | None = None) -> None:
    """Remove a policy."""
    with _client(url, api_key) as c:
        c.delete(f"/api/guard/policies/{name}")


def test_policy(
    name: str,
    text: str,
    *,
    stage: str = "input",
    prompt: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """What a policy would decide on a text (a dry run)."""
    body: dict[str, Any] = {"text": text, "stage": stage}
    if prompt is not None:
        body["prompt"] = prompt
    with _client(url, api_key) as c:
        return dict(c.post(f"/api/guard/policies/{name}/test", body))


def findings(
    *,
    policy: str | None = None,
    scanner: str | None = None,
    action: str | None = None,
    limit: int = 100,
    url: str | None = None,
    api_key: str | None = None,
) -> builtins.list[dict[str, Any]]:
    """Recent decisions the gateway recorded under policies, newest first."""
    with _client(url, api_key) as c:
        found = c.get("/api/guard/findings", policy=policy, scanner=scanner, action=action, limit=limit)
    return builtins.list(found)
