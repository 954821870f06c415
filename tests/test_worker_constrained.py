"""Constrained decoding in the model worker: JSON mode, JSON-schema output, tool calls, logit_bias and the
penalties, through the worker's HTTP API with the official openai SDK.

The model is a tiny Llama with random weights and SmolLM2's real tokenizer: left to itself it writes noise,
so every well-formed answer below is the constraint's doing, not the model's."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest

from podium.models.worker.app import WorkerState
from podium.models.worker.derived import DerivedCache
from podium.models.worker.engine import Engine
from podium.models.worker.loader import convert_gguf, load_causal_lm
from podium.models.worker.toolcalls import CallStream, parse_calls, repeated_call, with_tools_in_prompt

from .models_fixtures import MODEL_CACHE, build_tiny_llama, smollm_gguf
from .serving import worker_http

PERSON = {
    "type": "object",
    "properties": {
        "colour": {"enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 99},
        "ok": {"type": "boolean"},
        "tag": {"type": "string", "maxLength": 6},
    },
    "required": ["colour", "count", "ok", "tag"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "order_status",
            "description": "Look an order up",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "maxLength": 5}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "refund",
            "description": "Refund an order",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"enum": ["A-17", "B-02"]},
                    "amount": {"type": "integer", "minimum": 1, "maximum": 500},
                },
                "required": ["order_id", "amount"],
            },
        },
    },
]
ASK = [{"role": "user", "content": "Where is my order A-17?"}]


def _noise_model(folder: Path) -> Path:
    """A two-layer Llama with random weights behind SmolLM2's tokenizer and chat template."""
    gguf = smollm_gguf()
    converted = convert_gguf(gguf, DerivedCache(MODEL_CACHE), hashlib.sha256(gguf.read_bytes()).hexdigest())
    return build_tiny_llama(folder, 7, tokenizer_from=converted, vocab_size=49152, context=2048, eos=2, bos=1)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, WorkerState]]:
    folder = _noise_model(tmp_path_factory.mktemp("noise"))
    lm = load_causal_lm(folder, fmt="hf", sha256="noise", cache_root=folder.parent, dtype="float32")
    state = WorkerState(model_name="noise", version_id="mdv_noise", task="chat", lm=lm, started=time.time())
    state.engine = Engine(lm, max_batch=8, max_queue=16)
    state.engine.start()
    with worker_http(state) as url:
        yield url, state


@pytest.fixture(scope="module")
def client(worker: tuple[str, WorkerState]) -> openai.OpenAI:
    return openai.OpenAI(base_url=worker[0] + "/v1", api_key="none", max_retries=0)


def _chat(client: openai.OpenAI, **kw: Any) -> Any:
    args: dict[str, Any] = {"model": "noise", "messages": ASK, "max_tokens": 120, "temperature": 1.0}
    args.update(kw)
    return client.chat.completions.create(**args)


def test_json_schema_output_validates_at_every_seed(client: openai.OpenAI) -> None:
    validator = jsonschema_rs.validator_for(PERSON)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    seen = set()
    for seed in range(4):
        r = _chat(client, response_format=fmt, seed=seed, n=2)
        for choice in r.choices:
            assert choice.finish_reason == "stop", choice
            data = json.loads(choice.message.content or "")
            validator.validate(data)
            seen.add(json.dumps(data, sort_keys=True))
    assert len(seen) > 2  # sampling still varies inside the schema


def test_unconstrained_noise_is_not_json(client: openai.OpenAI) -> None:
    """The control: without a format the same model does not write JSON, so the tests above test the constraint."""
    r = _chat(client, seed=0, max_tokens=30)
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.choices[0].message.content or "")


def test_json_object_mode_stream_and_whole_agree(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"response_format": {"type": "json_object"}, "temperature": 0, "max_tokens": 200}
    whole = _chat(client, logit_bias={"23597": 8}, **kw)  # nudge the noise towards closing the object: '"}'
    chunks = list(_chat(client, logit_bias={"23597": 8}, stream=True, **kw))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    text = whole.choices[0].message.content or ""
    assert streamed == text
    assert text.startswith("{")
    if whole.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_required_tool_calls_have_valid_arguments(client: openai.OpenAI) -> None:
    schemas = {t["function"]["name"]: jsonschema_rs.validator_for(t["function"]["parameters"]) for t in TOOLS}
    names = set()
    for seed in range(5):
        r = _chat(client, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, seed=seed)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("call_")
        schemas[call.function.name].validate(json.loads(call.function.arguments))
        names.add(call.function.name)
    assert names <= set(schemas)


def test_a_named_tool_is_the_one_called(client: openai.OpenAI) -> None:
    for seed in range(3):
        r = _chat(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "refund"}}, seed=seed)
        calls = r.choices[0].message.tool_calls or []
        assert [c.function.name for c in calls] == ["refund"]
        args = json.loads(calls[0].function.arguments)
        assert args["order_id"] in ("A-17", "B-02") and 1 <= args["amount"] <= 500


def test_parallel_calls_are_separate_and_streamed_as_tool_call_deltas(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"tools": TOOLS, "tool_choice": "required", "seed": 3, "max_tokens": 200}
    whole = _chat(client, **kw)
    calls = whole.choices[0].message.tool_calls or []
    assert calls
    chunks = list(_chat(client, stream=True, **kw))
    deltas = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert [d.index for d in deltas] == list(range(len(deltas)))
    assert [(d.function.name, d.function.arguments) for d in deltas if d.function] == [
        (c.function.name, c.function.arguments) for c in calls
    ][: len(deltas)]
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_tool_choice_none_and_auto_leave_text_free(client: openai.OpenAI) -> None:
    r = _chat(client, tools=TOOLS, tool_choice="none", seed=1, max_tokens=20)
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content
    r = _chat(client, tools=TOOLS, tool_choice="auto", seed=1, max_tokens=60)
    message = r.choices[0].message
    for call in message.tool_calls or []:  # noise rarely opens a call; any it makes is well formed
        assert call.function.name in ("order_status", "refund")
        json.loads(call.function.arguments)


def test_logit_bias_and_penalties_change_what_is_sampled(client: openai.OpenAI) -> None:
    forced = _chat(client, temperature=0, max_tokens=5, logit_bias={"45": 100}, logprobs=True)
    assert [t.token for t in forced.choices[0].logprobs.content] == ["="] * 5  # token 45 is "="
    assert all(t.logprob > -0.01 for t in forced.choices[0].logprobs.content)
    banned = _chat(client, temperature=0, max_tokens=5, logit_bias={"45": -100}, logprobs=True)
    assert "=" not in [t.token for t in banned.choices[0].logprobs.content]
    plain = _chat(client, temperature=0, max_tokens=40, logprobs=True)
    penalised = _chat(client, temperature=0, max_tokens=40, logprobs=True, frequency_penalty=2, presence_penalty=2)
    repeats = [
        len(x) - len(set(x)) for x in ([t.token for t in r.choices[0].logprobs.content] for r in (plain, penalised))
    ]
    assert repeats[1] < repeats[0]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": TOOLS + TOOLS[:1]}, "tools[2].function.name"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "json_object"}, "tools": TOOLS}, "response_format"),
        ({"logit_bias": {"99999999": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
    ],
)
def test_what_cannot_be_honoured_is_refused_naming_the_parameter(
    worker: tuple[str, WorkerState], patch: dict[str, Any], param: str
) -> None:
    body = {"model": "noise", "messages": ASK, "max_tokens": 4, **patch}
    r = httpx.post(worker[0] + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param, error
    assert error["message"]


@pytest.mark.parametrize(
    ("patch", "param"),
    [({"suffix": " the end"}, "suffix"), ({"best_of": 3}, "best_of"), ({"logit_bias": {"5": "up"}}, "logit_bias")],
)
def test_text_completions_refuse_what_they_cannot_honour(
    worker: tuple[str, WorkerState], patch: dict[str, Any], param: str
) -> None:
    body = {"model": "noise", "prompt": "Once upon", "max_tokens": 4, **patch}
    r = httpx.post(worker[0] + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_history_with_calls_and_results_reaches_a_template_without_tools(worker: tuple[str, WorkerState]) -> None:
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "order_status", "arguments": '{"order_id": "A-17"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "in transit"}'},
    ]
    r = httpx.post(worker[0] + "/tokenize", json={"messages": messages, "tools": TOOLS}, timeout=30)
    assert r.status_code == 200, r.text
    text = worker[1].lm.tokenizer.decode(r.json()["tokens"])
    assert '"name": "refund"' in text  # the tools, described in the system turn
    assert '<tool_call>\n{"name": "order_status", "arguments": {"order_id": "A-17"}}\n</tool_call>' in text
    assert '<tool_response>\n{"status": "in transit"}\n</tool_response>' in text


def test_call_stream_holds_back_a_split_opening_tag() -> None:
    stream = CallStream()
    text = 'Let me look. <tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\nDone <tool'
    pieces: list[Any] = []
    for i in range(0, len(text), 3):
        pieces += stream.push(text[i : i + 3])
    pieces += stream.finish()
    content = "".join(p for p in pieces if isinstance(p, str))
    calls = [p for p in pieces if isinstance(p, dict)]
    assert content == "Let me look. Done <tool"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [("f", {"a": 1})]
    assert parse_calls("<tool_call>not json</tool_call>") == ("<tool_call>not json</tool_call>", [])


def test_tools_prompt_joins_the_callers_system_message() -> None:
    out = with_tools_in_prompt([{"role": "system", "content": "Be brief."}, *ASK], [TOOLS[0]["function"]])
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.\n\nYou can call tools.")
    assert out[1] == ASK[0]


def test_a_repeated_call_ends_the_answer_before_it() -> None:
    one = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'
    two = '<tool_call>\n{"name": "f", "arguments": {"a": 2}}\n</tool_call>'
    assert repeated_call(one) is None
    assert repeated_call(f"{one}\n{two}") is None
    text = f"{one}\n{two}\n{one}"
    cut = repeated_call(text)
    assert cut is not None and text[:cut].rstrip() == f"{one}\n{two}"
    assert repeated_call(f"{one}\n{one[:-3]}") is None  # not closed yet
