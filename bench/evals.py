"""Eval-run benchmark: a 1,000-row suite (three reference metrics and a G-Eval judge) run by `podium serve`
against its floor, the same model calls made by a bare pooled aiohttp client with the same metrics computed
in-process, on the same mock upstream, in one run; optionally promptfoo on the same mock.

    .venv/bin/python bench/evals.py [--rows 1000] [--rounds 3] [--concurrency 16] [--models DEFAULT]
                                    [--promptfoo PATH_TO_PROMPTFOO] [--promptfoo-rounds 1] [--profile OUT.txt]
                                    [--record]

Processes, all on 127.0.0.1:
- the mock: a raw-asyncio OpenAI chat endpoint in its own process, answering at once (0 ms delay): G-Eval's
  score prompt ("Reply with the number only") gets "4", its steps prompt ("evaluation steps") a numbered
  list, promptfoo's G-Eval prompts their JSON; any other prompt a deterministic rewording of the sentence it
  carries (some words dropped, some swapped), so BLEU and ROUGE vary from row to row. It counts the calls of
  each kind (`GET /count`), so the cached run is checked to make none.
- Podium as `make run` starts it (`podium serve` with its defaults, one worker), a target and a judge route to
  the mock per round (a fresh pair each round, so every round's first run starts with nothing cached), the
  rows imported as a dataset. A run is `POST /api/evals/runs` with evaluators `bleu`, `rouge`, `token_f1` and
  `geval`, concurrency 16; its time is from the POST to the first poll (every 50 ms) that sees it finished,
  and the server's own `started_at`..`finished_at` is shown beside it, with the CPU time the server and its
  child processes spent. The second run is the same spec again: its plan matches the first's, so its rows
  are copied from it in SQL. The third lists the evaluators in another order (another plan): every row is
  evaluated again with each call and verdict found in the eval cache.
- The floor, in this process: one G-Eval steps call, then per row the target call, sacrebleu's sentence BLEU,
  rouge-score's ROUGE-1/2/L and SQuAD token F1, then the judge call with the prompt G-Eval sends, 16 rows at a
  time over one pooled aiohttp session (uvloop). A second floor makes the same calls without the metrics.
- promptfoo (`--promptfoo`, the `promptfoo` executable of an npm install), `-j 16`, the same rows as tests,
  provider `openai:chat:m` and the grader `openai:chat:judge` on the mock, assertions `bleu`, `rouge-n`,
  `gleu` (promptfoo has no token F1 or ROUGE-2/L) and `g-eval`: once with `--no-cache`, once with its disk cache
  on and empty, once more with it filled (`--promptfoo-rounds` times, a fresh cache folder each time). Skipped
  without `--promptfoo`; a missing or failing promptfoo is reported in the section instead.

With `--rounds N` Podium's three runs and the two floors take turns N times and each figure is the median:
the machine is shared and noisy, so ratios to the floor measured side by side are what to compare. Overhead
per row = (Podium's first run - the floor with metrics) / rows. `--profile OUT` records the server with py-spy
(`--gil`, raw stacks in OUT-first.raw, OUT-cached.raw) during one more first run and its cached rerun (not
measured) and writes where the GIL time went, by group of work and by function, to OUT. `--record` inserts
the section at the top of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import psutil
import uvloop
import yaml
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU

sys.path.insert(0, str(Path(__file__).parent))
from gateway import DEFAULT_MODELS, MODEL_CACHE, free_port, machine, wait_http

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).with_name("RESULTS.md")
CRITERIA = "The answer restates the input correctly, completely and clearly."
POLL = 0.05

MOCK = textwrap.dedent(
    r"""
    import asyncio, sys, zlib, orjson, uvloop

    COUNTS = {"target": 0, "judge": 0, "steps": 0, "promptfoo judge": 0, "promptfoo steps": 0}

    def reword(text):
        # the sentence after the instruction, some words dropped and some swapped: deterministic per input
        kept = [w for w in text.split(": ", 1)[-1].split() if zlib.crc32(w.encode()) % 5]
        for i in range(len(kept) - 1):
            if zlib.crc32(kept[i].encode()) % 7 == 0:
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
        return " ".join(kept) or "I do not know."

    def last_user(body):
        for m in reversed(body.get("messages") or []):
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, list):
                    return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
                return str(c or "")
        return ""

    def reply(body):
        cue = last_user(body)
        if "Reply with the number only" in cue:
            kind, text = "judge", "4"
        elif "final evaluation in the required minified JSON" in cue:
            kind, text = "promptfoo judge", '{"score":8,"reason":"The reply restates the prompt."}'
        elif '"steps"' in cue:
            kind, text = "promptfoo steps", '{"steps":["Check correctness","Check clarity"]}'
        elif "evaluation steps" in cue:
            kind, text = "steps", "1. Check correctness\n2. Check clarity"
        else:
            kind, text = "target", reword(cue)
        COUNTS[kind] += 1
        p, c = len(cue.split()), len(text.split())
        return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})

    def dechunk(buf):
        # a chunked body: (body, bytes used), or (None, 0) while incomplete
        out, i = [], 0
        while True:
            eol = buf.find(b"\r\n", i)
            if eol < 0:
                return None, 0
            size = int(buf[i:eol].split(b";")[0], 16)
            if size == 0:
                end = buf.find(b"\r\n", eol + 2)
                return (None, 0) if end < 0 else (b"".join(out), end + 2)
            if len(buf) < eol + 4 + size:
                return None, 0
            out.append(buf[eol + 2:eol + 2 + size])
            i = eol + 4 + size

    class Mock(asyncio.Protocol):
        # HTTP/1.1 keep-alive; Content-Length or chunked bodies
        def connection_made(self, transport):
            self.t, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = self.buf[:end].split(b"\r\n")
                method, path = lines[0].split(b" ")[:2]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip().lower()
                rest = self.buf[end + 4:]
                if headers.get(b"transfer-encoding") == b"chunked":
                    body, used = dechunk(rest)
                    if body is None:
                        return
                else:
                    used = int(headers.get(b"content-length", b"0"))
                    if len(rest) < used:
                        return
                    body = rest[:used]
                self.buf = rest[used:]
                self.answer(method, path, body)
                if headers.get(b"connection") == b"close":
                    self.t.close()
                    return

        def answer(self, method, path, body):
            status = b"200 OK"
            if method == b"POST" and path.endswith(b"/chat/completions"):
                try:
                    payload = reply(orjson.loads(body))
                except Exception as exc:
                    status, payload = b"400 Bad Request", orjson.dumps({"error": {"message": str(exc)}})
            elif path == b"/count":
                payload = orjson.dumps(COUNTS)
            else:
                status, payload = b"404 Not Found", b'{"error": {"message": "not found"}}'
            self.t.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(payload)).encode() + b"\r\n\r\n" + payload)

    async def main():
        server = await asyncio.get_running_loop().create_server(Mock, "127.0.0.1", int(sys.argv[1]), backlog=1024)
        await server.serve_forever()
    uvloop.run(main())
    """
)

# --- rows ------------------------------------------------------------------------------------------------

ADJ = [
    "quick",
    "quiet",
    "bright",
    "heavy",
    "narrow",
    "ancient",
    "modern",
    "careful",
    "small",
    "large",
    "green",
    "cold",
    "warm",
    "busy",
    "empty",
]
NOUN = [
    "engineer",
    "river",
    "garden",
    "market",
    "library",
    "teacher",
    "storm",
    "bridge",
    "report",
    "village",
    "train",
    "window",
    "kitchen",
    "server",
    "budget",
    "harbour",
    "festival",
    "museum",
    "contract",
    "battery",
    "forest",
    "customer",
    "printer",
    "meeting",
]
VERB = [
    "repairs",
    "crosses",
    "visits",
    "opens",
    "closes",
    "describes",
    "follows",
    "checks",
    "carries",
    "watches",
    "builds",
    "explains",
]
PREP = ["near", "behind", "under", "beside", "across", "inside", "after", "before"]
ASKS = ("Restate in your own words", "Summarise briefly", "Paraphrase this", "Say it again simply")


def clause(rng: random.Random) -> list[str]:
    words = ["the", rng.choice(ADJ), rng.choice(NOUN), rng.choice(VERB), "the", rng.choice(NOUN)]
    if rng.random() < 0.6:
        words += [rng.choice(PREP), "the", rng.choice(ADJ), rng.choice(NOUN)]
    return words


def make_rows(n: int, seed: int = 7) -> list[dict[str, str]]:
    """Sentences of one to three clauses (6 to 32 words); the reference is the sentence with a few words
    replaced or dropped, so the scores spread."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words: list[str] = []
        for k in range(rng.randint(1, 3)):
            words += ([rng.choice(["and", "while", "because"])] if k else []) + clause(rng)
        ref = [w for w in words if rng.random() > 0.1]
        ref = [rng.choice(NOUN) if rng.random() < 0.12 else w for w in ref]
        sentence = " ".join(words).capitalize() + "."
        rows.append({"input": f"{rng.choice(ASKS)}: {sentence}", "reference": " ".join(ref).capitalize() + "."})
    return rows


# --- the floor: the same calls and metrics with no platform around them ------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD token F1 over normalised tokens."""

    def norm(t: str) -> list[str]:
        return _ARTICLES.sub(" ", t.lower().translate(_PUNCT)).split()

    pred, gold = norm(prediction), norm(truth)
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


def judge_prompt(steps: list[str], row: dict[str, str], output: str) -> str:
    """The prompt Podium's G-Eval sends for a row (evaluators/judge.py)."""
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    return (
        f"Criteria:\n{CRITERIA}\n\nEvaluation steps:\n{listed}\n\n"
        f"Input:\n{row['input']}\n\nReference answer:\n{row['reference']}\n\n"
        f"Answer to grade:\n{output}\n\n"
        "Following the steps, grade the answer from 1 to 5. Reply with the number only."
    )


async def floor(mock_url: str, rows: list[dict[str, str]], concurrency: int, metrics: bool) -> dict[str, Any]:
    """One steps call, then per row: target call, metrics, judge call; `concurrency` rows at a time over one
    pooled session. Seconds and the mean of each score."""
    bleu = BLEU(tokenize="13a", smooth_method="exp", effective_order=True)
    rouge = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    url = mock_url + "/v1/chat/completions"
    headers = {"Content-Type": "application/json"}
    scores: dict[str, list[float]] = {}
    start, cpu = time.perf_counter(), time.process_time()
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def chat(body: dict[str, Any]) -> str:
            async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
                resp.raise_for_status()
                answer = orjson.loads(await resp.read())
            return str(answer["choices"][0]["message"]["content"])

        asked = (
            f"You will grade answers against these criteria:\n{CRITERIA}\n\nWrite 3 to 5 short evaluation steps a "
            "grader should follow, one per line, numbered."
        )
        text = await chat({"temperature": 0, "max_tokens": 200, "model": "m", "messages": [user(asked)]})
        steps = [re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", s).strip() for s in text.splitlines() if s.strip()]
        slots = asyncio.Semaphore(concurrency)

        async def one(row: dict[str, str]) -> None:
            async with slots:
                output = await chat({"temperature": 0, "model": "m", "messages": [user(row["input"])]})
                if metrics:
                    got = {"bleu": bleu.sentence_score(output, [row["reference"]]).score / 100}
                    for name, s in rouge.score(row["reference"], output).items():
                        got[name] = s.fmeasure
                    got["token_f1"] = token_f1(output, row["reference"])
                    for name, v in got.items():
                        scores.setdefault(name, []).append(v)
                body = {
                    "temperature": 0,
                    "max_tokens": 5,
                    "logprobs": True,
                    "top_logprobs": 10,
                    "model": "m",
                    "messages": [user(judge_prompt(steps, row, output))],
                }
                grade = re.search(r"\d+", await chat(body))
                scores.setdefault("quality", []).append((int(grade.group()) - 1) / 4 if grade else float("nan"))

        await asyncio.gather(*(one(r) for r in rows))
    return {
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "means": {k: statistics.fmean(v) for k, v in scores.items()},
    }


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


# --- Podium ------------------------------------------------------------------------------------------------


def start_podium(home: Path, models: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """`podium serve` as `make run` starts it (its defaults, one worker) in a fresh home; its admin key."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update({"PODIUM_HOME": str(home), "PODIUM_CACHE_DIR": str(MODEL_CACHE), "PODIUM_SERVE_MODELS": models})
    env.update({k.removeprefix("BENCH_"): v for k, v in os.environ.items() if k.startswith("BENCH_PODIUM_")})
    log = home / "serve.log"
    proc = subprocess.Popen(
        [str(BIN / "podium"), "serve", "--port", str(port), "--workers", "1"],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", 120, proc, log)
    expected = len([m for m in models.split(",") if m.strip()])
    states = home / "run" / "models"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready = [p for p in states.glob("*.state") if p.read_text().startswith("ready")] if states.exists() else []
        if len(ready) >= expected and (home / "admin.key").exists():
            break
        if proc.poll() is not None:
            raise RuntimeError(f"podium serve exited with {proc.returncode}\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    else:
        raise RuntimeError(f"the model workers were not ready in time\n{log.read_text()[-3000:]}")
    return proc, url, (home / "admin.key").read_text().strip()


def add_route(c: httpx.Client, name: str, mock_url: str) -> None:
    deployment = {"name": "a", "provider": "openai", "base_url": mock_url + "/v1", "model": "m"}
    r = c.post("/api/routes", json={"name": name, "deployments": [deployment]})
    assert r.status_code == 201, r.text


def spec(dataset: str, target: str, judge: str, concurrency: int, limit: int | None = None) -> dict[str, Any]:
    return {
        "name": f"bench-{target}",
        "dataset": dataset,
        "target": {"model": target},
        "evaluators": ["bleu", "rouge", "token_f1", {"type": "geval", "criteria": CRITERIA, "name": "quality"}],
        "judge": judge,
        "concurrency": concurrency,
        **({"limit": limit} if limit else {}),
    }


def counts(mock_url: str) -> dict[str, int]:
    return dict(httpx.get(mock_url + "/count").json())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (Podium's trace sink, its model workers)."""
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def podium_run(c: httpx.Client, body: dict[str, Any], mock_url: str, pid: int) -> dict[str, Any]:
    """One run from POST to the first poll that sees it finished; the run as the API shows it then, and the
    CPU time the server spent meanwhile."""
    before = counts(mock_url)
    cpu = cpu_seconds(pid)
    start = time.perf_counter()
    r = c.post("/api/evals/runs", json=body)
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    while True:
        run = c.get(f"/api/evals/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(POLL)
    wall = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu
    after = counts(mock_url)
    assert run["status"] == "succeeded", run
    server = (datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])).total_seconds()
    return {
        "seconds": wall,
        "cpu": cpu,
        "server_seconds": server,
        "upstream": sum(after.values()) - sum(before.values()),
        "run": run,
        "means": {k: v["mean"] for k, v in run["summary"]["scores"].items()},
    }


# --- promptfoo ---------------------------------------------------------------------------------------------


def promptfoo_version(exe: str) -> str:
    env = promptfoo_env(Path(tempfile.gettempdir()), Path(tempfile.gettempdir()))
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "?"


def promptfoo_env(work: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PROMPTFOO_CONFIG_DIR": str(work / "promptfoo-home"),  # its results database
            "PROMPTFOO_CACHE_PATH": str(cache),
            "PROMPTFOO_DISABLE_TELEMETRY": "1",
            "PROMPTFOO_DISABLE_UPDATE": "1",
            "PROMPTFOO_DISABLE_SHARING": "1",
            "PROMPTFOO_DISABLE_RUNTIME_WARNINGS": "1",
            # its per-run debug log file: at 1,000 tests its winston transport crashes the process at exit
            # ("write after end", exit 1) after the eval has completed
            "PROMPTFOO_DISABLE_DEBUG_LOG": "1",
            "OPENAI_API_KEY": "x",
            "NO_COLOR": "1",
        }
    )
    return env


def run_promptfoo(
    args: argparse.Namespace, config: Path, one: Path, work: Path, mock_url: str
) -> dict[str, dict[str, Any]]:
    """Per round, with a fresh cache folder: `--no-cache`, then the cache on (empty, then filled); medians.
    Then a one-test eval on a filled cache: node's start and promptfoo's fixed costs."""
    runs: dict[str, list[dict[str, Any]]] = {"no-cache": [], "cold": [], "warm": []}
    cache = work
    for i in range(args.promptfoo_rounds):
        cache = work / f"promptfoo-cache-{i}"
        for key, flags in (("no-cache", ["--no-cache"]), ("cold", []), ("warm", [])):
            runs[key].append(promptfoo_run(args.promptfoo, config, work, cache, mock_url, args.concurrency, *flags))
    out: dict[str, dict[str, Any]] = {}
    for key, rs in runs.items():
        out[key] = {f: median(rs, f) for f in ("seconds", "cpu", "upstream")}
        out[key]["tally"] = {
            t: (min if t == "passed" else max)(r["tally"].get(t, 0) for r in rs) for t in ("passed", "failed", "errors")
        }
        out[key]["range"] = [r["seconds"] for r in rs]
    promptfoo_run(args.promptfoo, one, work, cache, mock_url, args.concurrency)  # fills the one test's entries
    out["one"] = promptfoo_run(args.promptfoo, one, work, cache, mock_url, args.concurrency)
    return out


def promptfoo_config(mock_url: str, rows: list[dict[str, str]], path: Path) -> None:
    provider = {"apiBaseUrl": mock_url + "/v1", "apiKey": "x", "temperature": 0}
    config = {
        "description": "podium bench/evals.py",
        "prompts": ["{{input}}"],
        "providers": [{"id": "openai:chat:m", "config": provider}],
        "defaultTest": {
            "options": {"provider": {"id": "openai:chat:judge", "config": dict(provider)}},
            "assert": [
                {"type": "bleu", "value": "{{reference}}", "threshold": 0},
                {"type": "rouge-n", "value": "{{reference}}", "threshold": 0},
                {"type": "gleu", "value": "{{reference}}", "threshold": 0},
                {"type": "g-eval", "value": CRITERIA, "threshold": 0},
            ],
        },
        "tests": [{"vars": row} for row in rows],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=1000))


def promptfoo_run(
    exe: str, config: Path, work: Path, cache: Path, mock_url: str, concurrency: int, *flags: str
) -> dict[str, Any]:
    before = counts(mock_url)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [exe, "eval", "-c", str(config), "--no-progress-bar", "--no-table", "-j", str(concurrency), *flags],
        capture_output=True,
        text=True,
        env=promptfoo_env(work, cache),
        cwd=work,
    )
    seconds = time.perf_counter() - start
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = counts(mock_url)
    out = done.stdout + done.stderr
    if done.returncode not in (0, 100):  # 100: some assertion failed, which a threshold of 0 should not give
        raise RuntimeError(f"promptfoo exited with {done.returncode}\n{out[-3000:]}")
    tally = {k: int(v.replace(",", "")) for v, k in re.findall(r"(\d[\d,]*) (passed|failed|errors)", out)}
    print(f"promptfoo {' '.join(flags) or '(cache on)'}: {seconds:.2f} s, {tally}", file=sys.stderr)
    return {
        "seconds": seconds,
        "cpu": used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime,
        "upstream": sum(after.values()) - sum(before.values()),
        "tally": tally,
    }


# --- profile -----------------------------------------------------------------------------------------------


# Where a sample goes: the first group (in this order) one of whose functions is on its stack.
GROUPS = (
    ("eval cache reads (cache.read, on to_thread)", "read (podium/evals/cache.py)"),
    ("eval cache writes (cache.write_now in _save_rows)", "write_now (podium/evals/cache.py)"),
    ("row inserts and run counters (_save_rows)", "_save_rows (podium/evals/service.py)"),
    ("summary at the end (_finish)", "_finish (podium/evals/service.py)"),
    ("ROUGE (rouge-score)", "Rouge.evaluate (podium/evals/evaluators/reference.py)"),
    ("BLEU (sacrebleu)", "Bleu.evaluate (podium/evals/evaluators/reference.py)"),
    ("token F1", "ReferenceMetric.evaluate (podium/evals/evaluators/reference.py)"),
    ("verdicts to cache entries (dataclasses.asdict)", "asdict (dataclasses.py)"),
    ("gateway calls (Gateway.handle: route, upstream HTTP, trace)", "Gateway.handle (podium/gateway/service.py)"),
    ("G-Eval prompt and parsing", "GEval.evaluate (podium/evals/evaluators/judge.py)"),
    ("GatewayModels.request, keys, replies", "(podium/evals/calls.py)"),
    ("the runner's own work (tasks, samples, verdict keys)", "(podium/evals/runner.py)"),
    ("API requests (the bench's polls)", "FastAPI.__call__ (fastapi/applications.py)"),
    ("job thread (progress, waiting)", "LocalBackend._run (podium/jobs/service.py)"),
    ("job queue loop", "LocalBackend._loop (podium/jobs/service.py)"),
    ("trace writer thread", "TraceWriter._run (podium/tracing/writer.py)"),
    ("thread pool plumbing", "_worker (concurrent/futures/thread.py)"),
    ("event loop plumbing", "(asyncio/"),
)


def hotspots(raw: Path, seconds: float, rate: int, top: int = 15) -> str:
    """py-spy's raw (collapsed) stacks of the thread holding the GIL: how much of the run some thread held
    it, the share of each group of work, and the functions with the most samples on their own (self), as
    percentages of the GIL-held samples."""
    own: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        count = int(n)
        total += count
        own[frames[-1]] += count
        group = next((g for g, pattern in GROUPS if any(pattern in f for f in frames)), "other")
        groups[group] += count
    if not total:
        return "no samples"
    return "\n".join(
        [
            f"{total} samples with the GIL held ({total / (seconds * rate):.0%} of the {seconds:.2f} s recorded)",
            "by group:",
            *(f"  {n / total:6.1%}  {g}" for g, n in groups.most_common()),
            "self:",
            *(f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)),
        ]
    )


def profile_runs(c: httpx.Client, pid: int, body: dict[str, Any], mock_url: str, out: Path) -> str:
    """py-spy on the server (the GIL holder's stacks) during a first run and its cached rerun. py-spy pauses
    the server for each sample (its non-blocking mode tears stacks), so the profiled runs are slower."""
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if spy is None:
        return "py-spy is missing: .venv/bin/pip install py-spy"
    rate = 200
    reports = []
    for label in ("first run", "cached run"):
        raw = out.with_name(f"{out.stem}-{label.split()[0]}.raw")
        proc = subprocess.Popen(
            [spy, "record", "-o", str(raw), "--pid", str(pid), "--rate", str(rate), "-f", "raw", "--gil"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        result = podium_run(c, body, mock_url, pid)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if not raw.exists():
            return f"py-spy wrote nothing: {err.decode()[-1000:]}"
        reports.append(
            f"## {label}: {result['seconds']:.2f} s (server {result['server_seconds']:.2f} s), profiled from 1 s"
            f" before the POST to 0.2 s after the end\n" + hotspots(raw, result["seconds"] + 1.2, rate)
        )
    text = "\n\n".join(reports)
    out.write_text(text + "\n")
    return text


# --- the run -----------------------------------------------------------------------------------------------


def median(results: list[dict[str, Any]], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in results)


def table(
    args: argparse.Namespace,
    res: dict[str, list[dict[str, Any]]],
    pf: dict[str, dict[str, Any]] | None,
    pf_version: str | None,
    pf_note: str | None,
) -> str:
    n = args.rows
    base = median(res["floor"])
    cold, cached = median(res["cold"]), median(res["cached"])
    overhead_ms = (cold - base) / n * 1000
    cpu_overhead_ms = (median(res["cold"], "cpu") - median(res["floor"], "cpu")) / n * 1000
    ratio = cached / cold
    ratio_rows = median(res["third"]) / cold
    third_calls = max(r["upstream"] for r in res["third"])
    cached_calls = max(r["upstream"] for r in res["cached"])
    cached_model_calls = max(r["run"]["model_calls"] for r in res["cached"])
    cold_run = res["cold"][0]["run"]

    def line(name: str, r: dict[str, Any], server: float | None = None, spread: str = "") -> str:
        seconds = r["seconds"]
        shown = f"{seconds:.2f} s{spread}" + (f"; server {server:.2f} s" if server is not None else "")
        cpu = f"{r['cpu']:.2f} s" if r.get("cpu") is not None else "–"
        return (
            f"| {name} | {shown} | {seconds / n * 1000:.2f} ms | ×{seconds / base:.2f} | {cpu} | {r['upstream']:,.0f} |"
        )

    def med(key: str) -> dict[str, Any]:
        return {f: median(res[key], f) for f in ("seconds", "cpu", "upstream")}

    def spread(key: str) -> str:
        vs = [r["seconds"] for r in res[key]]
        return f" ({min(vs):.2f}–{max(vs):.2f})" if len(vs) > 1 else ""

    lines = [
        f"### bench/evals.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}, Python {platform.python_version()}. {n:,} rows, evaluators `bleu`, `rouge`,"
        f" `token_f1` and a G-Eval judge (`geval`), concurrency {args.concurrency}, mock upstream (raw asyncio,"
        " own process) answering at once. Podium as `make run` starts it (`podium serve`, one worker, models"
        f" loaded: {args.models or 'none'}); a run is timed from `POST /api/evals/runs` to the first 50 ms poll"
        " that sees it finished (the server's own `started_at`..`finished_at` after it), and its CPU is the"
        " server's and its child processes'. The floor: the same calls (one G-Eval steps call, then per row the"
        " target and the judge with the prompt G-Eval sends) from one pooled aiohttp session (uvloop),"
        f" {args.concurrency} rows at a time, sacrebleu / rouge-score / SQuAD token F1 computed in that process;"
        " its CPU is that process's. Podium's three runs and the floors took turns"
        f" {args.rounds} time(s): medians (range in brackets).",
        "",
        "| runner | time | per row | × floor | CPU (runner) | upstream calls |",
        "| --- | --- | --- | --- | --- | --- |",
        line("podium, first run (cold cache)", med("cold"), median(res["cold"], "server_seconds"), spread("cold")),
        line(
            "podium, second run (same suite: rows replayed)",
            med("cached"),
            median(res["cached"], "server_seconds"),
            spread("cached"),
        ),
        line(
            "podium, third run (evaluators reordered: rows from the caches)",
            med("third"),
            median(res["third"], "server_seconds"),
            spread("third"),
        ),
        line("floor: aiohttp + the metrics in-process", med("floor"), spread=spread("floor")),
        line("floor: the calls only", med("calls"), spread=spread("calls")),
    ]
    if pf:
        labels = {"no-cache": "--no-cache", "cold": "cache on, empty", "warm": "cache on, filled (second run)"}
        for key, label in labels.items():
            vs = pf[key]["range"]
            shown = f" ({min(vs):.2f}–{max(vs):.2f})" if len(vs) > 1 else ""
            lines.append(line(f"promptfoo {pf_version}, {label}", pf[key], spread=shown))
    lines += [
        "",
        f"Podium's first run: {cold_run['rows_done']:,} rows, {cold_run['failed_rows']} failed,"
        f" {cold_run['evaluator_errors']} evaluator errors, {cold_run['model_calls']:,} model calls. Score means,"
        " Podium / floor: "
        + ", ".join(
            f"{k} {res['cold'][0]['means'].get(k, math.nan):.4f} / {res['floor'][0]['means'].get(k, math.nan):.4f}"
            for k in ("bleu", "rouge1", "rougeL", "token_f1", "quality")
        )
        + ".",
        "",
        "Against the issue's targets: Podium's overhead per row over the model calls (first run - floor with"
        f" metrics) {overhead_ms:.2f} ms (target ≤ 2 ms: {'met' if overhead_ms <= 2 else 'not met'}; in CPU,"
        f" {cpu_overhead_ms:.2f} ms per row more than the floor's process); the cached run made {cached_calls}"
        f" upstream calls (the run's `model_calls` {cached_model_calls}; target 0:"
        f" {'met' if cached_calls == 0 and cached_model_calls == 0 else 'not met'}) in ×{ratio:.3f} of the"
        f" first run's time (target < 0.10: {'met' if ratio < 0.10 else 'not met'}). The third run, evaluated"
        f" row by row from the caches ({third_calls} upstream calls), took ×{ratio_rows:.3f} of the first.",
    ]
    if pf:
        cold_pf, warm_pf = pf["cold"]["seconds"], pf["warm"]["seconds"]
        tallies = "; ".join(
            f"{label}: " + ", ".join(f"{v:,} {k}" for k, v in pf[key]["tally"].items())
            for key, label in (("no-cache", "--no-cache"), ("cold", "empty"), ("warm", "filled"))
        )
        lines += [
            "",
            f"promptfoo {pf_version}: `promptfoo eval -c config.yaml --no-progress-bar --no-table -j"
            f" {args.concurrency}`, `--no-cache` for the first of its rows, then its disk cache on (a fresh cache"
            f" folder each round), {args.promptfoo_rounds} round(s) after Podium's (medians); the same rows as"
            " tests, provider `openai:chat:m` and grader `openai:chat:judge` on the mock, assertions `bleu`,"
            " `rouge-n`, `gleu` (it has no token F1, ROUGE-2 or ROUGE-L) and `g-eval`, results written to its"
            " database as by default, its per-run debug log off (`PROMPTFOO_DISABLE_DEBUG_LOG=1`: with it on, the"
            " 1,000-test eval completes and then node exits 1 on a winston 'write after end'). Its time includes"
            f" node's start (a one-test eval on a filled cache takes {pf['one']['seconds']:.1f} s); its CPU is"
            f" node's. Tests: {tallies}. Its first run with the cache on takes ×{cold_pf / cold:.2f} Podium's"
            f" first run (×{pf['no-cache']['seconds'] / cold:.2f} with `--no-cache`); its cached run"
            f" ×{warm_pf / cached:.2f} Podium's second run (its own cached/first ×{warm_pf / cold_pf:.3f})."
            " Without its cache its G-Eval asks the judge for the steps on every test (Podium asks once per"
            f" criteria and judge model and stores them), hence {pf['no-cache']['upstream']:,.0f} calls.",
        ]
    elif pf_note:
        lines += ["", pf_note]
    return "\n".join(wrap(text) for text in lines) + "\n"


def wrap(text: str) -> str:
    """Prose at RESULTS.md's width; headings and table rows as they are."""
    if not text or text.startswith(("|", "#")):
        return text
    return textwrap.fill(text, 110, break_long_words=False, break_on_hyphens=False)


def record(text: str) -> None:
    """Insert the section at the top of RESULTS.md, after its header paragraph."""
    old = RESULTS.read_text()
    at = old.find("\n### ")
    RESULTS.write_text(old[: at + 1] + text + "\n" + old[at + 1 :] if at >= 0 else old + "\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="Measure Podium and the floors this many times.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="Local models Podium loads ('' for none).")
    parser.add_argument("--promptfoo", default=None, help="Path of a `promptfoo` executable (npm install).")
    parser.add_argument("--promptfoo-rounds", type=int, default=1, help="Run promptfoo's three evals this often.")
    parser.add_argument("--profile", default=None, help="Write py-spy's hotspots of one more first run here.")
    parser.add_argument("--record", action="store_true", help="Insert the section at the top of RESULTS.md.")
    args = parser.parse_args()
    rows = make_rows(args.rows)
    work = Path(tempfile.mkdtemp(prefix="podium-bench-evals-"))
    procs: list[subprocess.Popen[bytes]] = []
    res: dict[str, list[dict[str, Any]]] = {"cold": [], "cached": [], "third": [], "floor": [], "calls": []}
    pf: dict[str, dict[str, Any]] | None = None
    pf_version = pf_note = None
    profile = None
    try:
        mock_port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", MOCK, str(mock_port)]))
        mock_url = f"http://127.0.0.1:{mock_port}"
        wait_http(mock_url + "/count", 30, procs[-1])
        home = work / "podium"
        home.mkdir()
        proc, url, key = start_podium(home, args.models)
        procs.append(proc)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            body = b"".join(orjson.dumps(r) + b"\n" for r in rows)
            r = c.post("/api/datasets/evalbench/import", params={"format": "jsonl"}, content=body)
            assert r.status_code == 201, r.text
            for name in ("warm-target", "warm-judge"):
                add_route(c, name, mock_url)
            # a short run first: the server imports the metric packages and opens its pools once, as a
            # server that has been up a while has
            podium_run(c, spec("evalbench@1", "warm-target", "warm-judge", args.concurrency, 64), mock_url, proc.pid)
            uvloop.run(floor(mock_url, rows[:64], args.concurrency, True))
            for rnd in range(args.rounds):
                target, judge = f"target-{rnd}", f"judge-{rnd}"
                add_route(c, target, mock_url)
                add_route(c, judge, mock_url)
                suite = spec("evalbench@1", target, judge, args.concurrency)

                # the third run lists the evaluators in another order: another plan, so it is not replayed from
                # the second; every row is evaluated again, each call and verdict found in the eval cache
                reordered = {**suite, "evaluators": list(reversed(suite["evaluators"]))}

                def podium_pair(suite: dict[str, Any] = suite, reordered: dict[str, Any] = reordered) -> None:
                    for key, body in (("cold", suite), ("cached", suite), ("third", reordered)):
                        res[key].append(podium_run(c, body, mock_url, proc.pid))

                def floors() -> None:
                    for key, metrics in (("floor", True), ("calls", False)):
                        before = counts(mock_url)
                        got = uvloop.run(floor(mock_url, rows, args.concurrency, metrics))
                        got["upstream"] = sum(counts(mock_url).values()) - sum(before.values())
                        res[key].append(got)

                for step in (podium_pair, floors) if rnd % 2 == 0 else (floors, podium_pair):
                    step()
                print(
                    f"round {rnd + 1}: "
                    + ", ".join(
                        f"{k} {v[-1]['seconds']:.2f} s, CPU {v[-1]['cpu']:.2f} s ({v[-1]['upstream']} calls)"
                        for k, v in res.items()
                    ),
                    file=sys.stderr,
                )
            if args.profile:
                add_route(c, "profile-target", mock_url)
                add_route(c, "profile-judge", mock_url)
                profile = profile_runs(
                    c,
                    proc.pid,
                    spec("evalbench@1", "profile-target", "profile-judge", args.concurrency),
                    mock_url,
                    Path(args.profile),
                )
        if args.promptfoo:
            if not Path(args.promptfoo).exists():
                pf_note = f"promptfoo: not run ({args.promptfoo} does not exist)."
            else:
                pf_version = promptfoo_version(args.promptfoo)
                config = work / "promptfooconfig.yaml"
                promptfoo_config(mock_url, rows, config)
                one = work / "one.yaml"
                promptfoo_config(mock_url, rows[:1], one)
                shutil.copy(config, Path(tempfile.gettempdir()) / "podium-bench-promptfooconfig.yaml")
                try:
                    pf = run_promptfoo(args, config, one, work, mock_url)
                except (RuntimeError, OSError) as exc:
                    pf_note = f"promptfoo {pf_version}: failed: {str(exc).strip()[:1500]}"
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
    text = table(args, res, pf, pf_version, pf_note)
    print(text)
    if profile:
        print(profile)
    print(json.dumps({k: [round(r["seconds"], 3) for r in v] for k, v in res.items()}), file=sys.stderr)
    if args.record:
        record(text)


if __name__ == "__main__":
    main()
