"""The prompt playground: render a draft or a saved version with variables and run it on a gateway model.

A run goes through the gateway's own request service as the caller (route, guardrails, limits and budgets,
retries and fallbacks, streaming, the trace of the call, linked to the prompt version when a saved version
runs), without the response cache so that every run is fresh. `/api/playground/run` serves it to the
dashboard page, the CLI (`podium prompts run`) and the SDK alike; the page's variable check and "save as
new version" use the draft helpers here too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from podium.core.db import Database
from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.money import format_micros
from podium.gateway.guardrails import response_text
from podium.gateway.prompting import PromptUse
from podium.gateway.service import KEEPALIVE, Answer, Gateway, Incoming
from podium.prompts import service, template

MAX_COMBOS = 4  # version-by-model combinations the page compares side by side


class Draft(BaseModel):
    """A template being edited: text or chat messages, and the version it was started from."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: Literal["text", "chat"]
    template: str | None = None
    messages: list[dict[str, Any]] | None = None
    base: int | None = Field(None, description="The version the draft was started from.")


class RunRequest(BaseModel):
    """One playground run: a source (`draft`, or a version number or label of `name`), a gateway model or
    route, the variables, and whether to stream the answer."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    source: str
    draft: Draft | None = None
    model: str
    variables: dict[str, Any] = {}
    stream: bool = False


class RunResult(BaseModel):
    """What a run gave: the output (or the gateway's error), latency, tokens, cost, and the trace."""

    source: str
    version: int | None
    model: str
    ok: bool
    output: str | None
    error: str | None
    status: int
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    cost: str
    trace_id: str | None
    route: str | None
    deployment: str | None


# --- drafts ----------------------------------------------------------------------------------------


def draft_spec(db: Database, actor: Actor, name: str, draft: Draft) -> dict[str, Any]:
    """The draft as a version spec: the base version's declared variables (those still used), model
    parameters, tools and response format, with the edited template or messages."""
    base = service.get_version(db, actor, name, draft.base) if name and draft.base is not None else None
    spec: dict[str, Any] = {"name": name or "draft"}
    if draft.kind == "text":
        spec["template"] = draft.template or ""
    else:
        spec["messages"] = draft.messages or []
    used = used_variables(draft)
    if base is not None:
        spec["variables"] = {k: v for k, v in base.variables.items() if k in used}
        spec["model"] = base.model
        if base.tools is not None:
            spec["tools"] = base.tools
        if base.response_format is not None:
            spec["response_format"] = base.response_format
    return spec


def sources(draft: Draft) -> list[tuple[str, str]]:
    """(where, template source) for each template of a draft."""
    if draft.kind == "text":
        return [("template", draft.template or "")]
    out = []
    for i, m in enumerate(draft.messages or []):
        content = m.get("content") if isinstance(m, dict) else None
        out.append((f"messages[{i}].content", content if isinstance(content, str) else ""))
    return out


def used_variables(draft: Draft) -> set[str]:
    """The variables a draft's templates use (templates with errors contribute nothing)."""
    used: set[str] = set()
    for where, source in sources(draft):
        try:
            used |= template.check(source, where)
        except InvalidInput:
            continue
    return used


def variables_report(db: Database, actor: Actor, name: str, draft: Draft, versions: list[int]) -> dict[str, Any]:
    """The variables the draft and the compared versions use (declared types and defaults where known),
    and every template error of the draft with its line and column."""
    errors = []
    for where, source in sources(draft):
        try:
            template.check(source, where)
        except InvalidInput as exc:
            errors.append({"where": where, "message": exc.message, **exc.details})
    found: dict[str, dict[str, Any]] = {}
    spec = draft_spec(db, actor, name, draft)
    for var in sorted(used_variables(draft)):
        found[var] = {"name": var, **spec.get("variables", {}).get(var, {"type": "string"}), "used_by": ["draft"]}
    if name:
        for number in versions[:MAX_COMBOS]:
            v = service.get_version(db, actor, name, number)
            for var, declared in v.variables.items():
                entry = found.setdefault(var, {"name": var, **declared, "used_by": []})
                entry["used_by"].append(f"v{number}")
    return {"variables": list(found.values()), "errors": errors}


def save_draft(db: Database, actor: Actor, name: str, draft: Draft, message: str = "") -> service.Created:
    """Save the draft as a new version of `name` (or the first version of a new prompt)."""
    if not name.strip():
        raise InvalidInput("give the prompt a name before saving", details={"field": "name"})
    spec = draft_spec(db, actor, name.strip(), draft)
    spec["message"] = message
    return service.create_version(db, actor, spec)


# --- running ---------------------------------------------------------------------------------------


def chat_body(
    model: str,
    text: str | None,
    messages: list[dict[str, Any]] | None,
    params: dict[str, Any],
    tools: list[dict[str, Any]] | None,
    response_format: dict[str, Any] | None,
) -> dict[str, Any]:
    """A chat request from a rendered prompt: its messages (a text prompt is one user message) and its
    model parameters, sent to `model`."""
    body: dict[str, Any] = {k: v for k, v in params.items() if k not in ("name", "tool_choice")}
    body["model"] = model
    body["messages"] = messages if messages is not None else [{"role": "user", "content": text or ""}]
    if tools:
        body["tools"] = tools
        if params.get("tool_choice") is not None:
            body["tool_choice"] = params["tool_choice"]
    if response_format is not None:
        body["response_format"] = response_format
    return body


async def _rendered(db: Database, actor: Actor, req: RunRequest) -> tuple[dict[str, Any], PromptUse | None]:
    """The chat request a run sends, and the saved version it links to (None for a draft)."""
    if req.source == "draft":
        # a draft is a template nobody reviewed: only those who may write prompts run one, off the event loop
        actor.require("member", "run draft prompts")
        if req.draft is None:
            raise InvalidInput("a draft run needs the draft", details={"field": "draft"})
        spec = await asyncio.to_thread(draft_spec, db, actor, req.name, req.draft)
        content = service.check_spec(service.parse_spec(spec))
        text, messages, _ = await asyncio.to_thread(
            template.render_content,
            content["kind"],
            content["template"],
            content["messages"],
            content["variables"],
            req.variables,
        )
        return chat_body(
            req.model, text, messages, content["model"], content["tools"], content["response_format"]
        ), None
    if not req.name:
        raise InvalidInput("running a saved version needs the prompt's name", details={"field": "name"})
    v = await asyncio.to_thread(service.get_version, db, actor, req.name, req.source)
    rendered = await asyncio.to_thread(service.render_version, v, req.variables)
    body = chat_body(
        req.model, rendered.text, rendered.messages, rendered.model, rendered.tools, rendered.response_format
    )
    return body, PromptUse(v.prompt, v.version, v.id)


async def start(
    gateway: Gateway, db: Database, actor: Actor, req: RunRequest, *, request_id: str | None = None
) -> tuple[Answer, PromptUse | None]:
    """Render the run and send it through the gateway as the actor (streamed if asked)."""
    if actor.principal is None:
        raise InvalidInput("a playground run needs a caller with an API key or a dashboard session")
    body, used = await _rendered(db, actor, req)
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    incoming = Incoming(kind="chat", body=body, body_bytes=len(orjson.dumps(body)), request_id=request_id)
    answer = await gateway.handle(actor.principal, incoming, use_cache=False, prompt=used)
    return answer, used


def result_of(req: RunRequest, answer: Answer, used: PromptUse | None, output: str | None) -> RunResult:
    """The summary of a finished run."""
    call = answer.call
    error = None
    if answer.status >= 400:
        error = call.error if call is not None and call.error else _message(answer.body)
    latency = (time.perf_counter() - call.t0) * 1000 if call is not None else 0.0
    cost = call.cost_micros if call is not None else 0
    return RunResult(
        source=req.source,
        version=used.version if used else None,
        model=req.model,
        ok=error is None,
        output=output if error is None else None,
        error=error,
        status=answer.status,
        latency_ms=round(latency, 1),
        prompt_tokens=call.prompt_tokens if call is not None else 0,
        completion_tokens=call.completion_tokens if call is not None else 0,
        cost_micros=cost,
        cost=format_micros(cost),
        trace_id=call.trace_id if call is not None else None,
        route=call.route if call is not None else None,
        deployment=call.deployment if call is not None else None,
    )


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or "the call failed")
    return "the call failed"


async def run(
    gateway: Gateway, db: Database, actor: Actor, req: RunRequest, *, request_id: str | None = None
) -> RunResult:
    """Run one combination to its end (a streamed run is read to its end too) and summarise it."""
    answer, used = await start(gateway, db, actor, req, request_id=request_id)
    if answer.stream is None:
        output = response_text(answer.body) if answer.status < 400 and isinstance(answer.body, dict) else None
        return result_of(req, answer, used, output)
    pieces: list[str] = []
    async for chunk in answer.stream:
        pieces.extend(_texts(chunk))
    return result_of(req, _after_stream(answer), used, "".join(pieces))


async def events(req: RunRequest, answer: Answer, used: PromptUse | None) -> AsyncIterator[tuple[str, Any]]:
    """A started run as events: `("chunk", chunk)` as the model writes, `("keepalive", None)` while it
    waits, then `("result", RunResult)` once the call is settled and recorded."""
    if answer.stream is None:  # refused before it started (limits, guardrails, an unknown model), or cached
        output = response_text(answer.body) if answer.status < 400 and isinstance(answer.body, dict) else None
        yield "result", result_of(req, answer, used, output)
        return
    pieces: list[str] = []
    async for chunk in answer.stream:
        if chunk is KEEPALIVE:
            yield "keepalive", None
            continue
        pieces.extend(_texts(chunk))
        yield "chunk", chunk
    yield "result", result_of(req, _after_stream(answer), used, "".join(pieces))


def _texts(chunk: dict[str, Any] | None) -> list[str]:
    if not chunk:
        return []
    out = []
    for c in chunk.get("choices") or []:
        delta = c.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str):
            out.append(text)
    return out


def _after_stream(answer: Answer) -> Answer:
    """A streamed answer's final status: an error that came mid-stream is the call's status."""
    call = answer.call
    if call is not None and call.error is not None:
        return Answer(call.status, answer.headers, call, body={"error": {"message": call.error}})
    return answer
