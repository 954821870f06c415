"""Constrained-decoding libraries compared on the built-in SmolLM2-135M-Instruct tokenizer (issue 21, item 3).

Contenders (all installed in .venv): xgrammar, lm-format-enforcer, outlines-core. Four constraints: JSON mode
(any object), a flat schema, a nested schema, and a tool call (anyOf over three tools, each `{"name": const,
"arguments": {...}}`). For each library and constraint it measures:

- compile time: the tokenizer preparation (once per model), the grammar/index for one schema cold, and warm
  (the same schema again: xgrammar caches compiled grammars; the others have no cache of their own);
- the cost per token of computing the allowed-token bitmask and advancing the state (p50/p95), walking
  token by token along valid documents (each tokenized with the model's tokenizer), and along documents
  sampled from the masks (random allowed tokens, fixed seeds, biased towards closing tokens so most finish,
  until the grammar accepts end-of-sequence or 300 tokens);
- soundness: every finished sampled document must parse and validate against its schema (jsonschema-rs);
  completeness: every valid document must be accepted token by token, end-of-sequence included;
- the floor: one decode step of the model on Podium's fast path (FastLlama, int8 as served), batch 1 and 16,
  so the mask cost reads as a fraction of a step.

    .venv/bin/python bench/constrain.py [--samples 6] [--max-tokens 300] [--record]

The model comes through Podium's own code (the pinned GGUF of the built-in model, converted once into the
per-user derived cache), so this runs on a fresh machine. `--record` appends the tables to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import numpy as np
import torch

from podium.core.config import Settings
from podium.models.builtin import BUILTINS, verify
from podium.models.worker.derived import DerivedCache
from podium.models.worker.engine import make_backend
from podium.models.worker.loader import convert_gguf, load_causal_lm

LIBRARIES = ("xgrammar", "lm-format-enforcer", "outlines-core")
CLOSERS = b'"}]'  # sampled tokens lean towards these so that strings, objects and arrays end

# --- the constraints ----------------------------------------------------------------------------------------

JSON_MODE: dict[str, Any] = {"type": "object"}

FLAT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "role": {"enum": ["admin", "editor", "viewer"]},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "role", "active"],
    "additionalProperties": False,
}

NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer", "minimum": 1},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "address": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "zip": {"type": "string"},
                    },
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "address"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "price": {"type": "number", "minimum": 0},
                },
                "required": ["sku", "quantity", "price"],
                "additionalProperties": False,
            },
        },
        "discount": {"type": "number", "minimum": 0, "maximum": 1},
        "gift": {"type": "boolean"},
    },
    "required": ["order_id", "customer", "items"],
    "additionalProperties": False,
}


def _tool(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": name},
            "arguments": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


TOOL_CALL: dict[str, Any] = {
    "anyOf": [
        _tool(
            "get_weather",
            {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            ["city"],
        ),
        _tool(
            "search_web",
            {"query": {"type": "string"}, "max_results": {"type": "integer", "minimum": 1, "maximum": 10}},
            ["query"],
        ),
        _tool(
            "send_email",
            {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
            ["to", "subject", "body"],
        ),
    ]
}

# valid documents, walked token by token (json.dumps's default separators: ", " and ": ")
DOCUMENTS: dict[str, list[Any]] = {
    "json mode": [
        {"answer": "Paris", "confidence": 0.93},
        {"title": "Notes", "tags": ["a", "b"], "meta": {"pages": 12, "draft": False, "owner": None}},
        {"steps": [{"n": 1, "text": "Boil water"}, {"n": 2, "text": "Add the pasta, stir"}], "time": 11},
        {"user": {"profile": {"links": [{"url": "https://example.com", "primary": True}]}}},  # 4 levels deep
    ],
    "flat": [
        {"name": "Ada Lovelace", "age": 36, "role": "admin", "active": True},
        {"name": "Bob", "age": 7, "role": "viewer", "active": False},
        {"name": "Émilie du Châtelet", "age": 42, "role": "editor", "active": True},
    ],
    "nested": [
        {
            "order_id": 1042,
            "customer": {"name": "Ada", "address": {"city": "London", "zip": "NW1 6XE"}},
            "items": [{"sku": "PEN-01", "quantity": 3, "price": 1.5}, {"sku": "INK", "quantity": 1, "price": 7}],
            "discount": 0.1,
        },
        {
            "order_id": 7,
            "customer": {"name": "Grace Hopper", "address": {"city": "Arlington"}},
            "items": [{"sku": "BOOK-COBOL", "quantity": 2, "price": 39.99}],
            "gift": True,
        },
        {
            "order_id": 99,
            "customer": {"name": "Linus", "address": {"city": "Helsinki", "zip": "00100"}},
            "items": [
                {"sku": "A", "quantity": 99, "price": 0},
                {"sku": "B", "quantity": 1, "price": 0.5},
                {"sku": "C", "quantity": 12, "price": 1e3},
            ],
        },
    ],
    "tool call": [
        {"name": "get_weather", "arguments": {"city": "Lyon", "unit": "celsius"}},
        {"name": "search_web", "arguments": {"query": "constrained decoding on CPU", "max_results": 5}},
        {"name": "send_email", "arguments": {"to": "ops@example.com", "subject": "Hi", "body": "Done.\nBye"}},
    ],
}

SCHEMAS: dict[str, dict[str, Any]] = {"json mode": JSON_MODE, "flat": FLAT, "nested": NESTED, "tool call": TOOL_CALL}


# --- the libraries, behind one interface ---------------------------------------------------------------------


class Contender:
    """`setup` prepares the tokenizer once; `compile` builds what one schema needs; `start` a sequence's state;
    `fill` returns the int32 bitmask of allowed tokens (bit i of word i // 32); `advance` accepts a token."""

    name = ""

    def setup(self, tokenizer: Any, vocab: int, eos: int, token_bytes: list[bytes | None]) -> None:
        raise NotImplementedError

    def compile(self, kind: str, schema: dict[str, Any]) -> Any:
        raise NotImplementedError

    def start(self, compiled: Any) -> Any:
        raise NotImplementedError

    def fill(self, state: Any) -> torch.Tensor:
        raise NotImplementedError

    def advance(self, state: Any, token: int) -> None:
        raise NotImplementedError

    def warm_compile(self, kind: str, schema: dict[str, Any]) -> Any | None:
        """The same schema compiled again, if the library caches (None: no cache of its own)."""
        return None


class XGrammar(Contender):
    name = "xgrammar"

    def setup(self, tokenizer: Any, vocab: int, eos: int, token_bytes: list[bytes | None]) -> None:
        import xgrammar as xg

        self.xg = xg
        self.info = xg.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=[eos])
        self.vocab = vocab

    def _compile(self, compiler: Any, kind: str, schema: dict[str, Any]) -> Any:
        # any_whitespace=False: json.dumps's layout (", ", ": "), as a small model should not wander in blanks;
        # JSON mode needs strict_mode=False, else {"type": "object"} without properties allows only {}
        return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=kind != "json mode")

    def compile(self, kind: str, schema: dict[str, Any]) -> Any:
        self.compiler = self.xg.GrammarCompiler(self.info, max_threads=os.cpu_count() or 1, cache_enabled=True)
        return self._compile(self.compiler, kind, schema)

    def warm_compile(self, kind: str, schema: dict[str, Any]) -> Any:
        return self._compile(self.compiler, kind, schema)

    def start(self, compiled: Any) -> Any:
        return self.xg.GrammarMatcher(compiled), self.xg.allocate_token_bitmask(1, self.vocab)

    def fill(self, state: Any) -> torch.Tensor:
        matcher, bitmask = state
        matcher.fill_next_token_bitmask(bitmask, 0)
        return bitmask[0]

    def advance(self, state: Any, token: int) -> None:
        if not state[0].accept_token(token):
            raise ValueError(f"token {token} refused")


class FormatEnforcer(Contender):
    name = "lm-format-enforcer"

    def setup(self, tokenizer: Any, vocab: int, eos: int, token_bytes: list[bytes | None]) -> None:
        from lmformatenforcer import TokenEnforcerTokenizerData

        # what lmformatenforcer.integrations.transformers.build_token_enforcer_tokenizer_data does: that module
        # does not import under transformers 5 (it imports PreTrainedTokenizerBase from a module that moved)
        special = set(tokenizer.all_special_ids)
        zero = tokenizer.encode("0", add_special_tokens=False)[-1]
        regular = []
        for token_id in range(vocab):
            if token_id in special:
                continue
            after_zero = tokenizer.decode([zero, token_id])[1:]
            regular.append((token_id, after_zero, len(after_zero) > len(tokenizer.decode([token_id]))))

        def decode(tokens: list[int]) -> str:
            return tokenizer.decode(tokens).rstrip("\ufffd")

        self.data = TokenEnforcerTokenizerData(regular, decode, eos, True, vocab)

    def compile(self, kind: str, schema: dict[str, Any]) -> Any:
        from lmformatenforcer import JsonSchemaParser

        return JsonSchemaParser(schema)

    def start(self, compiled: Any) -> Any:
        from lmformatenforcer import TokenEnforcer

        # the enforcer keys its states by the whole token sequence so far (no prompt here)
        return TokenEnforcer(self.data, compiled), []

    def fill(self, state: Any) -> torch.Tensor:
        enforcer, tokens = state
        return enforcer.get_allowed_tokens(tokens).allowed_tokens

    def advance(self, state: Any, token: int) -> None:
        state[1].append(token)  # the parser moves on in the next get_allowed_tokens


class OutlinesCore(Contender):
    name = "outlines-core"

    def setup(self, tokenizer: Any, vocab: int, eos: int, token_bytes: list[bytes | None]) -> None:
        from outlines_core import Vocabulary

        by_bytes: dict[bytes, list[int]] = {}
        for token_id, raw in enumerate(token_bytes):
            if raw is not None and token_id != eos:
                by_bytes.setdefault(raw, []).append(token_id)
        self.vocabulary = Vocabulary(eos, by_bytes)
        self.vocab = vocab

    def compile(self, kind: str, schema: dict[str, Any]) -> Any:
        from outlines_core import Index
        from outlines_core.json_schema import build_regex_from_schema

        # a regular expression: JSON mode is an object nested to a fixed depth, not any object
        return Index(build_regex_from_schema(json.dumps(schema)), self.vocabulary)

    def start(self, compiled: Any) -> Any:
        from outlines_core import Guide

        return Guide(compiled), torch.zeros((self.vocab + 31) // 32, dtype=torch.int32)

    def fill(self, state: Any) -> torch.Tensor:
        guide, bitmask = state
        guide.write_mask_into(bitmask.data_ptr(), bitmask.numel(), 4)
        return bitmask

    def advance(self, state: Any, token: int) -> None:
        state[0].advance(token, return_tokens=False)


CONTENDERS: dict[str, Callable[[], Contender]] = {
    "xgrammar": XGrammar,
    "lm-format-enforcer": FormatEnforcer,
    "outlines-core": OutlinesCore,
}


# --- measuring ---------------------------------------------------------------------------------------------


def allowed_ids(bitmask: torch.Tensor, vocab: int) -> np.ndarray:
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), bitorder="little")
    return np.flatnonzero(bits[:vocab])


def is_allowed(bitmask: torch.Tensor, token: int) -> bool:
    return bool((int(bitmask[token >> 5]) >> (token & 31)) & 1)


@dataclass
class Row:
    library: str
    constraint: str
    compile_cold: float = 0.0
    compile_warm: float | None = None
    first_mask: list[float] = field(default_factory=list)
    walk: list[float] = field(default_factory=list)  # seconds per token: mask + advance
    sampled: list[float] = field(default_factory=list)
    docs_accepted: int = 0
    docs: int = 0
    refusals: list[str] = field(default_factory=list)
    finished: int = 0
    lengths: list[int] = field(default_factory=list)  # tokens of each finished sample
    unfinished: int = 0
    dead_ends: int = 0
    invalid: list[str] = field(default_factory=list)
    error: str = ""


def walk(lib: Contender, compiled: Any, ids: list[int], eos: int, row: Row) -> bool:
    """Step along a valid document's tokens; True if every token and then end-of-sequence was allowed."""
    state = lib.start(compiled)
    for i, token in enumerate([*ids, eos]):
        started = time.perf_counter()
        mask = lib.fill(state)
        if not is_allowed(mask, token):
            row.walk.append(time.perf_counter() - started)
            return False
        if token == eos:
            row.walk.append(time.perf_counter() - started)
            return True
        lib.advance(state, token)
        took = time.perf_counter() - started
        (row.first_mask if i == 0 else row.walk).append(took)
    return True


def sample(
    lib: Contender, compiled: Any, seed: int, vocab: int, eos: int, closer: np.ndarray, max_tokens: int, row: Row
) -> list[int] | None:
    """Random allowed tokens until end-of-sequence is allowed (taken) or max_tokens; None if unfinished."""
    rng = np.random.default_rng(seed)
    state = lib.start(compiled)
    out: list[int] = []
    for _ in range(max_tokens):
        started = time.perf_counter()
        mask = lib.fill(state)
        took = time.perf_counter() - started
        allowed = allowed_ids(mask, vocab)
        if eos in allowed:
            row.sampled.append(took)
            return out
        if len(allowed) == 0:
            row.dead_ends += 1
            return None
        pool = allowed
        if rng.random() < 0.5:
            closing = allowed[closer[allowed]]
            pool = closing if len(closing) else allowed
        token = int(rng.choice(pool))
        started = time.perf_counter()
        lib.advance(state, token)
        row.sampled.append(took + time.perf_counter() - started)
        out.append(token)
    return None


def run_library(
    name: str,
    tokenizer: Any,
    vocab: int,
    eos: int,
    token_bytes: list[bytes | None],
    samples: int,
    max_tokens: int,
) -> tuple[float, list[Row]]:
    lib = CONTENDERS[name]()
    started = time.perf_counter()
    lib.setup(tokenizer, vocab, eos, token_bytes)
    setup_seconds = time.perf_counter() - started
    closer = np.array([raw is not None and any(c in raw for c in CLOSERS) for raw in token_bytes])
    rows = []
    for kind, schema in SCHEMAS.items():
        row = Row(name, kind)
        rows.append(row)
        validator = jsonschema_rs.validator_for(schema)
        try:
            started = time.perf_counter()
            compiled = lib.compile(kind, schema)
            row.compile_cold = time.perf_counter() - started
            started = time.perf_counter()
            if lib.warm_compile(kind, schema) is not None:
                row.compile_warm = time.perf_counter() - started
            for doc in DOCUMENTS[kind]:
                text = json.dumps(doc, ensure_ascii=False)
                row.docs += 1
                if walk(lib, compiled, tokenizer.encode(text, add_special_tokens=False), eos, row):
                    row.docs_accepted += 1
                else:
                    row.refusals.append(text)
            for seed in range(samples):
                ids = sample(lib, compiled, seed, vocab, eos, closer, max_tokens, row)
                if ids is None:
                    row.unfinished += 1
                    continue
                row.finished += 1
                row.lengths.append(len(ids))
                text = tokenizer.decode(ids)
                try:
                    errors = [e.message for e in validator.iter_errors(json.loads(text))]
                except ValueError as exc:
                    errors = [f"not JSON: {exc}"]
                if errors:
                    row.invalid.append(f"{errors[0][:100]} in {text!r}")
        except Exception as exc:  # a library that cannot take a schema is a result, not a crash
            row.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        print(f"{name:20} {kind:10} {summary(row)}", file=sys.stderr)
    return setup_seconds, rows


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(row: Row) -> str:
    return (
        f"compile {row.compile_cold * 1e3:.1f} ms, walk p50 {pct(row.walk, 0.5) * 1e6:.0f} us"
        f" p95 {pct(row.walk, 0.95) * 1e6:.0f} us, docs {row.docs_accepted}/{row.docs},"
        f" sampled p50 {pct(row.sampled, 0.5) * 1e6:.0f} us, finished {row.finished} unfinished {row.unfinished}"
        f" invalid {len(row.invalid)} {row.error}"
    )


def xgrammar_batch(tokenizer: Any, vocab: int, eos: int, batch: int = 16) -> float:
    """Median seconds of one batched step with xgrammar's BatchGrammarMatcher: fill 16 masks (its own threads)
    and accept 16 tokens, 16 sequences walking the nested documents."""
    import xgrammar as xg

    info = xg.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=[eos])
    compiled = xg.GrammarCompiler(info).compile_json_schema(json.dumps(NESTED), any_whitespace=False)
    docs = [tokenizer.encode(json.dumps(d), add_special_tokens=False) for d in DOCUMENTS["nested"]]
    seqs = [docs[i % len(docs)] for i in range(batch)]
    matchers = [xg.GrammarMatcher(compiled) for _ in range(batch)]
    runner = xg.BatchGrammarMatcher(max_threads=os.cpu_count() or 1)
    bitmask = xg.allocate_token_bitmask(batch, vocab)
    times = []
    for step in range(min(len(s) for s in seqs)):
        started = time.perf_counter()
        runner.batch_fill_next_token_bitmask(matchers, bitmask)
        accepted = xg.BatchGrammarMatcher.batch_accept_token(matchers, [s[step] for s in seqs])
        times.append(time.perf_counter() - started)
        assert all(accepted)
    return statistics.median(times)


def decode_floor(folder: Path, sha: str, cache: DerivedCache, repeat: int = 60) -> dict[int, tuple[float, float]]:
    """(fastest, median) seconds of one decode step on the engine's fast path (int8, as served) at batch 1
    and 16, with a 64-token context in every slot. Batch 1 and 16 steps alternate, so both see the same
    moments of a shared machine; the fastest is the floor when other work competes for the cores."""
    lm = load_causal_lm(folder, fmt="hf", sha256=sha, cache_root=cache, dtype="int8")
    backend = make_backend(lm, max_slots=16, cache=cache)
    prompt = lm.tokenizer.encode("Answer in JSON. " * 16)[:64]
    for slot in range(16):
        backend.prefill(prompt, slot)
    times: dict[int, list[float]] = {1: [], 16: []}
    for step in range(repeat + 3):
        for batch in (1, 16):
            tokens = torch.full((batch,), prompt[-1], dtype=torch.long)
            positions = torch.full((batch,), len(prompt) + step, dtype=torch.long)
            started = time.perf_counter()
            backend.decode(tokens, positions)
            if step >= 3:
                times[batch].append(time.perf_counter() - started)
    return {batch: (min(t), statistics.median(t)) for batch, t in times.items()}


def byte_tokens(tokenizer: Any, vocab: int) -> list[bytes | None]:
    """Each token's bytes (GPT-2 byte-level alphabet undone); None for special tokens."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = visible[:]
    extra = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            codes.append(256 + extra)
            extra += 1
    decoder = {chr(c): b for b, c in zip(visible, codes, strict=True)}
    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    pieces = tokenizer.convert_ids_to_tokens(list(range(vocab)))
    return [None if i in special else bytes(decoder[ch] for ch in piece) for i, piece in enumerate(pieces)]


def model_folder() -> tuple[Path, str, DerivedCache]:
    """The built-in model's converted folder, made from its pinned GGUF through the per-user derived cache."""
    builtin = next(b for b in BUILTINS if b.name == "smollm2-135m-instruct")
    dist = md.distribution(builtin.package)
    verify(builtin, dist)
    gguf = Path(str(dist.locate_file(builtin.weights[0])))
    sha = builtin.weights[1]
    cache = DerivedCache(Settings().effective_model_cache_dir, fallback=Path(tempfile.gettempdir()) / "podium-bench")
    return convert_gguf(gguf, cache, sha), sha, cache


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores; load average at the start {load}"


def site_size(*names: str) -> str:
    sizes = []
    for name in names:
        dist = md.distribution(name)
        paths = [Path(str(dist.locate_file(f))) for f in dist.files or () if f.suffix != ".pyc"]
        total = sum(p.stat().st_size for p in paths if p.exists())
        sizes.append(f"{name} {dist.version} {total / 1e6:.1f} MB")
    return ", ".join(sizes)


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "no cache"
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.0f} s"


def fmt_us(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds * 1e6:.0f}"


def share(part: float, whole: float) -> str:
    return f"{part / whole:.2%}" if part / whole < 0.1 else f"{part / whole:.0%}"


def table(
    setups: dict[str, float], rows: list[Row], floor: dict[int, tuple[float, float]], samples: int, max_tokens: int
) -> str:
    step1, step16 = floor[1][0], floor[16][0]
    lines = [
        "| library | constraint | compile cold | warm | 1st mask | walk p50 / p95 / mean µs"
        " | sampled p50 / p95 µs | valid docs accepted | sampled finished (mean tokens) / invalid"
        " | mean ÷ step b=1 | 16×mean ÷ step b=16 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.error:
            lines.append(f"| {row.library} | {row.constraint} | failed: {row.error} |" + " |" * 8)
            continue
        every = row.first_mask + row.walk + row.sampled
        mean = statistics.fmean(every)
        lines.append(
            f"| {row.library} | {row.constraint} | {fmt_ms(row.compile_cold)} | {fmt_ms(row.compile_warm)}"
            f" | {fmt_ms(statistics.median(row.first_mask)) if row.first_mask else '—'}"
            f" | {fmt_us(pct(row.walk, 0.5))} / {fmt_us(pct(row.walk, 0.95))} / {fmt_us(statistics.fmean(row.walk))}"
            f" | {fmt_us(pct(row.sampled, 0.5))} / {fmt_us(pct(row.sampled, 0.95))}"
            f" | {row.docs_accepted}/{row.docs} | {row.finished}/{samples}"
            f" ({statistics.fmean(row.lengths or [0]):.0f}) / {len(row.invalid)}"
            f" | {share(mean, step1)} | {share(16 * mean, step16)} |"
        )
    setup = ", ".join(f"{name} {fmt_ms(s)}" for name, s in setups.items())
    lines += [
        "",
        f"Tokenizer preparation, once per model: {setup}. Decode step (FastLlama int8, 64-token context, fastest /"
        f" median of 60): batch 1 {step1 * 1e3:.1f} / {floor[1][1] * 1e3:.1f} ms, batch 16 {step16 * 1e3:.1f} /"
        f" {floor[16][1] * 1e3:.1f} ms; the shares use the fastest step and the mean cost per token over every"
        f" token measured (walked and sampled). Samples: {samples} per constraint, at most {max_tokens} tokens.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=6, help="Sampled documents per constraint and library.")
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--record", action="store_true", help="Append the results to bench/RESULTS.md.")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    started_at = datetime.now(UTC)
    where = machine()
    folder, sha, cache = model_folder()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)  # nosec B615  # a local folder
    vocab = len(tokenizer)
    eos = int(tokenizer.eos_token_id)
    token_bytes = byte_tokens(tokenizer, vocab)
    for i in tokenizer.encode('{"a": "é"}', add_special_tokens=False):  # the byte mapping agrees with the decoder
        raw = token_bytes[i]
        assert raw is not None and raw.decode("utf-8", "replace") == tokenizer.decode([i])

    setups: dict[str, float] = {}
    rows: list[Row] = []
    for name in args.libraries.split(","):
        setups[name], lib_rows = run_library(name, tokenizer, vocab, eos, token_bytes, args.samples, args.max_tokens)
        rows += lib_rows
    batch_step = xgrammar_batch(tokenizer, vocab, eos) if "xgrammar" in setups else None
    floor = decode_floor(folder, sha, cache)

    body = table(setups, rows, floor, args.samples, args.max_tokens)
    if batch_step is not None:
        body += (
            " xgrammar's BatchGrammarMatcher (16 masks filled on its threads, then 16 tokens accepted; nested"
            f" documents): {batch_step * 1e6:.0f} µs per batch step, {share(batch_step, floor[16][0])} of the"
            " batch-16 decode step."
        )
    problems = [
        f"- {row.library}, {row.constraint}: "
        + "; ".join([f"refused valid `{t}`" for t in row.refusals[:2]] + [f"{t[:220]}" for t in row.invalid[:3]])
        for row in rows
        if row.refusals or row.invalid
    ]
    deps = site_size("xgrammar", "triton", "apache-tvm-ffi", "lm-format-enforcer", "interegular", "outlines_core")
    text = "\n".join(
        [
            f"### bench/constrain.py — {started_at:%Y-%m-%d %H:%M} UTC (issue 21: constrained decoding libraries)",
            "",
            f"Machine: {where}; torch {torch.__version__}, Python {platform.python_version()}."
            f" SmolLM2-135M-Instruct tokenizer ({vocab} tokens). Installed sizes: {deps}.",
            "",
            body,
            *(
                ["", "Refused valid documents and invalid samples (first error, document):", *problems]
                if problems
                else []
            ),
        ]
    )
    print(text)
    if args.record:
        results = Path(__file__).with_name("RESULTS.md")
        with open(results, "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
