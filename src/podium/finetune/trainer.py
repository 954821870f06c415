"""The compute of a fine-tune, run in its own process (or as a Ray task): training with TRL's SFTTrainer and
PEFT, and greedy generation of the eval answers with the base and the tuned model.

It reads and writes only its work folder, so the job runner, a child process and a Ray worker run it the same
way:

- `train.json`: what to train (written by the pipeline from the blueprint);
- `prepared/train.jsonl`, `prepared/validation.jsonl`: tokenized rows (`input_ids`, `completion_mask`);
- `telemetry.jsonl`: one JSON line per logged step (loss, learning rate, tokens/s), appended as training goes;
- `checkpoints/checkpoint-N/`: Trainer checkpoints; one is complete once its `trainer_state.json` exists
  (the Trainer writes that file last), and training resumes from the newest complete one;
- `adapter/` (and `merged/`): the result, renamed into place whole, so it is there entirely or not at all.

`python -m podium.finetune.trainer train|generate FOLDER`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MERGED = "merged"
TELEMETRY = "telemetry.jsonl"
TRAIN_CONFIG = "train.json"
EVAL_PROMPTS = "eval_prompts.jsonl"
EVAL_OUTPUTS = "eval_outputs.json"


def _threads() -> None:
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores))


def complete_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints a run can resume from (their `trainer_state.json` written), oldest first."""
    root = folder / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("checkpoint-") and (p / "trainer_state.json").exists()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def _drop_incomplete(folder: Path) -> None:
    """A checkpoint cut off by a kill has no `trainer_state.json`: remove it, so nothing resumes from it."""
    root = folder / CHECKPOINTS
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and not (p / "trainer_state.json").exists():
                shutil.rmtree(p, ignore_errors=True)


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _place(tmp: Path, final: Path) -> None:
    """Move a finished folder into place whole (a rename), replacing a stale copy."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def train(folder: Path) -> dict[str, Any]:
    """Train as `train.json` says, resuming from the newest complete checkpoint; write the adapter (and the
    merged weights when asked). Returns what the result holds."""
    _threads()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    cfg = json.loads((folder / TRAIN_CONFIG).read_text())
    h = cfg["hyperparameters"]
    torch.manual_seed(int(h["seed"]))
    tokenizer = AutoTokenizer.from_pretrained(cfg["base_folder"], local_files_only=True)  # nosec B615  # local folder
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    gpu = torch.cuda.is_available()  # a GPU when there is one; the CPU otherwise
    # bf16 mixed precision (fp32 master weights), TRL's default, on the CPU too: 1.3x the tokens/s of fp32 here
    # (bench/finetune.py); fp16 on a GPU without bf16
    bf16 = not gpu or torch.cuda.is_bf16_supported()
    quantization = None
    if cfg["method"] == "qlora":  # planning allows it only with bitsandbytes and CUDA
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    model = AutoModelForCausalLM.from_pretrained(  # nosec B615  # a local folder, never the hub
        cfg["base_folder"],
        local_files_only=True,
        dtype=torch.bfloat16 if gpu and bf16 else torch.float32,
        quantization_config=quantization,
    )
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)  # type: ignore[no-untyped-call]
    train_rows = Dataset.from_list(_rows(folder / "prepared" / "train.jsonl"))
    val_path = folder / "prepared" / "validation.jsonl"
    val_rows = Dataset.from_list(_rows(val_path)) if val_path.exists() and val_path.stat().st_size else None
    peft_config = None
    if cfg["method"] != "full":
        lora = cfg["lora"]
        peft_config = LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=list(lora["target_modules"]),
            task_type="CAUSAL_LM",
        )
    telemetry = folder / TELEMETRY
    parent = os.getppid()

    class Telemetry(TrainerCallback):
        """Appends each logged step to `telemetry.jsonl`; stops when the process that started it is gone."""

        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.start_tokens = 0

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:  # the end-of-training summary: not a step
                return
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            elapsed = time.monotonic() - self.t0
            line: dict[str, Any] = {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "epoch": round(float(state.epoch or 0.0), 4),
                "at": time.time(),
                "tokens": tokens,
            }
            for key in ("loss", "learning_rate", "grad_norm", "eval_loss", "mean_token_accuracy"):
                if key in logs:
                    line[key] = float(logs[key])
            if "loss" in logs and elapsed > 0:
                line["tokens_per_second"] = round((tokens - self.start_tokens) / elapsed, 2)
            with telemetry.open("a") as f:
                f.write(json.dumps(line) + "\n")

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.t0 = time.monotonic()
            self.start_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if os.getppid() != parent:  # the job runner died: stop at this step (a checkpoint stays)
                control.should_training_stop = True

    _drop_incomplete(folder)
    resume = complete_checkpoints(folder)
    args = SFTConfig(
        output_dir=str(folder / CHECKPOINTS),
        per_device_train_batch_size=h["batch_size"],
        per_device_eval_batch_size=h["batch_size"],
        gradient_accumulation_steps=h["gradient_accumulation"],
        learning_rate=h["learning_rate"],
        lr_scheduler_type=h["lr_schedule"],
        warmup_steps=float(h["warmup_ratio"]),  # a float below 1 is a ratio of the steps
        num_train_epochs=h["epochs"] or 1.0,
        max_steps=h["max_steps"] or -1,
        max_length=h["max_length"],
        packing=h["packing"],
        completion_only_loss=True,
        seed=h["seed"],
        data_seed=h["seed"],
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.get("save_steps", 10),
        save_total_limit=2,
        eval_strategy="epoch" if val_rows is not None else "no",
        report_to=[],
        use_cpu=not gpu,
        bf16=bf16,
        fp16=not bf16,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        gradient_checkpointing=False,  # TRL turns it on; on CPU it costs a second forward pass for memory we have
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=val_rows,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[Telemetry()],
    )
    output = trainer.train(resume_from_checkpoint=str(resume[-1]) if resume else None)
    if trainer.state.global_step < trainer.state.max_steps:
        raise SystemExit(3)  # stopped early (the runner is gone): the checkpoints stay for a resume
    tmp = folder / f".{ADAPTER}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model_out: Any = trainer.model
    model_out.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    _place(tmp, folder / ADAPTER)
    result: dict[str, Any] = {
        "steps": trainer.state.global_step,
        "train_loss": float(output.training_loss),
        "train_runtime": float(output.metrics.get("train_runtime", 0.0)),
        "tokens": int(trainer.state.num_input_tokens_seen or 0),
        "resumed_from": resume[-1].name if resume else None,
    }
    if cfg.get("merge"):
        merged: Any = model_out.merge_and_unload() if peft_config is not None else model_out
        tmp = folder / f".{MERGED}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        _place(tmp, folder / MERGED)
        result["merged"] = True
    (folder / "train_result.json").write_text(json.dumps(result))
    return result


def engine_answers(
    lm: Any,
    prompts: list[str],
    max_new: int,
    cache: Path | None = None,
    stats: dict[str, float] | None = None,
    stop: bool = True,
) -> list[str]:
    """Greedy answers from the local engine (the serving path: batched, int8 as served), in prompt order.
    `cache` keeps the calibrated int8 weights (as the workers' derived cache does); `stats` gets the generated
    tokens and the seconds from submitting the prompts to the last answer; `stop=False` ignores the end of
    sequence (every answer `max_new` tokens long: what a throughput comparison of two models needs)."""
    import threading

    from podium.models.worker.api import Event, Finished, SeqRequest, TokenOut
    from podium.models.worker.derived import DerivedCache
    from podium.models.worker.engine import Engine

    engine = Engine(
        lm, max_batch=16, max_queue=len(prompts) + 1, cache=DerivedCache(cache) if cache is not None else None
    )
    engine.start()
    try:
        tokens: list[list[int]] = [[] for _ in prompts]
        done = [threading.Event() for _ in prompts]
        errors: list[str | None] = [None for _ in prompts]

        def emit_for(i: int) -> Any:
            def emit(event: Event) -> None:
                if isinstance(event, TokenOut):
                    tokens[i].append(event.token_id)
                elif isinstance(event, Finished):
                    errors[i] = event.error
                    done[i].set()

            return emit

        requests = [
            SeqRequest(
                id=f"eval-{i}",
                prompt_ids=lm.tokenizer(p, add_special_tokens=False)["input_ids"],
                max_new_tokens=max_new,
                temperature=0.0,
                top_p=1.0,
                seed=0,
                eos_ids=lm.eos_ids if stop else [],
                logprobs=None,
                emit=emit_for(i),
            )
            for i, p in enumerate(prompts)
        ]
        started = time.monotonic()
        engine.submit_many(requests)
        for event in done:
            event.wait()
        if stats is not None:
            stats["seconds"] = time.monotonic() - started
            stats["tokens"] = float(sum(len(t) for t in tokens))
        failed = [e for e in errors if e]
        if failed:
            raise RuntimeError(f"generation failed: {failed[0]}")
        return [lm.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
    finally:
        engine.stop()


def generate(folder: Path) -> dict[str, Any]:
    """Greedy answers to `eval_prompts.jsonl` from the base model and from the tuned one, on the local engine
    that serves them (batched); written to `eval_outputs.json`."""
    _threads()
    from podium.core.blobs import file_sha256
    from podium.models.worker.loader import load_causal_lm

    cfg = json.loads((folder / TRAIN_CONFIG).read_text())
    prompts = [row["prompt"] for row in _rows(folder / EVAL_PROMPTS)]
    max_new = int(cfg["eval"]["max_new_tokens"])
    cache = Path(cfg["cache_dir"])
    base_folder = Path(cfg["base_folder"])
    t0 = time.monotonic()
    dtype = str(cfg.get("dtype", "int8"))  # as the model workers serve (`local_dtype`)
    base = load_causal_lm(base_folder, fmt="hf", sha256=cfg["base_sha256"], cache_root=cache, dtype=dtype, module=False)
    base_out = engine_answers(base, prompts, max_new, cache)
    base_s = time.monotonic() - t0
    del base
    t0 = time.monotonic()
    if cfg["method"] == "full":
        merged = folder / MERGED
        key = file_sha256(merged / "model.safetensors")
        tuned = load_causal_lm(merged, fmt="hf", sha256=key, cache_root=cache, dtype=dtype, module=False)
    else:
        adapter = folder / ADAPTER
        key = file_sha256(adapter / "adapter_model.safetensors")
        tuned = load_causal_lm(
            base_folder,
            fmt="hf",
            sha256=cfg["base_sha256"],
            cache_root=cache,
            dtype=dtype,
            adapter=adapter,
            adapter_sha256=key,
        )
    tuned_out = engine_answers(tuned, prompts, max_new, cache)
    result = {"base": base_out, "tuned": tuned_out, "base_seconds": base_s, "tuned_seconds": time.monotonic() - t0}
    tmp = folder / f".{EVAL_OUTPUTS}.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, folder / EVAL_OUTPUTS)
    return result


def main(argv: list[str]) -> int:
    """`train FOLDER` or `generate FOLDER`."""
    if len(argv) != 2 or argv[0] not in ("train", "generate"):
        print("usage: python -m podium.finetune.trainer train|generate FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[1])
    (train if argv[0] == "train" else generate)(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
