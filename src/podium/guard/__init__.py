"""Guardrail scanners: text in, findings out (PII, secrets, prompt injection, toxicity, topics, language,
invisible characters, JSON schema, relevance, URLs, an LLM judge), the actions that apply them (block, redact,
mask, hash), the scan API, and policies the gateway applies to its calls (`policy.py`, `enforce.py`).

SDK (`podium.guard.sdk`, imported on first use): `podium.guard.scan(text, scanners=...)`,
`podium.guard.list_policies()`, `podium.guard.get_policy(name)`, `podium.guard.apply_policy(path_or_yaml_or_dict)`,
`podium.guard.delete_policy(name)`, `podium.guard.test_policy(name, text)`, `podium.guard.findings(...)`.
"""

from __future__ import annotations

from typing import Any

_SDK = ("scan", "list_policies", "get_policy", "apply_policy", "delete_policy", "test_policy", "findings")


def __getattr__(name: str) -> Any:
    if name in _SDK:
        from podium.guard import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'podium.guard' has no attribute {name!r}")
