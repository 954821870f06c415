"""Prompt references in chat requests, rendered for the gateway: `"prompt": {"name", "label" | "version",
"variables"}`.

The reference is resolved from the prompt directory's in-memory snapshot (a running experiment may pick
the version), rendered, and turned into the request sent upstream: the rendered messages first, then any
`messages` of the request; the prompt's model parameters, tools and response format fill in only what the
request leaves unset (the request wins). A `model` that is absent, null or empty takes the prompt's model.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from podium.core.errors import NotFound, PodiumError
from podium.core.identity import Principal
from podium.gateway.errors import GatewayError
from podium.gateway.prompting import PromptUse
from podium.prompts.directory import PromptDirectory

_FIELDS = frozenset({"name", "label", "version", "variables"})


@dataclass(frozen=True)
class PromptReferences:
    """The prompts domain's `PromptResolver` for the gateway, over the process's prompt directory."""

    directory: PromptDirectory

    async def apply(
        self, body: dict[str, Any], session: str | None, principal: Principal | None = None
    ) -> tuple[dict[str, Any], PromptUse]:
        """See `PromptResolver.apply`."""
        return await apply_prompt(self.directory, body, session, principal)


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, code="invalid_prompt", param=param)


def parse_reference(ref: Any) -> tuple[str, str | None, int | None, dict[str, Any] | None]:
    """Check the reference's shape: (name, label, version number, variables); a 400 names the bad field."""
    if not isinstance(ref, dict):
        raise _bad("'prompt' must be an object: {name, label or version, variables}", "prompt")
    unknown = sorted(set(ref) - _FIELDS)
    if unknown:
        raise _bad(
            f"prompt.{unknown[0]} is not a known field; use name, label or version, and variables",
            f"prompt.{unknown[0]}",
        )
    name = ref.get("name")
    if name is None:
        raise GatewayError(400, "'prompt.name' is required", code="missing_field", param="prompt.name")
    if not isinstance(name, str) or not name.strip():
        raise _bad("'prompt.name' must be a non-empty string", "prompt.name")
    label = ref.get("label")
    if label is not None and (not isinstance(label, str) or not label):
        raise _bad("'prompt.label' must be a non-empty string", "prompt.label")
    raw = ref.get("version")
    number: int | None = None
    if raw is not None:
        if label is not None:
            raise _bad("give 'prompt.label' or 'prompt.version', not both", "prompt.version")
        text = raw[1:] if isinstance(raw, str) and raw.startswith("v") else raw
        if isinstance(text, int) and not isinstance(text, bool):
            number = text
        elif isinstance(text, str) and text.isdigit():
            number = int(text)
        else:
            raise _bad("'prompt.version' must be a version number (3 or \"v3\")", "prompt.version")
    variables = ref.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise _bad("'prompt.variables' must be an object of name → value", "prompt.variables")
    return name.strip(), label, number, variables


async def apply_prompt(
    directory: PromptDirectory, body: dict[str, Any], session: str | None, principal: Principal | None = None
) -> tuple[dict[str, Any], PromptUse]:
    """The request to send upstream, rendered from the body's prompt reference, and what was used."""
    name, label, number, variables = parse_reference(body["prompt"])
    user = body.get("user")
    try:
        choice = await directory.resolve(
            name,
            label,
            number,
            user=user if isinstance(user, str) and user else None,
            session=session,
            principal=principal,
        )
    except NotFound as exc:
        field = str(exc.details.get("field") or "prompt.name")
        raise GatewayError(404, exc.message, code="prompt_not_found", param=field) from None
    except PodiumError as exc:
        raise GatewayError.from_podium(exc) from None
    try:
        # off the event loop: a template may take up to its render budget
        rendered = await asyncio.to_thread(choice.version.render, variables)
    except PodiumError as exc:  # missing or mistyped variables, a refused template operation
        raise GatewayError(exc.status, exc.message, code=exc.code, param="prompt.variables") from None
    out = {k: v for k, v in body.items() if k != "prompt"}
    given = out.get("messages")
    if given is not None and not isinstance(given, list):
        raise GatewayError(400, "'messages' must be an array", code="invalid_type", param="messages")
    first = rendered.messages if rendered.messages is not None else [{"role": "user", "content": rendered.text or ""}]
    out["messages"] = [*first, *(given or [])]
    for key, value in rendered.model.items():
        if key == "name":
            if not out.get("model"):
                out["model"] = value
        elif key == "max_tokens" and out.get("max_completion_tokens") is not None:
            continue  # the request's own limit, under its newer name
        elif key == "tool_choice":
            continue  # below, once the tools are known
        elif out.get(key) is None:
            out[key] = value
    if rendered.tools is not None and not out.get("tools"):
        out["tools"] = rendered.tools
    if rendered.response_format is not None and out.get("response_format") is None:
        out["response_format"] = rendered.response_format
    choice_param = rendered.model.get("tool_choice")
    if choice_param is not None and out.get("tools") and out.get("tool_choice") is None:
        out["tool_choice"] = choice_param
    v = choice.version
    return out, PromptUse(v.prompt, v.version, v.id, label, choice.experiment_id, choice.arm)
