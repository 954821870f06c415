"""Running a chain version: its steps in dependency order, each with its timeout, retries and fallback, the
whole run one trace.

The engine knows steps, not the platform: what a step does outside (a model call, a retrieval, a prompt
version, a tool, a guardrail, a person's approval) goes through a `Runtime`, which the chains service builds
over the in-process gateway, the knowledge-base and prompts services and the tool registry. Model calls are
made under the step's span (`TraceParent`), so the gateway records each as a child span in the run's trace
that owns its tokens and cost; the engine's own spans (the chain, each step, each tool call) carry none, so
a run's totals count every model call once.

Scheduling: a top-level step starts as soon as every step it reads (or `needs`) has finished, so
independent steps run at the same time; `parallel` runs its steps together, `map` runs its step over a list
at most `concurrency` at a time, `branch` runs only the case chosen. An attempt that raises or outlives the
step's `timeout` is retried `retries` times; then the `fallback` step's output stands for the step's, or the
run fails naming the step. Every step emits events (`step_started`, `step_retry`, `step_finished`,
`step_failed`) through `on_event`, which the API streams as server-sent events.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from podium.chains import spec as chain_spec
from podium.chains.spec import (
    AgentStep,
    BranchStep,
    ChainSpec,
    GuardrailStep,
    LlmStep,
    MapStep,
    ParallelStep,
    PromptStep,
    RetrieveStep,
    Step,
    ToolStep,
    TransformStep,
)
from podium.core.db import utcnow
from podium.core.errors import InvalidInput, PodiumError
from podium.core.ids import new_id
from podium.core.jsonschemas import compile_schema
from podium.gateway.dispatch import TraceParent
from podium.prompts import template

MAX_SPAN_TEXT = 64 * 1024  # characters of a step's input or output kept on its span
MAX_OUTPUT_BYTES = 4 * 1024 * 1024  # a step output larger than this (serialised) fails the step
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%|\{#).)*)\}\}\s*$", re.S)


class StepError(Exception):
    """A step attempt failed; the message says why (it is what the trace and the API show)."""


class ChainFailed(PodiumError):
    """A run failed at `step` (after its retries and fallback)."""

    status = 422
    code = "chain_failed"

    def __init__(self, step: str, message: str):
        super().__init__(f"step {step!r} failed: {message}", details={"step": step})
        self.step = step


@dataclass(frozen=True)
class ChatResult:
    """One model call's answer, as a step uses it."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0
    message: dict[str, Any] = field(default_factory=dict)  # the assistant message, as the model sent it


@dataclass(frozen=True)
class ToolInfo:
    """What an agent needs of a tool: its OpenAI function definition and whether a person must approve a call."""

    name: str
    definition: dict[str, Any]
    requires_approval: bool = False


class Runtime(Protocol):
    """What steps do outside the engine."""

    async def chat(self, body: dict[str, Any], parent: TraceParent) -> ChatResult:
        """Call a model through the gateway (`StepError` on a failed call)."""
        ...

    async def retrieve(
        self, kb: str, query: str, k: int, mode: str, filters: dict[str, Any] | None, parent: TraceParent
    ) -> tuple[str, list[dict[str, Any]]]:
        """The version searched (`name@version`) and the hits of a knowledge-base search, as dicts."""
        ...

    def tool(self, name: str) -> ToolInfo:
        """A registered tool's definition (`StepError` if there is none)."""
        ...

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        """Run a tool (`StepError` if it fails or outlives `timeout`)."""
        ...

    async def guard(self, kind: str, settings: dict[str, Any], text: str) -> str:
        """The text if the guardrail lets it pass (`StepError` naming what it found if not)."""
        ...

    async def approve(self, step: str, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        """Wait for a person to approve a tool call: (approved, their comment)."""
        ...


@dataclass
class Event:
    """Something that happened in a run: `type`, the step it concerns, and details."""

    type: str
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "step": self.step, **self.data}


@dataclass
class RunResult:
    """How a run ended: its output (or error), the outputs of the steps that ran, and the spans to record."""

    status: str  # ok or error
    inputs: dict[str, Any]  # as bound: the declared inputs with their defaults
    output: Any
    error: str | None
    failed_step: str | None
    steps: dict[str, Any]
    spans: list[dict[str, Any]]
    started_at: datetime
    ended_at: datetime
    latency_ms: float
    prompt_tokens: int = 0  # the run's model calls together (each recorded on its own span)
    completion_tokens: int = 0
    cost_micros: int = 0


OnEvent = Callable[[Event], Awaitable[None]]


async def _ignore(event: Event) -> None:
    return None


class Run:
    """One run of a chain version (use once)."""

    def __init__(
        self,
        chain: ChainSpec,
        runtime: Runtime,
        *,
        name: str,
        trace_id: str | None = None,
        on_event: OnEvent = _ignore,
        attributes: Mapping[str, Any] | None = None,
    ):
        self.chain = chain
        self.runtime = runtime
        self.name = name
        self.trace_id = trace_id or new_id("trc")
        self.root_span = new_id("spn")
        self.on_event = on_event
        self.attributes = dict(attributes or {})
        self.spans: list[dict[str, Any]] = []
        self.outputs: dict[str, Any] = {}
        self.usage = [0, 0, 0]  # prompt tokens, completion tokens, cost (micro-dollars)

    async def run(self, inputs: Mapping[str, Any] | None) -> RunResult:
        """Run the chain on `inputs` (checked against its declared inputs first: `InvalidInput`)."""
        if inputs is not None and not isinstance(inputs, Mapping):
            raise InvalidInput("a chain's inputs must be an object of name → value")
        unknown = sorted(set(inputs or {}) - set(self.chain.inputs))
        if unknown:
            takes = ", ".join(self.chain.inputs) or "no inputs"
            raise InvalidInput(
                f"unknown input{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; the chain takes {takes}"
            )
        bound = template.bind(self.chain.inputs, inputs or {})
        started, t0 = utcnow(), time.perf_counter()
        status, output, error, failed = "ok", None, None, None
        await self.on_event(Event("run_started", None, {"trace_id": self.trace_id}))
        try:
            await self._top_level(bound)
            output = await self._output(bound)
        except ChainFailed as exc:
            status, error, failed = "error", exc.message, exc.step
        ended = utcnow()
        latency = (time.perf_counter() - t0) * 1000
        self.spans.insert(
            0,
            _span(
                self.root_span,
                self.trace_id,
                None,
                "chain",
                self.name,
                started,
                ended,
                status=status,
                error=error,
                input=bound,
                output=output,
                attributes=self.attributes,
            ),
        )
        end: dict[str, Any] = {"status": status, "output": output, "latency_ms": round(latency, 2)}
        if error is not None:
            end |= {"error": error, "failed_step": failed}
        await self.on_event(Event("run_finished", None, end))
        return RunResult(
            status, bound, output, error, failed, dict(self.outputs), self.spans, started, ended, latency, *self.usage
        )

    async def _chat(self, body: dict[str, Any], parent: TraceParent) -> ChatResult:
        result = await self.runtime.chat(body, parent)
        self.usage[0] += result.prompt_tokens
        self.usage[1] += result.completion_tokens
        self.usage[2] += result.cost_micros
        return result

    # --- scheduling -------------------------------------------------------------------------------------

    async def _top_level(self, inputs: dict[str, Any]) -> None:
        steps = {step.id: step for step in self.chain.steps}
        done: dict[str, asyncio.Future[None]] = {sid: asyncio.get_running_loop().create_future() for sid in steps}
        deps = {sid: sorted(chain_spec.reads(step) & set(steps)) for sid, step in steps.items()}

        async def one(step: Step) -> None:
            for dep in deps[step.id]:
                await done[dep]
            self.outputs[step.id] = await self._step(step, self._context(inputs), self.root_span)
            done[step.id].set_result(None)

        try:
            async with asyncio.TaskGroup() as group:
                for step in self.chain.steps:
                    group.create_task(one(step))
        except* ChainFailed as failures:
            raise failures.exceptions[0] from None

    def _context(self, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"inputs": inputs, "steps": dict(self.outputs), **extra}  # a snapshot: templates run in threads

    async def _output(self, inputs: dict[str, Any]) -> Any:
        if self.chain.output is None:
            return self.outputs[self.chain.steps[-1].id]
        try:
            return await _evaluate(self.chain.output, self._context(inputs), "the chain's output")
        except InvalidInput as exc:
            raise ChainFailed("output", exc.message) from None

    # --- one step -----------------------------------------------------------------------------------------

    async def _step(self, step: Step, ctx: dict[str, Any], parent: str, label: str | None = None) -> Any:
        """Run `step` with its retries, timeout and fallback, under span `parent`; its output."""
        name = label or step.id
        span_id = new_id("spn")
        started = utcnow()
        await self.on_event(Event("step_started", name, {"step_type": step.type}))
        errors: list[str] = []
        seen_input: Any = None
        for attempt in range(1, step.retries + 2):
            try:
                async with asyncio.timeout(step.timeout):
                    seen_input, output = await self._execute(step, ctx, span_id)
                _check_size(output)
            except TimeoutError:
                errors.append(f"timed out after {step.timeout:g} s")
            except (StepError, InvalidInput) as exc:
                errors.append(exc.message if isinstance(exc, InvalidInput) else str(exc))
            except ChainFailed as exc:  # a nested step failed after its own retries and fallback
                errors.append(exc.message)
            except Exception as exc:  # a tool's or a runtime's own bug: the step fails, the run does not hang
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                self.spans.append(
                    _step_span(
                        span_id, self.trace_id, parent, step, name, started, seen_input, output, attempt, errors, False
                    )
                )
                await self.on_event(Event("step_finished", name, {"output": _clip(output), "attempts": attempt}))
                return output
            if attempt <= step.retries:
                await self.on_event(Event("step_retry", name, {"attempt": attempt, "error": errors[-1]}))
        if step.fallback is not None:
            await self.on_event(Event("step_fallback", name, {"error": errors[-1], "fallback": step.fallback.id}))
            self.spans.append(
                _step_span(
                    span_id, self.trace_id, parent, step, name, started, seen_input, None, len(errors), errors, True
                )
            )
            return await self._step(step.fallback, ctx, span_id)
        self.spans.append(
            _step_span(span_id, self.trace_id, parent, step, name, started, seen_input, None, len(errors), errors, True)
        )
        await self.on_event(Event("step_failed", name, {"error": errors[-1], "attempts": len(errors)}))
        raise ChainFailed(name, errors[-1])

    async def _execute(self, step: Step, ctx: dict[str, Any], span: str) -> tuple[Any, Any]:
        """One attempt: (what the step was given, its output)."""
        parent = TraceParent(self.trace_id, span)
        where = f"step {step.id!r}"
        if isinstance(step, TransformStep):
            return None, await _evaluate(step.expression, ctx, where)
        if isinstance(step, LlmStep):
            messages = (
                [{"role": "user", "content": await _text(step.input, ctx, f"{where} input")}]
                if step.input is not None
                else [
                    {"role": m.role, "content": await _text(m.content, ctx, f"{where} message {i + 1}")}
                    for i, m in enumerate(step.messages or [])
                ]
            )
            body = {**step.params, "model": step.model, "messages": messages}
            if step.output_schema is not None:
                body.setdefault(
                    "response_format",
                    {"type": "json_schema", "json_schema": {"name": step.id, "schema": step.output_schema}},
                )
            result = await self._chat(body, parent)
            return messages, _structured(step, result.content) if step.output_schema is not None else result.content
        if isinstance(step, PromptStep):  # the gateway renders the reference and links the call to the version
            variables = {
                name: await _value(text, ctx, f"{where} variable {name!r}") for name, text in step.variables.items()
            }
            body = {**step.params, "prompt": {**prompt_reference(step.prompt), "variables": variables}}
            if step.model is not None:
                body["model"] = step.model
            result = await self._chat(body, parent)
            return body["prompt"], result.content
        if isinstance(step, RetrieveStep):
            query = await _text(step.query, ctx, f"{where} query")
            ref, hits = await self.runtime.retrieve(step.kb, query, step.k, step.mode, step.filter, parent)
            return {"query": query, "kb": ref, "k": step.k, "mode": step.mode, "filter": step.filter}, hits
        if isinstance(step, ToolStep):
            args = {
                name: await _value(text, ctx, f"{where} argument {name!r}") for name, text in step.arguments.items()
            }
            self.runtime.tool(step.tool)  # an unknown tool fails before anything runs
            return args, await self.runtime.call_tool(step.tool, args, step.timeout)
        if isinstance(step, GuardrailStep):
            text = await _text(step.input, ctx, f"{where} input")
            return text, await self.runtime.guard(step.guardrail, dict(step.settings), text)
        if isinstance(step, BranchStep):
            value = await _evaluate(step.value, ctx, f"{where} value")
            key = value if isinstance(value, str) else orjson.dumps(value).decode()
            case = step.cases.get(key, step.default)
            if case is None:
                raise StepError(f"no case for the value {key!r} and no default (cases: {', '.join(step.cases)})")
            return {"value": key, "case": case.id}, await self._step(case, ctx, span)
        if isinstance(step, MapStep):
            return await self._map(step, ctx, span)
        if isinstance(step, ParallelStep):
            return None, await self._parallel(step, ctx, span)
        if isinstance(step, AgentStep):
            return await self._agent(step, ctx, parent)
        raise StepError(f"step type {step.type!r} cannot run here")  # pragma: no cover - every type is handled

    async def _map(self, step: MapStep, ctx: dict[str, Any], span: str) -> tuple[Any, list[Any]]:
        items = await _evaluate(step.over, ctx, f"step {step.id!r} over")
        if not isinstance(items, list | tuple):
            raise StepError(f"'over' gave {type(items).__name__}, not a list")
        if len(items) > step.max_items:
            raise StepError(f"'over' gave {len(items):,} items; the step allows at most {step.max_items:,}")
        gate = asyncio.Semaphore(step.concurrency)

        async def each(index: int, item: Any) -> Any:
            async with gate:
                return await self._step(
                    step.step, {**ctx, "item": item, "index": index}, span, f"{step.step.id}[{index}]"
                )

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(each(i, item)) for i, item in enumerate(items)]
        except* ChainFailed as failures:
            raise failures.exceptions[0] from None
        return {"items": len(items)}, [task.result() for task in tasks]

    async def _parallel(self, step: ParallelStep, ctx: dict[str, Any], span: str) -> dict[str, Any]:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {child.id: group.create_task(self._step(child, ctx, span)) for child in step.steps}
        except* ChainFailed as failures:
            raise failures.exceptions[0] from None
        return {sid: task.result() for sid, task in tasks.items()}

    # --- agents ---------------------------------------------------------------------------------------------

    async def _agent(self, step: AgentStep, ctx: dict[str, Any], parent: TraceParent) -> tuple[Any, str]:
        """Model → tool calls → results → model, until an answer without tool calls, a stop string, the turn
        limit or the budget."""
        tools = {name: self.runtime.tool(name) for name in step.tools}
        messages: list[dict[str, Any]] = []
        if step.instructions:
            messages.append({"role": "system", "content": await _text(step.instructions, ctx, f"step {step.id!r}")})
        messages.append({"role": "user", "content": await _text(step.input, ctx, f"step {step.id!r} input")})
        given = list(messages)
        tokens = cost = 0
        for turn in range(1, step.max_turns + 1):
            body: dict[str, Any] = {**step.params, "model": step.model, "messages": messages}
            if tools:
                body["tools"] = [info.definition for info in tools.values()]
                choice = step.tool_choice if turn == 1 else "auto"
                if choice in step.tools:
                    body["tool_choice"] = {"type": "function", "function": {"name": choice}}
                elif choice != "auto":
                    body["tool_choice"] = choice
            result = await self._chat(body, parent)
            tokens += result.prompt_tokens + result.completion_tokens
            cost += result.cost_micros
            await self.on_event(
                Event("agent_turn", step.id, {"turn": turn, "tool_calls": [_call_name(c) for c in result.tool_calls]})
            )
            if step.budget.tokens is not None and tokens > step.budget.tokens:
                raise StepError(f"the agent used {tokens:,} tokens, over its budget of {step.budget.tokens:,}")
            if step.budget.usd is not None and cost / 1e6 > step.budget.usd:
                raise StepError(f"the agent spent ${cost / 1e6:.6f}, over its budget of ${step.budget.usd:g}")
            if not result.tool_calls or any(s in result.content for s in step.stop):
                return given, result.content
            messages.append(
                result.message or {"role": "assistant", "content": result.content, "tool_calls": result.tool_calls}
            )
            for call in result.tool_calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": str(call.get("id", "")),
                        "content": await self._tool_call(step, tools, call, parent),
                    }
                )
        raise StepError(f"the agent made {step.max_turns} model calls without a final answer (max_turns)")

    async def _tool_call(
        self, step: AgentStep, tools: dict[str, ToolInfo], call: dict[str, Any], parent: TraceParent
    ) -> str:
        """Run one tool call the model asked for; what goes back to the model (errors included, as text)."""
        name = _call_name(call)
        started = utcnow()
        span_id = new_id("spn")
        raw = (call.get("function") or {}).get("arguments") or "{}"
        error: str | None = None
        result: Any = None
        arguments: Any = None
        try:
            arguments = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
            if not isinstance(arguments, dict):
                raise StepError("the arguments must be a JSON object")
            if name not in tools:
                raise StepError(f"there is no tool {name!r}; the tools are {', '.join(tools) or 'none'}")
            if tools[name].requires_approval:
                await self.on_event(Event("approval_requested", step.id, {"tool": name, "arguments": arguments}))
                approved, comment = await self.runtime.approve(step.id, name, arguments)
                await self.on_event(Event("approval_decided", step.id, {"tool": name, "approved": approved}))
                if not approved:
                    raise StepError(f"a person rejected this call{': ' + comment if comment else ''}")
            result = await self.runtime.call_tool(name, arguments, step.timeout)
        except orjson.JSONDecodeError:
            error = f"the arguments are not JSON: {str(raw)[:200]}"
        except StepError as exc:
            error = str(exc)
        except InvalidInput as exc:
            error = exc.message
        self.spans.append(
            _span(
                span_id,
                self.trace_id,
                parent.span_id,
                "tool",
                name,
                started,
                utcnow(),
                status="error" if error else "ok",
                error=error,
                input=arguments if arguments is not None else raw,
                output=result,
                attributes={"tool_call_id": call.get("id"), "step": step.id},
            )
        )
        if error is not None:
            return f"error: {error}"
        return result if isinstance(result, str) else orjson.dumps(result, default=str).decode()


# --- values -------------------------------------------------------------------------------------------------


def prompt_reference(ref: str) -> dict[str, Any]:
    """`name`, `name@label` or `name@3` (`name@v3`) as the gateway's prompt reference fields."""
    name, _, tag = ref.partition("@")
    if not tag:
        return {"name": name}
    number = tag[1:] if tag.startswith("v") else tag
    return {"name": name, "version": int(number)} if number.isdigit() else {"name": name, "label": tag}


# Templates and expressions run in worker threads, as the gateway renders prompt references: the sandbox bounds
# each to 2 s of work, and a member's chain must not hold the server's event loop for that long.


async def _text(source: str, ctx: dict[str, Any], where: str) -> str:
    return await asyncio.to_thread(template.render, source, ctx, where)


async def _evaluate(source: str, ctx: dict[str, Any], where: str) -> Any:
    return await asyncio.to_thread(template.evaluate, source, ctx, where)


async def _value(source: str, ctx: dict[str, Any], where: str) -> Any:
    """A template that is one `{{ expression }}` keeps the expression's type (a list stays a list); any other
    template renders to text."""
    whole = _WHOLE_EXPRESSION.match(source)
    if whole:
        return await _evaluate(whole.group("expr"), ctx, where)
    return await _text(source, ctx, where)


def _structured(step: LlmStep, content: str) -> Any:
    """The JSON value in a model's answer, checked against the step's output schema (`StepError` if it is
    not JSON or does not match: the attempt is retried)."""
    text = content.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        try:
            value = orjson.loads(text[start:]) if start >= 0 else None
        except orjson.JSONDecodeError:
            value = None
        if value is None:
            raise StepError(f"the model's answer is not JSON: {content[:200]!r}") from None
    errors = [e.message for e in compile_schema(step.output_schema or {}).iter_errors(value)]
    if errors:
        raise StepError(f"the model's answer does not match the output schema: {errors[0]}")
    return value


def _check_size(output: Any) -> None:
    try:
        size = len(orjson.dumps(output, default=str))
    except TypeError as exc:
        raise StepError(f"the output cannot be recorded as JSON: {exc}") from None
    if size > MAX_OUTPUT_BYTES:
        raise StepError(f"the output is {size:,} bytes; a step may produce at most {MAX_OUTPUT_BYTES:,}")


def _call_name(call: dict[str, Any]) -> str:
    function = call.get("function")
    return str(function.get("name", "")) if isinstance(function, dict) else ""


def _clip(value: Any) -> Any:
    """A value as kept on a span or sent in an event: JSON text over `MAX_SPAN_TEXT` characters is cut."""
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if len(text) <= MAX_SPAN_TEXT:
        return value
    return text[:MAX_SPAN_TEXT] + f"… [{len(text) - MAX_SPAN_TEXT:,} more characters]"


def _span(
    span_id: str,
    trace_id: str,
    parent: str | None,
    kind: str,
    name: str,
    started: datetime,
    ended: datetime,
    *,
    status: str,
    error: str | None,
    input: Any,
    output: Any,
    attributes: dict[str, Any],
) -> dict[str, Any]:
    def text(value: Any) -> str | None:
        if value is None:
            return None
        clipped = _clip(value)
        return clipped if isinstance(clipped, str) else orjson.dumps(clipped, default=str).decode()

    return {
        "id": span_id,
        "trace_id": trace_id,
        "parent_id": parent,
        "kind": kind,
        "name": name[:200],
        "status": status,
        "start_time": started,
        "end_time": ended,
        "ttft_ms": None,
        "model": None,
        "prompt_tokens": 0,  # a model call's own span (written by the gateway) owns its usage
        "completion_tokens": 0,
        "cost_micros": 0,
        "error": error,
        "prompt_version_id": None,
        "model_version_id": None,
        "dataset_version_id": None,
        "attributes": attributes,
        "input": text(input),
        "output": text(output),
    }


_KINDS = {"llm": "chain", "prompt": "chain", "retrieve": "retriever", "tool": "tool", "guardrail": "guardrail"}


def _step_span(
    span_id: str,
    trace_id: str,
    parent: str,
    step: Step,
    name: str,
    started: datetime,
    given: Any,
    output: Any,
    attempts: int,
    errors: list[str],
    failed: bool,
) -> dict[str, Any]:
    return _span(
        span_id,
        trace_id,
        parent,
        "agent" if step.type == "agent" else _KINDS.get(step.type, "chain"),
        name,
        started,
        utcnow(),
        status="error" if failed else "ok",
        error=errors[-1] if failed else None,
        input=given,
        output=output,
        attributes={"step": step.id, "type": step.type, "attempts": attempts, **({"errors": errors} if errors else {})},
    )


__all__ = [
    "ChainFailed",
    "ChatResult",
    "Event",
    "Run",
    "RunResult",
    "Runtime",
    "StepError",
    "ToolInfo",
    "prompt_reference",
]
