"""Start-up benchmark: `podium serve` on a fresh `PODIUM_HOME` until the built-in models answer.

Starts the real server on a fresh home several times in a row (by default twice) sharing one model cache,
so the first run is a first home with an empty per-user model cache and the later ones are further homes
with that cache warm. Each run reports the phases it can see in the server's and the workers' logs, and
the time until the chat model and the embedding model answer through `/v1`. The floor is the bare
library: a fresh Python process that imports transformers, loads the already converted SmolLM2 folder
and generates a short answer.

    .venv/bin/python bench/startup.py [--runs 2] [--cache DIR] [--keep]

`--cache` points the runs at an existing model cache (e.g. the real per-user one) instead of a new one.
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
    ("workers started", "serve", r"model worker for smollm2.* started"),
    ("chat: files materialised", "chat", r"^materialised "),
    ("chat: GGUF conversion started", "chat", r"^converting "),
    ("chat: GGUF converted", "chat", r"^converted in"),
    ("chat: converted folder reused", "chat", r"^reusing converted"),
    ("chat: weights loaded", "chat", r"^loaded "),
    ("chat: int8 calibrated", "chat", r"quantised to batch-invariant int8"),
    ("chat: int8 weights from the cache", "chat", r"int8 weights loaded from the cache"),
    ("chat: worker ready", "chat", r" ready on "),
    ("embed: worker ready", "embed", r" ready on "),
]


@dataclass
class Run:
    """One start of `podium serve` on a fresh home."""

    home: Path
    started: float  # wall clock
    answered: dict[str, float] = field(default_factory=dict)  # seconds after start
    phases: list[tuple[str, float, str]] = field(default_factory=list)


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
    """Poll a `/v1` endpoint until it answers 200; returns the monotonic time it did."""
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url + path, json=body, headers=headers, timeout=60)
            if r.status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no answer from {path} before the deadline")


def start_once(root: Path, index: int, cache: Path, timeout: float) -> Run:
    """Start the server on a new home, wait for both models to answer, stop it."""
    folder = root / f"home-{index}"
    folder.mkdir()
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
    log = folder / "serve.log"
    with open(log, "w") as out:
        wall, t0 = time.time(), time.monotonic()
        proc = subprocess.Popen(
            [str(VENV_BIN / "podium"), "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run = Run(home=home, started=wall)
    try:
        deadline = t0 + timeout
        while not (home / "admin.key").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"podium serve did not start:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.05)
        key = (home / "admin.key").read_text().strip()
        url = f"http://127.0.0.1:{port}"
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
    logs = {
        "serve": log_events(log),
        "chat": log_events(home / "logs" / f"model-{CHAT}.log"),
        "embed": log_events(home / "logs" / f"model-{EMBED}.log"),
    }
    for label, source, pattern in PHASES:
        for stamp, message in logs[source]:
            if re.search(pattern, message):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="Fresh homes started one after another.")
    parser.add_argument("--cache", type=Path, default=None, help="Model cache to use (default: a new, empty one).")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="Keep the homes and logs (printed at the end).")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="podium-startup-"))
    cache = args.cache or root / "model-cache"
    runs: list[Run] = []
    try:
        for i in range(args.runs):
            runs.append(start_once(root, i + 1, cache, args.timeout))
            print(f"run {i + 1}: {runs[-1].answered}", file=sys.stderr, flush=True)
        converted = find_converted(cache) or find_converted(root)
        base = floor(converted) if converted else None
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"### bench/startup.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"Machine: {machine()}. Seconds after `podium serve` was started on a fresh home.\n")
    labels = [label for label, _, _ in PHASES if any(label == p[0] for r in runs for p in r.phases)]
    names = ["first home (empty model cache)"] + [f"home {i + 1} (cache warm)" for i in range(1, len(runs))]
    print("| phase ends | " + " | ".join(names[: len(runs)]) + " |")
    print("| --- |" + " --- |" * len(runs))
    for label in labels:
        cells = []
        for r in runs:
            seen = [t for name, t, _ in r.phases if name == label]
            cells.append(f"{seen[0]:.1f}" if seen else "–")
        print(f"| {label} | " + " | ".join(cells) + " |")
    for what in ("chat answers", "embeddings answer"):
        print(f"| **{what}** | " + " | ".join(f"**{r.answered[what]:.1f}**" for r in runs) + " |")
    if base:
        print(
            f"\nFloor (bare transformers in a new process, the converted folder): import {base['import']:.1f} s,"
            f" load {base['load']:.1f} s, 8 tokens {base['generate']:.1f} s;"
            f" process start to answer {base['process to answer']:.1f} s."
        )
    if args.keep:
        print(f"\nHomes and logs kept in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
