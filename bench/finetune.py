"""Fine-tuning benchmark (issue 19): training speed through the pipeline against a plain TRL script with the
same settings, and the local engine serving the tuned model (merged, and base + adapter) against the base.

    .venv/bin/python bench/finetune.py [--steps 20] [--rounds 2] [--streams 8] [--tokens 64] [--record]

1. Training. `podium serve` (no model workers, one job worker) runs a blueprint of the example's 200
   support rows (LoRA r=16 on q/k/v/o of the built-in SmolLM2-135M, batch 8, `--steps` steps, no eval) as
   the pipeline does: a job, the prepare stage, the trainer child process following telemetry into the
   database. Its training tokens/s is the trainer's own count of the tokens it trained on (padding excluded)
   over the Trainer's runtime. Beside it, a plain TRL script (`plain_trl` below: the rows as a prompt/
   completion dataset, SFTTrainer doing the templating and tokenising itself, the same LoraConfig and
   hyperparameters) trains the same rows in its own process. The two take turns `--rounds` times; medians.
2. Serving. The pipeline's run registers the adapter and the merged weights. The local engine (the model
   workers' engine: batched, int8) loads the base, the merged folder, and the base with the adapter (the
   worker merges an adapter at load), and each answers `--streams` prompts at once, `--tokens` tokens each,
   greedy; generated tokens per second of wall time, turns taken `--rounds` times, medians. An unmerged
   adapter applied at every step (PEFT on the transformers model) is measured beside them for reference.

`--record` inserts the section at the top of bench/RESULTS.md's fine-tuning part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from evals import BIN, start_podium
from gateway import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
EXAMPLE = ROOT / "examples" / "finetune-support"
BASE = "smollm2-135m-instruct"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def example_rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in (EXAMPLE / "train.jsonl").read_text().splitlines() if line.strip()]


def pipeline_round(c: httpx.Client, blueprint_id: str) -> dict[str, Any]:
    """One run of the blueprint through the pipeline; its train stage's outputs and work folder."""
    r = c.post("/api/finetunes/runs", json={"blueprint": blueprint_id})
    r.raise_for_status()
    run_id = r.json()["id"]
    while True:
        run = c.get(f"/api/finetunes/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(2)
    if run["status"] != "succeeded":
        raise RuntimeError(f"pipeline run {run_id} {run['status']}: {run['error']}")
    out = dict(run["stages"]["train"]["outputs"])
    out["run_id"] = run_id
    out["register"] = run["stages"]["register"]["outputs"]
    return out


PLAIN = r"""
import json, sys, time
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

folder, rows_path, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
rows = [json.loads(l) for l in open(rows_path)]
data = Dataset.from_list([
    {"prompt": [{"role": "user", "content": r["question"]}], "completion": [{"role": "assistant", "content": r["answer"]}]}
    for r in rows
])
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
args = SFTConfig(output_dir=sys.argv[4], per_device_train_batch_size=8, learning_rate=1e-3, lr_scheduler_type="cosine",
                 warmup_steps=0.03, max_steps=steps, max_length=256, seed=0, logging_steps=1, save_strategy="no",
                 report_to=[], use_cpu=True, include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                 gradient_checkpointing=False)
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                  task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=lora)
out = trainer.train()
print(json.dumps({"tokens": int(trainer.state.num_input_tokens_seen), "train_runtime": out.metrics["train_runtime"]}))
"""


def plain_trl(base_folder: str, rows: Path, steps: int, work: Path) -> dict[str, Any]:
    """The same training as a plain TRL script, in its own process."""
    script = work / "plain_trl.py"
    script.write_text(PLAIN)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
    out = subprocess.run(
        [str(BIN / "python"), str(script), base_folder, str(rows), str(steps), str(work / "plain-out")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


SERVE = r"""
import json, sys, time, threading
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from podium.finetune.trainer import engine_answers
from podium.models.worker.loader import load_causal_lm
from podium.core.blobs import file_sha256

cfg = json.loads(sys.argv[2])
prompts = cfg["prompts"]
kind = cfg["kind"]
cache = Path(cfg["cache"])
if kind == "base":
    lm = load_causal_lm(Path(cfg["base"]), fmt="hf", sha256=cfg["base_sha"], cache_root=cache, dtype="int8", module=False)
elif kind == "merged":
    key = file_sha256(Path(cfg["merged"]) / "model.safetensors")
    lm = load_causal_lm(Path(cfg["merged"]), fmt="hf", sha256=key, cache_root=cache, dtype="int8", module=False)
elif kind == "adapter":
    key = file_sha256(Path(cfg["adapter"]) / "adapter_model.safetensors")
    lm = load_causal_lm(Path(cfg["base"]), fmt="hf", sha256=cfg["base_sha"], cache_root=cache, dtype="int8",
                        adapter=Path(cfg["adapter"]), adapter_sha256=key)
if kind == "peft-unmerged":
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(cfg["base"]); tok.padding_side = "left"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(cfg["base"], dtype=torch.float32), cfg["adapter"])
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    t0 = time.monotonic()
    with torch.inference_mode():
        ids = model.generate(**batch, max_new_tokens=cfg["tokens"], min_new_tokens=cfg["tokens"], do_sample=False)
    took = time.monotonic() - t0
    print(json.dumps({"tokens": int((ids.shape[1] - batch["input_ids"].shape[1]) * len(prompts)), "seconds": took}))
    sys.exit(0)
engine_answers(lm, prompts[:2], 4, cache)  # warm: int8 calibration (kept in `cache`), first-call costs
stats = {}
engine_answers(lm, prompts, cfg["tokens"], cache, stats, stop=False)  # every answer --tokens long: same work
print(json.dumps(stats))
"""


def serve_round(kind: str, cfg: dict[str, Any], work: Path) -> float:
    """Generated tokens per second of one engine load answering every prompt at once."""
    script = work / "serve_bench.py"
    script.write_text(SERVE)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
    out = subprocess.run(
        [str(BIN / "python"), str(script), str(ROOT / "src"), json.dumps({**cfg, "kind": kind})],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"serving {kind} failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return float(got["tokens"]) / float(got["seconds"])


def training(args: argparse.Namespace, work: Path) -> tuple[list[float], list[float], Path]:
    """The pipeline and the plain script taking turns; their tokens/s and the last run's folder."""
    rows = example_rows()
    home = work / "home"
    home.mkdir()
    os.environ.setdefault("BENCH_PODIUM_JOB_WORKERS", "1")
    proc, url, key = start_podium(home, "")
    pipe_tps: list[float] = []
    plain_tps: list[float] = []
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
            body = "".join(json.dumps(r) + "\n" for r in rows).encode()
            c.post("/api/datasets/bench-support/import", params={"format": "jsonl"}, content=body).raise_for_status()
            bp = {
                "base_model": BASE,
                "data": {"train": "bench-support", "prompt_field": "question", "completion_field": "answer"},
                "method": "lora",
                "lora": LORA,
                "hyperparameters": {"max_steps": args.steps, "learning_rate": 1e-3, "batch_size": 8, "max_length": 256},
                "artifacts": {"merged": True},
                "deploy": {"model": "bench-tuned"},
            }
            planned = c.post("/api/finetunes/blueprints/plan", json={"blueprint": bp})
            planned.raise_for_status()
            blueprint_id = planned.json()["blueprint"]["id"]
            (work / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            last: dict[str, Any] = {}
            for i in range(args.rounds):
                last = pipeline_round(c, blueprint_id)
                pipe_tps.append(last["tokens"] / last["train_runtime"])
                config = json.loads((home / "finetune" / last["run_id"] / "train.json").read_text())
                plain = plain_trl(config["base_folder"], work / "rows.jsonl", args.steps, work)
                plain_tps.append(plain["tokens"] / plain["train_runtime"])
                print(f"round {i + 1}: pipeline {pipe_tps[-1]:.1f} tokens/s, plain TRL {plain_tps[-1]:.1f} tokens/s")
    finally:
        proc.terminate()
        proc.wait(60)
    return pipe_tps, plain_tps, home / "finetune" / last["run_id"]


def serving(args: argparse.Namespace, work: Path, run_folder: Path) -> dict[str, list[float]]:
    """The engine on the base, the merged weights and base + adapter (and PEFT unmerged), taking turns."""
    from transformers import AutoTokenizer

    config = json.loads((run_folder / "train.json").read_text())
    tok = AutoTokenizer.from_pretrained(config["base_folder"])
    questions = [r["question"] for r in example_rows()[: args.streams]]
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    cfg = {
        "prompts": prompts,
        "tokens": args.tokens,
        "cache": str(work / "engine-cache"),
        "base": config["base_folder"],
        "base_sha": config["base_sha256"],
        "merged": str(run_folder / "merged"),
        "adapter": str(run_folder / "adapter"),
    }
    out: dict[str, list[float]] = {"base": [], "merged": [], "adapter": [], "peft-unmerged": []}
    for i in range(args.rounds):
        for kind in out:
            out[kind].append(serve_round(kind, cfg, work))
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f} tokens/s" for k, v in out.items()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--record", action="store_true")
    ap.add_argument(
        "--serving-from", type=Path, help="Only the serving part, on a run folder with adapter/ and merged/."
    )
    args = ap.parse_args()
    lines = []
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="podium-bench-ft-") as tmp:
        work = Path(tmp)
        if args.serving_from is None:
            pipe_tps, plain_tps, run_folder = training(args, work)
            pipe, plain = statistics.median(pipe_tps), statistics.median(plain_tps)
            lines += [
                "| training (LoRA r=16 q/k/v/o, SmolLM2-135M, batch 8) | tokens/s | vs plain TRL |",
                "| --- | ---: | ---: |",
                f"| plain TRL script (floor) | {plain:.1f} | 1.00 |",
                f"| through the pipeline (job, prepare, trainer child) | {pipe:.1f} | **{pipe / plain:.2f}** |",
                "",
            ]
        else:
            run_folder = args.serving_from
        med = {k: statistics.median(v) for k, v in serving(args, work, run_folder).items()}
    lines += [
        f"| serving on the local engine ({args.streams} streams x {args.tokens} tokens each, greedy) | tokens/s |"
        " vs base |",
        "| --- | ---: | ---: |",
        f"| base SmolLM2-135M | {med['base']:.1f} | 1.00 |",
        f"| merged tuned weights | {med['merged']:.1f} | **{med['merged'] / med['base']:.2f}** |",
        f"| base + adapter (merged by the worker at load) | {med['adapter']:.1f} |"
        f" **{med['adapter'] / med['base']:.2f}** |",
        f"| reference: PEFT unmerged on transformers `generate` | {med['peft-unmerged']:.1f} |"
        f" {med['peft-unmerged'] / med['base']:.2f} |",
        "",
    ]
    head = [
        f"### bench/finetune.py, {when}",
        "",
        f"Machine: {machine()}. `--steps {args.steps} --rounds {args.rounds} --streams {args.streams}"
        f" --tokens {args.tokens}`{' --serving-from' if args.serving_from else ''}; medians of {args.rounds}"
        " alternating rounds.",
        "",
    ]
    text = "\n".join(head + lines)
    print(text)
    if args.record:
        record(text)


def record(section: str) -> None:
    """Insert the section at the top of RESULTS.md's fine-tuning part (made on first use)."""
    content = RESULTS.read_text()
    head = "## Fine-tuning (issue 19)"
    if head not in content:
        content = content.rstrip() + f"\n\n{head}\n\n"
    at = content.index(head) + len(head) + 1
    RESULTS.write_text(content[:at] + "\n" + section + content[at:])


if __name__ == "__main__":
    main()
