"""Start-up benchmark: `podium serve` until the built-in models answer, in three situations.

Each round runs, one after another:
- a first-ever home: a new home and an empty per-user model cache (the GGUF conversion and the int8
  calibration run), `--cold 0` skips it;
- a new home with the model cache warm (what a second project or a CI run sees);
- a warm restart of that same home;
- the floor: a fresh Python process that imports transformers, loads the already converted SmolLM2
  folder and generates 8 tokens (the bare library doing the least the server must do).
Each start reports the phases it can see in the server's and the workers' logs, and the seconds until
the chat model and the embedding model first answer through `/v1` (the first request is sent as soon as
the server listens; it waits for the model). Medians over the rounds, and ratios to the floor's median.
The machine's load average is recorded beside each start: the figures mean little on a busy machine.

    .venv/bin/python bench/startup.py [--rounds 3] [--cold 1] [--cache DIR] [--keep]

`--cache` points the warm runs at an existing model cache (e.g. the real per-user one) instead of the
one the first-ever home fills.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
CHAT = "smollm2-135m-instruct"
EMBED = "minilm-l6-v2"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")

# (label, log, pattern): the first line of that log matching the pattern marks the phase's end
PHASES = [
    ("smollm2 registered (inspect, hash, copy)", "serve", r"registered built-in model smollm2"),
    ("minilm registered", "serve", r"registered built-in model minilm"),
    ("chat worker started", "serve", r"model worker for smollm2.* started"),
    ("chat: files materialised", "chat", r"^materialised "),
    ("chat: GGUF conversion started", "chat", r"^converting "),
    ("chat: GGUF converted", "chat", r"^converted in"),
    ("chat: converted folder reused", "chat", r"^reusing converted"),
    ("chat: weights loaded (tokenizer, config, weights)", "chat", r"^loaded "),
    ("chat: int8 calibrated", "chat", r"quantised to batch-invariant int8"),
    ("chat: int8 weights from the cache", "chat", r"int8 weights loaded from the cache"),
    ("chat: worker ready", "chat", r" ready on "),
    ("embed worker started", "serve", r"model worker for minilm.* started"),
    ("embed: worker ready", "embed", r" ready on "),
]
KINDS = {
    "cold": "first-ever home (empty model cache)",
    "new": "new home, model cache warm",
    "restart": "warm restart of the same home",
}


@dataclass
class Run:
    """One start of `podium serve` on a fresh home."""

    kind: str  # cold, new, restart
    home: Path
    started: float  # wall clock
    answered: dict[str, float] = field(default_factory=dict)  # seconds after start
    phases: list[tuple[str, float, str]] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_events(path: Path) -> list[tuple[float, str]]:
    """(wall clock, message) for each timestamped line of a log."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        m = STAMP.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            events.append((stamp, m.group(2)))
    return events


def wait_answer(url: str, key: str, body: dict[str, object], path: str, deadline: float) -> float:
    """Post to a `/v1` endpoint until it answers 200 (retrying refused connections and 503s every 0.1 s);
    returns the monotonic time it did."""
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url + path, json=body, headers=headers, timeout=600)
            if r.status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"no answer from {path} before the deadline")


def start_once(folder: Path, kind: str, cache: Path, timeout: float) -> Run:
    """Start the server in `folder` (its home made on the first start), wait for both models to answer
    through `/v1`, stop it."""
    folder.mkdir(exist_ok=True)
    home = folder / ".podium"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update(
        {
            "PODIUM_MODEL_CACHE_DIR": str(cache),
            "PODIUM_SERVE_MODELS": f"{CHAT},{EMBED}",
            "PODIUM_LOG_LEVEL": "info",
        }
    )
    log = folder / f"serve-{kind}.log"
    for old in (home / "logs").glob("model-*.log"):  # each start's worker logs on their own
        old.unlink()
    load_before = os.getloadavg()[0]
    with open(log, "w") as out:
        wall, t0 = time.time(), time.monotonic()
        proc = subprocess.Popen(
            [str(VENV_BIN / "podium"), "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run = Run(kind=kind, home=home, started=wall)
    try:
        deadline = t0 + timeout
        while not (home / "admin.key").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"podium serve did not start:\n{log.read_text()}")
            time.sleep(0.02)
        time.sleep(0.02)
        key = (home / "admin.key").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        while True:  # the gateway's own start (it listens once its app is built)
            try:
                httpx.get(url + "/healthz", timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"podium serve did not listen:\n{log.read_text()}") from None
                time.sleep(0.05)
        run.answered["gateway listens"] = time.monotonic() - t0
        chat = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0}
        run.answered["chat answers"] = wait_answer(url, key, chat, "/v1/chat/completions", deadline) - t0
        run.answered["embeddings answer"] = (
            wait_answer(url, key, {"model": EMBED, "input": "hello"}, "/v1/embeddings", deadline) - t0
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    run.load = (load_before, os.getloadavg()[0])
    logs = {
        "serve": log_events(log),
        "chat": log_events(home / "logs" / f"model-{CHAT}.log"),
        "embed": log_events(home / "logs" / f"model-{EMBED}.log"),
    }
    for label, source, pattern in PHASES:
        for stamp, message in logs[source]:
            if stamp >= wall - 1 and re.search(pattern, message):
                run.phases.append((label, stamp - wall, message))
                break
    return run


FLOOR = r"""
import json, sys, time
t0 = time.monotonic()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
t1 = time.monotonic()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
t2 = time.monotonic()
ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt")
if hasattr(ids, "keys"):
    ids = ids["input_ids"]
with torch.inference_mode():
    model.generate(ids, max_new_tokens=8, do_sample=False)
t3 = time.monotonic()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "generate": t3 - t2}))
"""


def floor(converted: Path) -> dict[str, float]:
    """The bare library from a cold process: import transformers, load the converted folder, answer."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", FLOOR, str(converted)], env=env, capture_output=True, text=True, check=True
    )
    total = time.monotonic() - started
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["process to answer"] = total
    return figures


def find_converted(root: Path) -> Path | None:
    """A converted SmolLM2 folder left by the runs (in the model cache, or in a home's own cache)."""
    for config in sorted(root.rglob("config.json")):
        folder = config.parent
        if list(folder.glob("*.safetensors")) and "LlamaForCausalLM" in config.read_text():
            return folder
    return None


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor() or "?"
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cell(values: list[float]) -> str:
    """Median, and the range when there are several values."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of (first-ever home, new home, restart, floor).")
    parser.add_argument("--cold", type=int, default=1, help="First-ever homes (empty cache) in the first N rounds.")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="Model cache for the warm runs (default: a new one, filled by the first cold home).",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="Keep the homes and logs (printed at the end).")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="podium-startup-"))
    warm_cache = args.cache or root / "model-cache"
    runs: list[Run] = []
    floors: list[dict[str, float]] = []
    when = datetime.now(UTC)
    try:
        for i in range(args.rounds):
            if i < args.cold or not warm_cache.exists():
                cache = warm_cache if not warm_cache.exists() else root / f"cold-cache-{i + 1}"
                runs.append(start_once(root / f"cold-{i + 1}", "cold", cache, args.timeout))
                print(f"round {i + 1} cold: {runs[-1].answered}", file=sys.stderr, flush=True)
            for kind in ("new", "restart"):
                runs.append(start_once(root / f"home-{i + 1}", kind, warm_cache, args.timeout))
                print(f"round {i + 1} {kind}: {runs[-1].answered}", file=sys.stderr, flush=True)
            converted = find_converted(warm_cache)
            if converted:
                floors.append(floor(converted))
                print(f"round {i + 1} floor: {floors[-1]}", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    loads = [x for r in runs for x in r.load]
    print(f"### bench/startup.py — {when:%Y-%m-%d %H:%M} UTC\n")
    print(
        f"Machine: {machine()}. Seconds after `podium serve` was started; medians of {args.rounds} rounds"
        f" (range in brackets). 1-minute load average during the runs: {min(loads):.1f}–{max(loads):.1f}.\n"
    )
    kinds = [k for k in KINDS if any(r.kind == k for r in runs)]
    print("| phase ends | " + " | ".join(KINDS[k] for k in kinds) + " |")
    print("| --- |" + " --- |" * len(kinds))
    labels = [label for label, _, _ in PHASES if any(label == p[0] for r in runs for p in r.phases)]
    for label in labels:
        cells = [cell([t for r in runs if r.kind == k for name, t, _ in r.phases if name == label]) for k in kinds]
        print(f"| {label} | " + " | ".join(cells) + " |")
    base = median([f["process to answer"] for f in floors])
    listens = [cell([r.answered["gateway listens"] for r in runs if r.kind == k]) for k in kinds]
    print("| gateway listens (`/healthz`) | " + " | ".join(listens) + " |")
    for what in ("chat answers", "embeddings answer"):
        cells = []
        for k in kinds:
            values = [r.answered[what] for r in runs if r.kind == k]
            ratio = f" (×{statistics.median(values) / base:.2f} floor)" if base and values else ""
            cells.append(f"**{cell(values)}**{ratio}")
        print(f"| **{what}** | " + " | ".join(cells) + " |")
    if floors:
        parts = {key: median([f[key] for f in floors]) for key in ("import", "load", "generate", "process to answer")}
        each = ", ".join(f"{f['process to answer']:.1f}" for f in floors)
        print(
            f"\nFloor (bare transformers in a new process, the converted folder; medians of {len(floors)}): import"
            f" {parts['import']:.1f} s, load {parts['load']:.1f} s, 8 tokens {parts['generate']:.1f} s; process start"
            f" to answer {parts['process to answer']:.1f} s"
            f" ({each})."
        )
    print("\nEach start (kind: chat, embeddings; load average before → after):")
    for r in runs:
        print(
            f"- {r.kind}: {r.answered['chat answers']:.1f} s, {r.answered['embeddings answer']:.1f} s;"
            f" load {r.load[0]:.1f} → {r.load[1]:.1f}"
        )
    if args.keep:
        print(f"\nHomes and logs kept in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
