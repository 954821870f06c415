"""Chain versions as data (`podium.chains.spec`): every step type parses, the graph is ordered in waves, and
each kind of bad chain (YAML, unknown types, missing or unknown fields, unknown steps and inputs, cycles,
type mismatches between steps, unsafe expressions) is refused with a message naming the step."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from podium.chains import spec
from podium.core.errors import InvalidInput

CHAIN = """
description: the seeds' customer-service chain
inputs:
  question: string
  tier: {type: string, default: free}
steps:
  - id: classify
    type: llm
    model: smollm2
    input: "Classify this request: {{ inputs.question }}"
    output_schema:
      type: object
      properties: {category: {type: string, enum: [billing, technical, other]}}
      required: [category]
    retries: 2
    timeout: 30
  - id: docs
    type: retrieve
    kb: help-center@prod
    query: "{{ inputs.question }}"
    k: 3
  - id: route
    type: branch
    value: steps.classify.category
    cases:
      billing: {id: billing_note, type: transform, expression: "'billing: ' ~ inputs.tier"}
      technical:
        id: tech_lookup
        type: tool
        tool: lookup_ticket
        arguments: {query: "{{ inputs.question }}"}
        fallback: {id: tech_default, type: transform, expression: "'no ticket'"}
    default: {id: other_note, type: transform, expression: "steps.docs[0].text"}
  - id: summaries
    type: map
    over: steps.docs
    concurrency: 4
    step: {id: summarise, type: transform, expression: "index ~ ': ' ~ item.text[:80]"}
  - id: both
    type: parallel
    steps:
      - id: safe
        type: guardrail
        guardrail: regex_deny
        settings: {patterns: [secret]}
        input: "{{ inputs.question }}"
      - id: helper
        type: agent
        model: smollm2
        instructions: "You help support staff."
        input: "{{ inputs.question }}"
        tools: [lookup_ticket, refund_status]
        max_turns: 4
        budget: {tokens: 2000, usd: 0.01}
  - id: reply
    type: prompt
    prompt: support-reply@prod
    variables:
      question: "{{ inputs.question }}"
      context: "{% for d in steps.docs %}{{ d.text }}\\n{% endfor %}"
      note: "{{ steps.route }} {{ steps.summaries | join(' ') }} {{ steps.both.safe }}"
output: "{'answer': steps.reply, 'category': steps.classify.category}"
"""


def refused(message: str) -> Any:
    """`pytest.raises(InvalidInput)` whose message contains `message` word for word."""
    return pytest.raises(InvalidInput, match=re.escape(message))


def parsed(text: str = CHAIN) -> spec.ChainSpec:
    return spec.parse(text)


def edit(change: Any) -> str:
    """CHAIN with `change(data)` applied to its parsed form, dumped back to YAML."""
    data = yaml.safe_load(CHAIN)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def step(data: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in data["steps"] if s["id"] == step_id)
    return found


def test_every_step_type_parses_and_the_graph_is_ordered_in_waves() -> None:
    chain = parsed()
    types = {s.type for s in spec.walk(list(chain.steps))}
    assert types == set(spec.STEP_TYPES)
    assert chain.inputs["tier"] == {"type": "string", "default": "free"}
    # route reads classify and (in its default) docs; summaries reads docs; reply reads four steps
    assert spec.order(chain) == [["classify", "docs", "both"], ["route", "summaries"], ["reply"]]
    route = chain.steps[2]
    assert isinstance(route, spec.BranchStep) and spec.reads(route) == {"classify", "docs"}
    assert spec.reads(route, deep=False) == {"classify"}
    tech = route.cases["technical"]
    assert isinstance(tech, spec.ToolStep) and tech.fallback is not None and tech.fallback.id == "tech_default"
    assert spec.output_kind(chain.steps[0])[0] == "object"
    assert spec.output_kind(chain.steps[1])[0] == "list"
    assert spec.output_kind(chain.steps[-1])[0] == "text"
    # the same chain built in Python is the same value
    assert spec.load(yaml.safe_load(CHAIN)) == chain


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [", "not valid YAML at line 1"),
        ("- just\n- a list", "a chain must be a mapping"),
        ("inputs: {}", "a chain needs 'steps'"),
        ("steps: []", "'steps'"),
        ("steps:\n  - {id: a, type: retreive, kb: x, query: q}", "step 'a' has an unknown type 'retreive'"),
        ("steps:\n  - {id: a, kb: x}", "step 'a' has no 'type'"),
        ("steps:\n  - {id: a, type: retrieve, query: q}", "step 'a' field 'kb': Field required"),
        ("steps:\n  - {id: a, type: retrieve, kb: x, query: q, k: 0}", "step 'a' field 'k'"),
        ("steps:\n  - {id: a, type: transform, expression: '1', colour: red}", "step 'a' field 'colour'"),
        ("steps:\n  - {id: 1a, type: transform, expression: '1'}", "field 'id'"),
        ("steps:\n  - {id: a, type: transform, expression: '1', timeout: 9999}", "step 'a' field 'timeout'"),
        ("steps:\n  - {id: a, type: llm, model: m}", "step 'a' needs either 'input' or 'messages'"),
        (
            "steps:\n  - {id: a, type: agent, model: m, input: q, tools: [t1], tool_choice: t2}",
            "step 'a' tool_choice 't2' must be auto, required, none or one of its tools (t1)",
        ),
        ("steps:\n  - {id: a, type: transform, expression: 'steps.b'}", "reads steps.b, which is not a step"),
        ("steps:\n  - {id: a, type: transform, expression: 'inputs.q'}", "reads inputs.q, which is not a declared"),
        ("steps:\n  - {id: a, type: transform, expression: 'foo + 1'}", "step 'a' expression reads foo"),
        ("steps:\n  - {id: a, type: transform, expression: 'item'}", "exist only inside a map step"),
        ("steps:\n  - {id: a, type: transform, expression: '1 +'}", "expression syntax error in step 'a'"),
        ("steps:\n  - {id: a, type: transform, expression: 'x.__class__'}", "names starting with '_' are private"),
        ("steps:\n  - {id: a, type: transform, expression: '1', needs: [b]}", "step 'a' needs 'b'"),
        ("steps:\n  - {id: inputs, type: transform, expression: '1'}", "'inputs' is a reserved name"),
        ("steps:\n  - {id: items, type: transform, expression: '1'}", "step id 'items' is the name of a mapping"),
        ("inputs: {keys: string}\nsteps:\n  - {id: a, type: transform, expression: '1'}", "input 'keys' is"),
        ("steps:\n  - {id: a, type: transform, expression: 'steps.a'}", "steps a → a form a cycle"),
        ("steps:\n  - {id: a, type: transform, expression: '1'}\noutput: steps.zz", "chain's output reads steps.zz"),
    ],
)
def test_bad_chains_are_refused_naming_the_step(text: str, message: str) -> None:
    with refused(message):
        spec.parse(text)


def test_graph_errors_name_the_steps() -> None:
    def cycle(data: dict[str, Any]) -> None:
        step(data, "docs")["query"] = "{{ steps.reply }}"

    with refused("steps docs → reply → docs form a cycle"):
        parsed(edit(cycle))

    def duplicate(data: dict[str, Any]) -> None:
        step(data, "reply")["id"] = "summarise"  # the id of a nested step

    with refused("step id 'summarise' is used twice"):
        parsed(edit(duplicate))

    def nested_read(data: dict[str, Any]) -> None:
        step(data, "reply")["variables"]["note"] = "{{ steps.billing_note }}"

    with refused("step 'reply' variable 'note' reads steps.billing_note, a nested step"):
        parsed(edit(nested_read))

    def deep(data: dict[str, Any]) -> None:
        inner: dict[str, Any] = {"id": "x0", "type": "transform", "expression": "1"}
        for i in range(1, 10):
            inner = {"id": f"x{i}", "type": "parallel", "steps": [inner]}
        data["steps"].append(inner)

    with refused("nested more than 8 levels deep"):
        parsed(edit(deep))


def test_type_mismatches_between_steps_are_refused() -> None:
    def unknown_property(data: dict[str, Any]) -> None:
        step(data, "route")["value"] = "steps.classify.categry"

    with refused(
        "step 'route' value reads steps.classify.categry, but the output schema of step 'classify' has no"
        " property 'categry' (it has category)",
    ):
        parsed(edit(unknown_property))

    def field_of_text(data: dict[str, Any]) -> None:
        data["output"] = "steps.reply.answer"

    with refused("reads steps.reply.answer, but step 'reply' produces text, not an object"):
        parsed(edit(field_of_text))

    def field_of_list(data: dict[str, Any]) -> None:
        step(data, "reply")["variables"]["note"] = "{{ steps.docs.text }}"

    with refused("step 'docs' produces list (a list: index it, or map over it)"):
        parsed(edit(field_of_list))

    def map_over_text(data: dict[str, Any]) -> None:
        step(data, "summaries")["over"] = "steps.classify"
        step(data, "classify").pop("output_schema")  # now it answers text
        step(data, "route")["value"] = "inputs.tier"
        data.pop("output")

    with refused("step 'summaries' maps over steps.classify, but step 'classify' produces text, not a list"):
        parsed(edit(map_over_text))

    def bad_schema(data: dict[str, Any]) -> None:
        step(data, "classify")["output_schema"] = {"type": "objekt"}

    with refused("step 'classify' has an invalid output_schema"):
        parsed(edit(bad_schema))

    def bad_default(data: dict[str, Any]) -> None:
        data["inputs"]["tier"] = {"type": "integer", "default": "free"}

    with refused("tier"):
        parsed(edit(bad_default))


def test_sizes_are_bounded() -> None:
    with refused("at most 256 KB"):
        spec.parse("description: " + "x" * (300 * 1024))
    many = {"steps": [{"id": f"s{i}", "type": "transform", "expression": "1"} for i in range(201)]}
    with refused("'steps'"):
        spec.load(many)
    with refused("UTF-8"):
        spec.parse(b"\xff\xfe")


def test_expressions_evaluate_in_the_prompts_sandbox() -> None:
    from podium.prompts.template import evaluate

    values = {"steps": {"docs": [{"text": "a"}, {"text": "b"}]}, "inputs": {"q": "hi"}}
    assert evaluate("steps.docs | map(attribute='text') | join(',')", values) == "a,b"
    assert evaluate("{'n': steps.docs | length, 'q': inputs.q | upper}", values) == {"n": 2, "q": "HI"}
    with refused("unsafe operation refused in step 'x': repeating a sequence"):
        evaluate("'x' * 10000000", values, "step 'x'")
    with refused("step 'x': 'dict object' has no attribute 'nope'"):
        evaluate("inputs.nope", values, "step 'x'")
    with refused("evaluating step 'x' failed"):
        evaluate("1 / 0", values, "step 'x'")
    with refused("expression syntax error in step 'x'"):
        evaluate("1 }}{% include 'x' %}{{ 1", values, "step 'x'")
    with refused("step 'x': 'dict object' has no attribute 'gone'"):
        evaluate("[1, {'a': inputs.gone}]", values, "step 'x'")


def test_schemas_are_compiled_offline() -> None:
    """A `$ref` to a URL in a user's schema is refused, never fetched by the server."""
    remote = {"$ref": "http://169.254.169.254/latest/meta-data"}
    data = yaml.safe_load(CHAIN)
    step(data, "classify")["output_schema"] = remote
    with refused("step 'classify' has an invalid output_schema"):
        spec.load(data)
    data = {"tools": {"t": {"type": "http", "url": "http://example.com/x", "parameters": {"type": "object", **remote}}}}
    data["steps"] = [{"id": "a", "type": "tool", "tool": "t"}]
    with refused("tool 't': parameters is not a valid JSON Schema"):
        spec.load(data)
