"""A chain version as data: a YAML (or Python-built) graph of typed steps, checked whole before anything runs.

```yaml
inputs:
  question: string
steps:
  - id: classify
    type: llm
    model: smollm2
    input: "Classify this request: {{ inputs.question }}"
    output_schema: {type: object, properties: {category: {type: string}}, required: [category]}
  - id: docs
    type: retrieve
    kb: help-center@prod
    query: "{{ inputs.question }}"
  - id: reply
    type: prompt
    prompt: support-reply@prod
    variables: {question: "{{ inputs.question }}", context: "{{ steps.docs | map(attribute='text') | join('\\n') }}"}
output: steps.reply
```

Strings in a step (`input`, `query`, `variables`, message contents, tool arguments) are sandboxed Jinja
templates and `value`, `over`, `expression` and `output` are sandboxed expressions (podium.prompts.template),
over `inputs` (the run's declared inputs), `steps` (`steps.<id>` is that step's output) and, inside a
`map`, `item` and `index`. A step runs once every step it reads (or lists in `needs`) has; `branch`, `map`,
`parallel` and a step's `fallback` hold their own nested steps, which may read the top-level steps their
container may.

`parse` turns YAML into a `ChainSpec` and `check` validates the graph: unknown step types, missing fields,
references to steps or inputs that do not exist, cycles, and type mismatches between steps (a `map` over a
step whose output is not a list, a field read from a step whose output schema has no such property, or from
a step whose output is text) are `InvalidInput` errors that name the step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import yaml
from jinja2 import nodes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from podium.chains import http_tools
from podium.chains.http_tools import HttpTool
from podium.core import yamlload
from podium.core.errors import InvalidInput, field_path
from podium.core.jsonschemas import compile_schema
from podium.gateway.guardrails import guardrail_class
from podium.prompts import template

MAX_YAML_BYTES = 256 * 1024
MAX_STEPS = 200  # steps in a chain, nested ones included
MAX_DEPTH = 8  # nesting of branch/map/parallel/fallback
MAX_TEMPLATE_CHARS = 20_000
MAX_TIMEOUT = 600.0
ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

StepId = Annotated[str, Field(pattern=ID_PATTERN)]
Template = Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)]

# What each step type produces, as far as it is known before a run: "text", "list", "object" or "any".
# An `llm` step with an output schema produces what the schema says.


class _Step(BaseModel):
    """Fields every step has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StepId
    description: str = Field("", max_length=2000)
    needs: list[StepId] = Field(default_factory=list, max_length=MAX_STEPS)
    timeout: float = Field(60.0, gt=0, le=MAX_TIMEOUT, description="seconds one attempt may take")
    retries: int = Field(0, ge=0, le=5, description="attempts after the first failure")
    fallback: Step | None = None  # run when every attempt failed; its output stands for the step's


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: Template


class PromptStep(_Step):
    """A prompt version (by reference, `name@label`) rendered with `variables` and sent to `model` (or the
    model the prompt version names)."""

    type: Literal["prompt"]
    prompt: str = Field(min_length=1, max_length=200)
    variables: dict[str, Template] = Field(default_factory=dict, max_length=100)
    model: str | None = Field(None, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict, max_length=50)


class LlmStep(_Step):
    """A gateway model or route called with `input` (a user message) or `messages`; with `output_schema`
    its answer is JSON checked against the schema (retried, then a failure)."""

    type: Literal["llm"]
    model: str = Field(min_length=1, max_length=200)
    input: Template | None = None
    messages: list[Message] | None = Field(None, min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict, max_length=50)
    output_schema: dict[str, Any] | None = None


class RetrieveStep(_Step):
    """The `k` best chunks of a knowledge base (`name@label`) for `query`: a list of hits."""

    type: Literal["retrieve"]
    kb: str = Field(min_length=1, max_length=200)
    query: Template
    k: int = Field(5, ge=1, le=100)
    mode: Literal["vector", "text", "hybrid"] = "hybrid"
    filter: dict[str, Any] | None = None


class ToolStep(_Step):
    """A registered tool called with `arguments` (each a template)."""

    type: Literal["tool"]
    tool: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Template] = Field(default_factory=dict, max_length=100)


class GuardrailStep(_Step):
    """`input` checked by a guardrail of the gateway's kinds (`regex_deny`, or one a plugin adds) with its
    `settings`: the text when it passes, a failure naming the guardrail when it does not."""

    type: Literal["guardrail"]
    guardrail: str = Field(min_length=1, max_length=100)
    settings: dict[str, Any] = Field(default_factory=dict, max_length=50)
    input: Template


class TransformStep(_Step):
    """The value of a sandboxed expression."""

    type: Literal["transform"]
    expression: Template


class BranchStep(_Step):
    """The step of the case `value` evaluates to (as a string), or `default`; its output. (Not `on`: YAML
    reads a bare `on:` key as the boolean true.)"""

    type: Literal["branch"]
    value: Template
    cases: dict[str, Step] = Field(min_length=1, max_length=50)
    default: Step | None = None


class MapStep(_Step):
    """`step` run once per element of the list `over` evaluates to (`item`, `index`), at most `concurrency`
    at a time; the list of outputs in order."""

    type: Literal["map"]
    over: Template
    step: Step
    concurrency: int = Field(8, ge=1, le=64)
    max_items: int = Field(1000, ge=1, le=10_000)


class ParallelStep(_Step):
    """`steps` run at the same time; an object of their outputs by id."""

    type: Literal["parallel"]
    steps: list[Step] = Field(min_length=1, max_length=50)


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(None, ge=1, le=10_000_000)
    usd: float | None = Field(None, gt=0, le=1000)


class AgentStep(_Step):
    """A model that calls `tools` (OpenAI tools protocol) until it answers without a tool call, `stop` appears
    in its answer, `max_turns` model calls are made, or the budget is spent."""

    type: Literal["agent"]
    model: str = Field(min_length=1, max_length=200)
    instructions: Template = ""
    input: Template
    tools: list[str] = Field(default_factory=list, max_length=50)
    max_turns: int = Field(8, ge=1, le=50)
    # the first model call's tool_choice: auto, required, none, or a tool's name; after the model has called
    # tools it goes back to auto (as the OpenAI Agents SDK resets it), so a forced call cannot loop
    tool_choice: str = Field("auto", min_length=1, max_length=200)
    budget: Budget = Field(default_factory=Budget)
    stop: list[str] = Field(default_factory=list, max_length=10)
    params: dict[str, Any] = Field(default_factory=dict, max_length=50)


Step = Annotated[
    PromptStep
    | LlmStep
    | RetrieveStep
    | ToolStep
    | GuardrailStep
    | TransformStep
    | BranchStep
    | MapStep
    | ParallelStep
    | AgentStep,
    Field(discriminator="type"),
]
STEP_TYPES = ("prompt", "llm", "retrieve", "tool", "guardrail", "transform", "branch", "map", "parallel", "agent")


class ChainSpec(BaseModel):
    """A chain version's content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field("", max_length=2000)
    inputs: dict[str, Any] = Field(default_factory=dict, max_length=100)
    tools: dict[str, HttpTool] = Field(default_factory=dict, max_length=50)  # the chain's own HTTP tools
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    output: Template | None = None  # an expression; the last top-level step's output by default

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("must map input names to types, e.g. {question: string}")
        return template.normalise_variables(value)


_MODELS: tuple[type[BaseModel], ...] = (
    _Step,
    PromptStep,
    LlmStep,
    RetrieveStep,
    ToolStep,
    GuardrailStep,
    TransformStep,
    BranchStep,
    MapStep,
    ParallelStep,
    AgentStep,
    ChainSpec,
)
for _model in _MODELS:  # `Step` refers to itself (fallbacks, cases, mapped and parallel steps)
    _model.model_rebuild()


# --- reading -----------------------------------------------------------------------------------------------


def parse(text: str | bytes) -> ChainSpec:
    """A chain from its YAML, checked (`check`); `InvalidInput` saying what is wrong and where."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            raise InvalidInput("a chain file must be UTF-8 text") from None
    if len(text.encode()) > MAX_YAML_BYTES:
        raise InvalidInput(f"a chain file may be at most {MAX_YAML_BYTES // 1024} KB")
    try:
        data = yamlload.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"the chain is not valid YAML{at}: {problem}") from None
    return load(data)


def load(data: Any) -> ChainSpec:
    """A chain from its parsed form (a dict, as YAML or JSON gives it), checked (`check`)."""
    if not isinstance(data, Mapping):
        raise InvalidInput("a chain must be a mapping with 'steps' (and optionally 'inputs', 'output')")
    _check_shape(data)
    try:
        spec = ChainSpec.model_validate(data)
    except ValidationError as exc:
        raise _named(exc, data) from None
    check(spec)
    return spec


def _check_shape(data: Mapping[str, Any]) -> None:
    """Unknown or missing step types, named by the step, before pydantic's less direct union errors."""

    def walk(step: Any, where: str, depth: int) -> None:
        if not isinstance(step, Mapping):
            raise InvalidInput(f"{where} must be a mapping with 'id' and 'type'")
        name = step.get("id", where)
        if depth > MAX_DEPTH:
            raise InvalidInput(f"step {name!r} is nested more than {MAX_DEPTH} levels deep")
        kind = step.get("type")
        if kind is None:
            raise InvalidInput(f"step {name!r} has no 'type' (one of {', '.join(STEP_TYPES)})")
        if kind not in STEP_TYPES:
            raise InvalidInput(f"step {name!r} has an unknown type {kind!r} (one of {', '.join(STEP_TYPES)})")
        for child, label in _raw_children(step):
            walk(child, f"{label} of step {name!r}", depth + 1)

    steps = data.get("steps")
    if not isinstance(steps, list):
        raise InvalidInput("a chain needs 'steps': a list of steps")
    for i, step in enumerate(steps):
        walk(step, f"step {i + 1}", 1)


def _raw_children(step: Mapping[str, Any]) -> Iterator[tuple[Any, str]]:
    if step.get("fallback") is not None:
        yield step["fallback"], "the fallback"
    kind = step.get("type")
    if kind == "branch":
        cases = step.get("cases")
        if isinstance(cases, Mapping):
            for value, case in cases.items():
                yield case, f"case {value!r}"
        if step.get("default") is not None:
            yield step["default"], "the default"
    elif kind == "map" and step.get("step") is not None:
        yield step["step"], "the step"
    elif kind == "parallel" and isinstance(step.get("steps"), list):
        for i, child in enumerate(step["steps"]):
            yield child, f"step {i + 1}"


def _named(exc: ValidationError, data: Mapping[str, Any]) -> InvalidInput:
    """The first error, located by step id rather than by list position where it can be."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    node: Any = data
    step_name = None
    rest: list[Any] = []
    for part in loc:
        found = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if found:
            node = node[part]
        else:
            rest.append(part)  # a discriminator tag ("llm") pydantic adds to the path
            continue
        if isinstance(node, Mapping) and "type" in node and "id" in node:
            step_name, rest = node["id"], []
        else:
            rest.append(part)
    fields = field_path(tuple(p for p in rest if p not in STEP_TYPES), "")
    where = f"step {step_name!r}" if step_name is not None else "the chain"
    if fields:
        where += f" field {fields!r}"
    return InvalidInput(f"{where}: {message}", details={"field": fields or None, "step": step_name})


# --- the graph ---------------------------------------------------------------------------------------------


def walk(steps: list[Step]) -> Iterator[Step]:
    """Every step, nested ones included, parents first."""
    for step in steps:
        yield step
        yield from walk(list(children(step)))


def children(step: Step) -> Iterator[Step]:
    """The steps a step holds: its fallback and, by type, its cases, mapped step or parallel steps."""
    if step.fallback is not None:
        yield step.fallback
    if isinstance(step, BranchStep):
        yield from step.cases.values()
    if isinstance(step, BranchStep) and step.default is not None:
        yield step.default
    if isinstance(step, MapStep):
        yield step.step
    if isinstance(step, ParallelStep):
        yield from step.steps


def sources(step: Step) -> Iterator[tuple[str, str, bool]]:
    """The step's own templates and expressions: (text, what it is, is_expression)."""
    if isinstance(step, PromptStep):
        for name, text in step.variables.items():
            yield text, f"variable {name!r}", False
    if isinstance(step, LlmStep):
        if step.input is not None:
            yield step.input, "input", False
        for i, message in enumerate(step.messages or []):
            yield message.content, f"message {i + 1}", False
    if isinstance(step, RetrieveStep):
        yield step.query, "query", False
    if isinstance(step, ToolStep):
        for name, text in step.arguments.items():
            yield text, f"argument {name!r}", False
    if isinstance(step, GuardrailStep | AgentStep):
        yield step.input, "input", False
    if isinstance(step, AgentStep) and step.instructions:
        yield step.instructions, "instructions", False
    if isinstance(step, TransformStep):
        yield step.expression, "expression", True
    if isinstance(step, BranchStep):
        yield step.value, "value", True
    if isinstance(step, MapStep):
        yield step.over, "over", True


def _tree(text: str, what: str, expression: bool) -> nodes.Node:
    return template.check_expression(text, what) if expression else template.tree(text, what)


def _paths(tree: nodes.Node) -> Iterator[tuple[str, ...]]:
    """Each dotted path read from a top-level name: `steps.classify.category` → ("steps", "classify",
    "category"); subscripts with constant keys count as dots, other subscripts end the path."""
    seen: set[int] = set()
    for node in _find(tree, (nodes.Getattr, nodes.Getitem)):
        if id(node) in seen:
            continue
        chain: list[str] = []
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr | nodes.Getitem):
            seen.add(id(current))
            if isinstance(current, nodes.Getattr):
                chain.append(current.attr)
            elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str):
                chain.append(current.arg.value)
            else:
                chain = []  # steps[x]: a key computed at run time
            current = current.node
        if isinstance(current, nodes.Name):
            yield (current.name, *reversed(chain))
    for name in _find(tree, (nodes.Name,)):
        yield (name.name,)


def _find(tree: nodes.Node, types: tuple[type[nodes.Node], ...]) -> Iterator[Any]:
    """The nodes of `types` in `tree`, the root included (jinja's `find_all` starts at its children)."""
    if isinstance(tree, types):
        yield tree
    yield from tree.find_all(types)


def reads(step: Step, *, deep: bool = True) -> set[str]:
    """The ids of the steps `step` reads through `steps.<id>` or lists in `needs` (with `deep`, those its
    nested steps read too)."""
    found = set(step.needs)
    for text, what, expression in sources(step):
        for path in _paths(_tree(text, what, expression)):
            if path[0] == "steps" and len(path) > 1:
                found.add(path[1])
    if deep:
        for child in children(step):
            found |= reads(child)
    return found


def output_kind(step: Step) -> tuple[str, dict[str, Any] | None]:
    """What a step produces, as far as is known before it runs: ("text" | "list" | "object" | "any", the JSON
    schema when one is declared)."""
    if isinstance(step, LlmStep) and step.output_schema is not None:
        kind = step.output_schema.get("type")
        mapped = {"array": "list", "object": "object", "string": "text"}.get(kind if isinstance(kind, str) else "")
        return mapped or "any", step.output_schema
    if isinstance(step, PromptStep | LlmStep | GuardrailStep | AgentStep):
        return "text", None
    if isinstance(step, RetrieveStep | MapStep):
        return "list", None
    if isinstance(step, ParallelStep):
        return "object", None
    return "any", None


def check(spec: ChainSpec) -> None:
    """Validate a chain's graph (see the module's docstring); `InvalidInput` naming the step."""
    everything = list(walk(list(spec.steps)))
    if len(everything) > MAX_STEPS:
        raise InvalidInput(f"a chain may hold at most {MAX_STEPS} steps, nested ones included")
    by_id: dict[str, Step] = {}
    for step in everything:
        if step.id in by_id:
            raise InvalidInput(f"step id {step.id!r} is used twice; every step needs its own id")
        if step.id in ("inputs", "steps", "item", "index"):
            raise InvalidInput(f"step id {step.id!r} is a reserved name")
        if step.id in DICT_METHODS:  # `steps.items` would be the mapping's method, not the step's output
            names = ", ".join(sorted(DICT_METHODS))
            raise InvalidInput(f"step id {step.id!r} is the name of a mapping method ({names}); choose another")
        by_id[step.id] = step
    for name, tool in spec.tools.items():
        if not TOOL_NAME.match(name):
            raise InvalidInput(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter")
        http_tools.check(name, tool, f"tool {name!r}")
    top = {step.id for step in spec.steps}
    declared = set(spec.inputs)
    clash = sorted(declared & DICT_METHODS)
    if clash:
        raise InvalidInput(
            f"input {clash[0]!r} is the name of a mapping method ({', '.join(sorted(DICT_METHODS))}); choose another"
        )
    for step in spec.steps:
        _check_step(step, top, declared, by_id, in_map=False)
    if spec.output is not None:
        _check_references(
            template.check_expression(spec.output, "the chain's output"),
            "the chain's output",
            top,
            declared,
            by_id,
            in_map=False,
        )
    _check_acyclic(spec)


def _check_step(step: Step, visible: set[str], declared: set[str], by_id: Mapping[str, Step], *, in_map: bool) -> None:
    where = f"step {step.id!r}"
    for need in step.needs:
        if need not in visible:
            raise InvalidInput(f"{where} needs {need!r}, which is not a top-level step of this chain")
        if need == step.id:
            raise InvalidInput(f"{where} needs itself")
    for text, what, expression in sources(step):
        label = f"{where} {what}"
        _check_names(text, label, expression, in_map=in_map)
        _check_references(_tree(text, label, expression), label, visible, declared, by_id, in_map=in_map)
    if isinstance(step, MapStep):
        _check_map_over(step, by_id)
    if isinstance(step, GuardrailStep):
        try:
            guardrail_class(step.guardrail)(dict(step.settings))
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}") from None
        except ValueError as exc:
            raise InvalidInput(f"{where} settings: {exc}") from None
    if isinstance(step, AgentStep) and step.tool_choice not in ("auto", "required", "none", *step.tools):
        raise InvalidInput(
            f"{where} tool_choice {step.tool_choice!r} must be auto, required, none or one of its tools"
            f" ({', '.join(step.tools) or 'it has none'})"
        )
    if isinstance(step, LlmStep):
        if (step.input is None) == (step.messages is None):
            raise InvalidInput(f"{where} needs either 'input' or 'messages'")
        if step.output_schema is not None:
            _check_schema(step)
    for child in children(step):
        _check_step(child, visible, declared, by_id, in_map=in_map or isinstance(step, MapStep))


def _check_names(text: str, where: str, expression: bool, *, in_map: bool) -> None:
    """Every name read must be `inputs`, `steps`, (in a map) `item` or `index`, a sandbox global such as
    `range`, or a name the template itself sets."""
    if expression:
        tree = template.check_expression(text, where)
        used = {node.name for node in _find(tree, (nodes.Name,)) if node.ctx == "load"}
    else:
        used = template.check(text, where)
    allowed = {"inputs", "steps", *template.ENV.globals, *(("item", "index") if in_map else ())}
    unknown = sorted(used - allowed)
    if unknown:
        inside = "" if in_map else " (item and index exist only inside a map step)"
        raise InvalidInput(f"{where} reads {', '.join(unknown)}: a step can read inputs.<name>, steps.<id>{inside}")


def _check_references(
    tree: nodes.Node,
    where: str,
    visible: set[str],
    declared: set[str],
    by_id: Mapping[str, Step],
    *,
    in_map: bool,
) -> None:
    for path in _paths(tree):
        root = path[0]
        if root == "inputs" and len(path) > 1 and path[1] not in declared:
            listed = ", ".join(sorted(declared)) or "none are declared"
            raise InvalidInput(f"{where} reads inputs.{path[1]}, which is not a declared input ({listed})")
        if root in ("item", "index") and not in_map:
            raise InvalidInput(f"{where} reads {root!r}, which exists only inside a map step")
        if root != "steps" or len(path) < 2:
            continue
        target = path[1]
        if target not in by_id:
            raise InvalidInput(f"{where} reads steps.{target}, which is not a step of this chain")
        if target not in visible:
            raise InvalidInput(
                f"{where} reads steps.{target}, a nested step; read the step that holds it (or a top-level step)"
            )
        if len(path) > 2:
            _check_field(where, by_id[target], path[2])


def _check_field(where: str, source: Step, field: str) -> None:
    """`steps.<id>.<field>`: the source must produce an object, and one with that property if it says which."""
    kind, schema = output_kind(source)
    if kind in ("text", "list"):
        hint = " (a list: index it, or map over it)" if kind == "list" else ""
        raise InvalidInput(
            f"{where} reads steps.{source.id}.{field}, but step {source.id!r} produces {kind}{hint}, not an object"
        )
    if schema is not None and isinstance(schema.get("properties"), Mapping):
        props = schema["properties"]
        if field not in props and schema.get("additionalProperties") is not True and field not in _MAPPING_METHODS:
            raise InvalidInput(
                f"{where} reads steps.{source.id}.{field}, but the output schema of step {source.id!r} has no"
                f" property {field!r} (it has {', '.join(sorted(props)) or 'none'})"
            )


_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})
# names `inputs.<name>` and `steps.<id>` cannot take: the sandbox reads a dict's attribute before its key
DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))


def _check_map_over(step: MapStep, by_id: Mapping[str, Step]) -> None:
    """`over: steps.<id>` (the whole output of a step) must be a list when the step's kind is known."""
    expr = template.check_expression(step.over, f"step {step.id!r} over")
    if isinstance(expr, nodes.Getattr) and isinstance(expr.node, nodes.Name) and expr.node.name == "steps":
        source = by_id.get(expr.attr)
        if source is not None:
            kind, _ = output_kind(source)
            if kind in ("text", "object"):
                raise InvalidInput(
                    f"step {step.id!r} maps over steps.{source.id}, but step {source.id!r} produces {kind}, not a list"
                )


def _check_schema(step: LlmStep) -> None:
    try:
        compile_schema(step.output_schema or {})
    except ValueError as exc:
        raise InvalidInput(f"step {step.id!r} has an invalid output_schema: {exc}") from None


def _check_acyclic(spec: ChainSpec) -> None:
    """Top-level steps must form a DAG; a cycle is named step by step."""
    edges = {step.id: sorted(reads(step) & {s.id for s in spec.steps}) for step in spec.steps}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    trail: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        trail.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt]
                raise InvalidInput(f"steps {' → '.join(cycle)} form a cycle; a step cannot wait for its own output")
            if state.get(nxt) is None:
                visit(nxt)
        trail.pop()
        state[node] = 2

    for step in spec.steps:
        if state.get(step.id) is None:
            visit(step.id)


def order(spec: ChainSpec) -> list[list[str]]:
    """The top-level steps in waves: each wave's steps read only steps of earlier waves (they may run at the
    same time)."""
    ids = [step.id for step in spec.steps]
    deps = {step.id: reads(step) & set(ids) for step in spec.steps}
    done: set[str] = set()
    waves: list[list[str]] = []
    while len(done) < len(ids):
        wave = [i for i in ids if i not in done and deps[i] <= done]
        waves.append(wave)
        done |= set(wave)
    return waves


__all__ = [
    "STEP_TYPES",
    "AgentStep",
    "BranchStep",
    "ChainSpec",
    "GuardrailStep",
    "LlmStep",
    "MapStep",
    "ParallelStep",
    "PromptStep",
    "RetrieveStep",
    "Step",
    "ToolStep",
    "TransformStep",
    "check",
    "children",
    "load",
    "order",
    "output_kind",
    "parse",
    "reads",
    "walk",
]
