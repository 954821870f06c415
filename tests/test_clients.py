"""Client libraries nobody here wrote, used as their users use them, against the gateway serving the built-in
SmolLM2 and MiniLM (issue 21): langchain-openai, llama-index's OpenAILike, the litellm SDK and the openai SDK.

One `podium serve` (SQLite) for the whole session. Token ids for embeddings are OpenAI cl100k_base ids (what
langchain sends); the vocabulary file comes from the copy litellm ships, as a client's tiktoken cache would."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from podium.models.worker.cl100k import URL, Vocabulary, VocabularyMissing

from .fakes import FakeServer, start_fake_openai
from .models_fixtures import MODEL_CACHE
from .serving import ServedPodium, start_serving

pytestmark = pytest.mark.slow
CHAT = "smollm2-135m-instruct"
EMBED = "minilm-l6-v2"
QUESTION = "What is the capital of France?"
TEXTS = ["A cat sits on the mat.", "Stock markets fell sharply on Monday.", "Héllo wörld: naïve café 🎉"]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its price list


def tiktoken_dir() -> Path:
    """The folder of tiktoken files litellm ships (cl100k_base among them, under tiktoken's cache name)."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPodium]:
    """`podium serve` with the built-in models, shared by every test of the session that asks for it."""
    env = {"PODIUM_MODEL_CACHE_DIR": str(MODEL_CACHE), "TIKTOKEN_CACHE_DIR": str(tiktoken_dir())}
    s = start_serving(tmp_path_factory.mktemp("clients"), env=env)
    yield s
    s.stop()


@pytest.fixture
def tiktoken_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's tiktoken finds cl100k_base offline (langchain tokenises with it)."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_dir()))


@pytest.fixture
def client(served: ServedPodium) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def sse_chunks(served: ServedPodium, body: dict[str, Any], cache: str | None = None) -> list[dict[str, Any]]:
    """The JSON chunks of a streamed chat completion, as sent on the wire (`cache`: the x-podium-cache expected)."""
    r = httpx.post(
        served.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {served.key}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert cache is None or r.headers.get("x-podium-cache") == cache, r.headers
    lines = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(line) for line in lines[:-1]]


# --- langchain-openai -------------------------------------------------------------------------------------


def test_langchain_chat_and_stream(served: ServedPodium) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=CHAT, base_url=served.url + "/v1", api_key=served.key, temperature=0, max_tokens=16, max_retries=0
    )
    reply = llm.invoke(QUESTION)
    assert isinstance(reply.content, str) and reply.content
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] > 0
    assert 0 < reply.usage_metadata["output_tokens"] <= 16
    assert reply.response_metadata["finish_reason"] in ("stop", "length")

    chunks = list(llm.stream(QUESTION))  # a custom base_url: langchain does not ask for usage
    assert "".join(str(c.content) for c in chunks) == reply.content
    assert all(c.usage_metadata is None for c in chunks)

    counted = list(llm.stream(QUESTION, stream_usage=True))
    assert "".join(str(c.content) for c in counted) == reply.content
    usage = [c.usage_metadata for c in counted if c.usage_metadata]
    assert len(usage) == 1 and usage[0]["output_tokens"] == reply.usage_metadata["output_tokens"]


@pytest.mark.usefixtures("tiktoken_cache")
def test_langchain_embeddings_send_token_ids_by_default(served: ServedPodium) -> None:
    from langchain_openai import OpenAIEmbeddings

    default = OpenAIEmbeddings(model=EMBED, base_url=served.url + "/v1", api_key=served.key, max_retries=0)
    _, sent, _, _ = default._tokenize(TEXTS, 1000)  # what it puts in `input`: tiktoken ids, not text
    assert all(isinstance(t, list) and all(isinstance(i, int) for i in t) for t in sent)
    as_text = OpenAIEmbeddings(
        model=EMBED,
        base_url=served.url + "/v1",
        api_key=served.key,
        max_retries=0,
        check_embedding_ctx_length=False,
    )
    from_ids, from_text = default.embed_documents(TEXTS), as_text.embed_documents(TEXTS)
    assert [len(v) for v in from_ids] == [384, 384, 384]
    for a, b in zip(from_ids, from_text, strict=True):
        assert cosine(a, b) > 0.9999  # the ids were read back into the same text
    assert cosine(from_ids[0], from_ids[1]) < 0.9
    assert cosine(default.embed_query(TEXTS[0]), from_text[0]) > 0.9999


# --- llama-index ------------------------------------------------------------------------------------------


def test_llama_index_openai_like_chat_and_complete(served: ServedPodium) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    common: dict[str, Any] = {
        "model": CHAT,
        "api_base": served.url + "/v1",
        "api_key": served.key,
        "context_window": 8192,
        "max_tokens": 16,
        "temperature": 0,
        "max_retries": 0,
    }
    chat = OpenAILike(is_chat_model=True, **common)
    answer = chat.chat([ChatMessage(role="user", content=QUESTION)])
    assert answer.message.content and "Paris" in answer.message.content
    assert chat.complete(QUESTION).text == answer.message.content  # through /v1/chat/completions

    text = OpenAILike(is_chat_model=False, **common)  # through /v1/completions
    completed = text.complete("The capital of France is")
    assert completed.text.strip()


# --- litellm ----------------------------------------------------------------------------------------------


def litellm_args(served: ServedPodium, model: str) -> dict[str, Any]:
    return {"model": f"openai/{model}", "api_base": served.url + "/v1", "api_key": served.key}


def test_litellm_completion_stream_and_embedding(served: ServedPodium) -> None:
    import litellm

    args = litellm_args(served, CHAT)
    messages = [{"role": "user", "content": QUESTION}]
    reply = litellm.completion(messages=messages, max_tokens=16, temperature=0, **args)
    text = reply.choices[0].message.content
    assert text and "Paris" in text
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 16

    stream = litellm.completion(
        messages=messages, max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True}, **args
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    usage = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert usage and usage[-1].completion_tokens == reply.usage.completion_tokens

    embedded = litellm.embedding(input=TEXTS, **litellm_args(served, EMBED))
    vectors = [d["embedding"] for d in embedded.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert cosine(vectors[0], vectors[1]) < 0.9


@pytest.mark.parametrize("max_tokens", [None, 9000])
def test_litellm_sees_context_overflow_as_context_window_exceeded(served: ServedPodium, max_tokens: int | None) -> None:
    import litellm

    words = 9000 if max_tokens is None else 100
    messages = [{"role": "user", "content": "word " * words}]
    extra = {} if max_tokens is None else {"max_tokens": max_tokens}
    with pytest.raises(litellm.ContextWindowExceededError) as caught:
        litellm.completion(messages=messages, **extra, **litellm_args(served, CHAT))
    assert "This model's maximum context length is 8192 tokens" in str(caught.value)


def test_openai_sdk_context_overflow_in_openai_words(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "word " * 9000}])
    err = caught.value
    assert err.code == "context_length_exceeded" and err.param == "messages"
    assert isinstance(err.body, dict)
    message = err.body["message"]
    assert message.startswith("This model's maximum context length is 8192 tokens. However, your messages resulted in")
    assert message.endswith("tokens. Please reduce the length of the messages.")

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=9000)
    err = caught.value
    assert err.code == "context_length_exceeded" and err.param == "max_tokens"
    assert isinstance(err.body, dict)
    assert "However, you requested" in err.body["message"] and "9000 in the completion" in err.body["message"]

    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=CHAT, prompt="word " * 9000, max_tokens=5)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "prompt"
    assert isinstance(caught.value.body, dict)
    assert "However, your prompt resulted in" in caught.value.body["message"]


# --- token arrays on /v1/embeddings -----------------------------------------------------------------------


@pytest.mark.usefixtures("tiktoken_cache")
def test_embeddings_take_token_arrays(client: openai.OpenAI) -> None:
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base")
    ids = [enc.encode(t) for t in TEXTS]
    as_text = client.embeddings.create(model=EMBED, input=TEXTS)
    nested = client.embeddings.create(model=EMBED, input=ids)
    flat = client.embeddings.create(model=EMBED, input=ids[2], encoding_format="float")
    for a, b in zip(as_text.data, nested.data, strict=True):
        assert cosine(a.embedding, b.embedding) > 0.9999
    assert len(flat.data) == 1 and cosine(flat.data[0].embedding, as_text.data[2].embedding) > 0.9999
    assert nested.usage.prompt_tokens == as_text.usage.prompt_tokens  # the model's own tokens of the text


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ([[1, 2, 3], [4, 100256]], "input[1][1] is 100256, not a token of OpenAI's cl100k_base vocabulary"),
        ([100277], "input[0] is 100277, not a token of OpenAI's cl100k_base vocabulary"),
        ([[5] * 8193], "input[0] has 8193 token ids; at most 8192 per input"),
        ([5] * 8193, "'input' has 8193 token ids; at most 8192 per input"),
        ([[5] * 8000] * 40, "'input' has 320000 token ids; at most 300000 per request"),
        (["text"] * 2049, "'input' takes at most 2048 items per request; it has 2049"),
        ([[1, 2], "text"], "'input' must be a string, or a non-empty array of strings, of token ids"),
        ([[]], "'input' must be a string, or a non-empty array of strings, of token ids"),
    ],
)
def test_bad_token_arrays_name_the_input(client: openai.OpenAI, given: Any, needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBED, input=given)
    assert caught.value.param == "input"
    assert isinstance(caught.value.body, dict) and needle in caught.value.body["message"]


def test_token_arrays_pass_through_to_a_remote_model(served: ServedPodium, client: openai.OpenAI) -> None:
    fake: FakeServer = start_fake_openai()
    try:
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.key}"}) as c:
            r = c.post(
                "/api/models/remote",
                json={
                    "name": "remote-embedder",
                    "provider": "openai",
                    "base_url": fake.url + "/v1",
                    "upstream_model": "text-embedding-3-small",
                    "task": "embedding",
                },
            )
            assert r.status_code in (200, 201), r.text
        ids = [[9906, 1917], [200000, 3, 7]]  # the upstream's own vocabulary: not Podium's to judge
        answer = client.embeddings.create(model="remote-embedder", input=ids, encoding_format="float")
        assert [d.embedding[0] for d in answer.data] == [2.0, 3.0]
        assert fake.requests[-1]["input"] == ids
    finally:
        fake.stop()


def test_missing_or_wrong_vocabulary_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    cache = tmp_path / "tiktoken"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # not the machine's shared data-gym-cache
    (cache / "cl100k_base.tiktoken").write_bytes(b"SGVsbG8= 0\n")  # not the real file: its sha256 differs
    with pytest.raises(VocabularyMissing) as caught:
        Vocabulary().load()
    message = str(caught.value)
    assert str(cache) in message and "TIKTOKEN_CACHE_DIR" in message
    assert "check_embedding_ctx_length=False" in message

    real = tiktoken_dir() / hashlib.sha1(URL.encode(), usedforsecurity=False).hexdigest()  # tiktoken's name
    (cache / "cl100k_base.tiktoken").write_bytes(real.read_bytes())
    assert Vocabulary().decode([9906, 1917, 0]) == "Hello world!"


# --- smaller: stream usage, `user`, wording ---------------------------------------------------------------


def test_usage_is_streamed_only_when_asked(served: ServedPodium, client: openai.OpenAI) -> None:
    body = {"model": CHAT, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, "stream": True}
    plain = sse_chunks(served, body)
    assert plain and all("usage" not in c for c in plain), plain[-2:]
    assert plain[-1]["choices"][0]["finish_reason"] in ("stop", "length")

    asked = sse_chunks(served, {**body, "stream_options": {"include_usage": True}})
    assert all("usage" not in c for c in asked[:-1])
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] > 0

    chunks = list(
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": QUESTION}], max_tokens=8, stream=True
        )
    )
    assert all(c.usage is None for c in chunks)


def test_cached_streams_send_usage_only_when_asked(served: ServedPodium) -> None:
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.key}"}, timeout=120) as c:
        route = {"name": "cached-smol", "deployments": [{"provider": "model", "model": CHAT}], "cache": {"exact": True}}
        assert c.post("/api/routes", json=route).status_code == 201
        body = {"model": "cached-smol", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8}
        assert c.post("/v1/chat/completions", json={**body, "temperature": 0}).status_code == 200  # stored
    replayed = sse_chunks(served, {**body, "temperature": 0, "stream": True}, cache="hit")
    assert replayed and all("usage" not in chunk for chunk in replayed)
    with_usage = {**body, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    asked = sse_chunks(served, with_usage, cache="hit")
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] > 0
    assert all("usage" not in chunk for chunk in asked[:-1])


def test_user_is_bounded(client: openai.OpenAI) -> None:
    """OpenAI refuses a `user` over 64 characters (litellm maps its message); Podium takes up to 200 (its traces'
    column), then answers a 400 naming `user`.
    (litellm 1.110 does not send `user` to an `openai/` model at all.)"""
    ok = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2, user="u" * 200
    )
    assert ok.choices
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2, user="u" * 100_000
        )
    assert caught.value.param == "user"
    assert (
        isinstance(caught.value.body, dict) and "'user' must be at most 200 characters" in caught.value.body["message"]
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBED, input="hi", user="u" * 201)
    assert caught.value.param == "user"


def test_wrong_task_wording(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "wrong_model_task" and caught.value.param == "model"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == f"model '{EMBED}' is an embedding model; this endpoint needs a chat model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=CHAT, input=[[1, 2, 3]])
    assert caught.value.param == "model" and isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == f"model '{CHAT}' is a chat model; this endpoint needs an embedding model"


# --- tools and structured output on the built-in SmolLM2 (constrained decoding in the local engine) ---------


ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "order_status",
        "description": "Look an order up",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}


def order_status(order_id: str) -> str:
    """Look an order up by its id (ids look like A-17)."""
    return f"order {order_id} is in transit"


def _langchain(served: ServedPodium, **kw: Any) -> Any:
    from langchain_openai import ChatOpenAI

    args: dict[str, Any] = {"temperature": 0, "max_tokens": 80, "max_retries": 0}
    args.update(kw)
    return ChatOpenAI(model=CHAT, base_url=served.url + "/v1", api_key=served.key, **args)


def test_langchain_bind_tools_returns_tool_calls(served: ServedPodium) -> None:
    from langchain_core.messages import AIMessageChunk

    llm = _langchain(served)
    for choice in ("order_status", "any"):
        message = llm.bind_tools([order_status], tool_choice=choice).invoke("Where is my order A-17?")
        assert message.tool_calls, message
        call = message.tool_calls[0]
        assert call["name"] == "order_status" and isinstance(call["args"]["order_id"], str) and call["id"]
    merged: AIMessageChunk | None = None
    for chunk in llm.bind_tools([order_status], tool_choice="any", parallel_tool_calls=False).stream("Where is A-17?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and [c["name"] for c in merged.tool_calls] == ["order_status"]
    assert merged.response_metadata.get("finish_reason") == "tool_calls"
    free = llm.bind_tools([order_status]).invoke("Say hello.")  # auto: text, or calls of the right shape
    assert free.content or all(c["name"] == "order_status" for c in free.tool_calls)


def test_langchain_with_structured_output_returns_parsed_objects(served: ServedPodium) -> None:
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    llm = _langchain(served)
    for method in ("json_schema", "function_calling"):
        person = llm.with_structured_output(Person, method=method).invoke("Ann is 31 years old. Who is she?")
        assert isinstance(person, Person), (method, person)


def test_openai_sdk_tools_and_json_schema_on_the_built_in_model(client: openai.OpenAI) -> None:
    tool = ORDER_TOOL
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Where is my order A-17?"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "order_status"  # type: ignore[union-attr]
    assert isinstance(orjson.loads(call.function.arguments)["order_id"], str)  # type: ignore[union-attr]
    # parallel calls allowed and no max_tokens: the small model would repeat its call until 2048 tokens; a
    # repeated call ends the answer instead
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Where is my order A-17?"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
        temperature=0,
    )
    calls = [(c.function.name, c.function.arguments) for c in r.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    assert calls and len(set(calls)) == len(calls) and r.choices[0].finish_reason == "tool_calls"
    assert r.usage is not None and r.usage.completion_tokens < 500
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40}},
        "required": ["city", "country"],
    }
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Name the capital of France and its country."}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}},
        temperature=0,
        max_tokens=60,
    )
    place = orjson.loads(r.choices[0].message.content or "")
    assert set(place) == {"city", "country"} and all(isinstance(v, str) for v in place.values())


def test_litellm_and_llama_index_get_tool_calls(served: ServedPodium) -> None:
    import litellm
    from llama_index.core.tools import FunctionTool
    from llama_index.llms.openai_like import OpenAILike

    tool = ORDER_TOOL
    r = litellm.completion(
        model=f"openai/{CHAT}",
        api_base=served.url + "/v1",
        api_key=served.key,
        messages=[{"role": "user", "content": "Where is my order A-17?"}],
        tools=[tool],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    calls = r.choices[0].message.tool_calls  # type: ignore[union-attr]
    assert calls and calls[0].function.name == "order_status"
    llm = OpenAILike(
        model=CHAT,
        api_base=served.url + "/v1",
        api_key=served.key,
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=8192,
        max_tokens=60,
        temperature=0,
    )
    response = llm.chat_with_tools(
        [FunctionTool.from_defaults(fn=order_status)], user_msg="Where is my order A-17?", tool_required=True
    )
    selections = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    assert selections[0].tool_name == "order_status" and isinstance(selections[0].tool_kwargs["order_id"], str)
