"""The fine-tuning domain's logic: planning a blueprint against its data, storing it content-hashed, reading
and diffing blueprints.

`plan` takes a few choices (or a whole or partial blueprint), pins the base model and datasets to versions,
checks that the base model trains here and the fields exist and are text, measures every training row's
length in tokens with the base model's own tokenizer (loaded alone, never the weights), fills in defaults
for the model's size and the data's, applies the truncation policy, estimates time and memory on this
machine, and stores the blueprint under the id its content gives it.

Estimates (rough, calibrated on this machine's measurement in issue 19: a LoRA of r=16 on q/k/v/o of
SmolLM2-135M, 134.5M parameters, trains at ~209 tokens/s on 2 CPU cores in bf16 mixed precision, the
trainer's default; bench/finetune.py):

- time: a training token costs ~k·N floating-point operations for N parameters (k = 4 with frozen base
  weights, LoRA and QLoRA: forward and the activations' backward; k = 6 for a full fine-tune, which adds
  the weights' gradients), so tokens/s = 209 · (134.5M / N) · (cores / 2) · (4 / k). Tokens trained per
  epoch are the rows' lengths after truncation, padded to the longest row of each batch (packed into
  max_length blocks with `packing`); seconds = tokens trained / tokens/s.
- memory: fp32 weights 4·N bytes (QLoRA 0.55·N) + 16 bytes per trainable parameter (weight, gradient,
  Adam's two moments) + activations b·s·L·h·64 bytes + logits and their gradient b·s·V·8 bytes + attention
  scores b·heads·s²·L·8 bytes (b batch size, s the longest sequence of a batch: max_length when packing, else
  the longest row kept; L layers, h hidden size, V vocabulary), plus ~400 MB for the runtime. No gradient
  checkpointing; an upper bound more than a prediction.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import math
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from podium.auth.service import record_audit
from podium.core.errors import InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.data import service as data_service
from podium.finetune import spec as ft_spec
from podium.finetune.store import FinetuneBlueprint
from podium.models import service as models_service
from podium.models.worker.derived import check as derived_check
from podium.models.worker.loader import CONVERTED

MAX_MEASURED_ROWS = 200_000  # rows of a dataset version measured in tokens (the rest are not read)
MAX_LISTED = 500
REFERENCE_PARAMETERS = 134_515_008  # SmolLM2-135M
REFERENCE_TOKENS_PER_S = 209.0  # its LoRA (r=16, q/k/v/o) on 2 cores here, bf16 mixed (bench/finetune.py)
REFERENCE_CORES = 2
RUNTIME_BYTES = 400 * 1024 * 1024
TEXT_TYPES = ("string", "large_string", "string_view")

# --- views -----------------------------------------------------------------------------------------------


class PlanRequest(BaseModel):
    """What `plan` starts from: a few choices, and/or a whole or partial blueprint (`source` as YAML or
    `blueprint` as an object); the choices win over the blueprint, defaults fill in the rest."""

    model_config = ConfigDict(extra="forbid")

    base_model: str | None = Field(None, max_length=ft_spec.MAX_REF)
    train: str | None = Field(None, max_length=ft_spec.MAX_REF)
    validation: str | None = Field(None, max_length=ft_spec.MAX_REF)
    prompt_field: str | None = Field(None, max_length=ft_spec.MAX_FIELD)
    completion_field: str | None = Field(None, max_length=ft_spec.MAX_FIELD)
    messages_field: str | None = Field(None, max_length=ft_spec.MAX_FIELD)
    method: str | None = Field(None, max_length=20)
    learning_rate: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    max_length: int | None = None
    truncation: str | None = Field(None, max_length=20)
    source: str | None = Field(None, max_length=ft_spec.MAX_YAML_BYTES)
    blueprint: dict[str, Any] | None = None


class BlueprintInfo(BaseModel):
    """A blueprint in a list."""

    id: str
    base_model: str
    train: str
    method: str
    estimated_seconds: float | None
    created_by: str
    created_at: datetime


class BlueprintDetail(BlueprintInfo):
    """A blueprint whole: its settings, its YAML, its content hash and what `plan` measured."""

    content_hash: str
    spec: dict[str, Any]
    source: str
    report: dict[str, Any]


class Planned(BaseModel):
    """The result of a plan: the blueprint, and whether it is new (False: the same one was stored already)."""

    created: bool
    blueprint: BlueprintDetail


class Change(BaseModel):
    field: str
    a: Any = None
    b: Any = None


class Diff(BaseModel):
    """Two blueprints compared: the settings that differ (dotted paths) and a unified diff of their YAML."""

    a: str
    b: str
    changes: list[Change]
    diff: str


# --- the base model --------------------------------------------------------------------------------------


class Base(BaseModel):
    """The base model as planning needs it: its pinned ref, size, shapes and tokenizer folder."""

    ref: str
    parameters: int
    context_length: int | None
    config: dict[str, Any]
    tokenizer_folder: str


def _refuse_base(ref: str, why: str) -> InvalidInput:
    return InvalidInput(f"base_model {ref!r} cannot be fine-tuned here: {why}", details={"field": "base_model"})


def base_model(platform: Platform, actor: Actor, ref: str) -> Base:
    """The base model's version, if it can be trained on this machine: a local chat model whose files are a
    transformers folder, or a GGUF file whose converted folder exists (serving it once converts it)."""
    try:
        version = models_service.get_version(platform, actor, ref)
    except (NotFound, InvalidInput) as exc:
        raise type(exc)(f"base_model: {exc.message}", details={"field": "base_model"}) from None
    pinned = f"{version.model}@{version.version}"
    if version.provider != "local" or not version.files:
        raise _refuse_base(pinned, f"it is served by the {version.provider} provider (no weights here)")
    if version.task not in ("chat", "completion", "text-generation"):
        raise _refuse_base(pinned, f"it is a {version.task} model, not a language model")
    settings = platform.settings
    if version.format == "gguf":
        folder = None
        for root in (settings.effective_model_cache_dir, settings.effective_cache_dir):
            candidate = root / CONVERTED / version.sha256
            if derived_check(candidate, CONVERTED, version.sha256) is None:
                folder = candidate
                break
        if folder is None:
            raise _refuse_base(
                pinned,
                "it is a GGUF file without a converted folder (serve it once, e.g. `podium serve --models "
                f"{version.model}`, to convert it)",
            )
    elif version.format == "hf":
        folder = models_service.materialize(platform.blobs, version, settings.effective_cache_dir / "materialized")
    else:
        raise _refuse_base(pinned, f"its format {version.format!r} is not a transformers model")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise _refuse_base(pinned, "its folder has no readable config.json") from None
    parameters = version.parameters or _parameters(config)
    return Base(
        ref=pinned,
        parameters=parameters,
        context_length=version.context_length or config.get("max_position_embeddings"),
        config=config,
        tokenizer_folder=str(folder),
    )


def _shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear module of one decoder layer of a Llama-shaped model."""
    h = int(config.get("hidden_size", 0))
    heads = int(config.get("num_attention_heads", 1))
    kv = int(config.get("num_key_value_heads", heads))
    hd = int(config.get("head_dim") or (h // max(heads, 1)))
    inter = int(config.get("intermediate_size", 4 * h))
    return {
        "q_proj": (h, heads * hd),
        "k_proj": (h, kv * hd),
        "v_proj": (h, kv * hd),
        "o_proj": (heads * hd, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }


def _parameters(config: dict[str, Any]) -> int:
    """A Llama-shaped model's parameter count from its config (embeddings, layers, norms, untied head)."""
    h, layers, vocab = (int(config.get(k, 0)) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
    per_layer = sum(i * o for i, o in _shapes(config).values()) + 2 * h
    head = 0 if config.get("tie_word_embeddings", True) else vocab * h
    return vocab * h + layers * per_layer + h + head


def lora_parameters(config: dict[str, Any], lora: ft_spec.LoraSpec) -> int:
    """Trainable parameters of a LoRA: r·(in + out) per adapted module per layer."""
    shapes = _shapes(config)
    unknown = [m for m in lora.target_modules if m not in shapes]
    if unknown:
        raise InvalidInput(
            f"blueprint field 'lora.target_modules': {unknown[0]!r} is not a module of the base model"
            f" (its modules: {', '.join(shapes)})",
            details={"field": "lora.target_modules"},
        )
    layers = int(config.get("num_hidden_layers", 0))
    return layers * sum(lora.r * (shapes[m][0] + shapes[m][1]) for m in lora.target_modules)


# --- the data --------------------------------------------------------------------------------------------


class Rows(BaseModel):
    """A dataset version as planning sees it: pinned ref, row count and the training texts measured."""

    ref: str
    rows: int
    lengths: list[int]  # tokens of each measured row, as the model will see it


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str) -> Any:
    """The tokenizer of a model folder, alone (the weights are never read); kept for the next plan."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)  # nosec B615  # a local folder (no hub download)


def tokenizer_of(folder: str) -> Any:
    """A tokenizer of its own (not the planning cache's shared one), for a job that uses it for a while."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)  # nosec B615  # a local folder (no hub download)


# one plan at a time uses the tokenizers: a fast tokenizer's call sets its padding and truncation, and two
# threads doing that at once fail ("Already borrowed"); loading one twice at once would waste seconds
_tokenizer_lock = threading.Lock()


def _dataset(platform: Platform, actor: Actor, ref: str, field: str) -> data_service.VersionInfo:
    try:
        return data_service.get_version(platform, actor, ref)
    except NotFound:  # another project's dataset too: the caller's own words only
        raise NotFound(f"{field}: dataset {ref!r} not found", details={"field": field}) from None
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc.message}", details={"field": field}) from None


def _check_columns(info: data_service.VersionInfo, data: ft_spec.DataSpec, field: str) -> None:
    types = {c.name: c.type for c in info.columns}
    wanted = (
        [("data.messages_field", data.messages_field)]
        if data.messages_field
        else [("data.prompt_field", data.prompt_field), ("data.completion_field", data.completion_field)]
    )
    for where, column in wanted:
        assert column is not None
        if column not in types:
            raise InvalidInput(
                f"{where}: {info.ref} ({field}) has no column {column!r} (its columns: {', '.join(types) or 'none'})",
                details={"field": where},
            )
        kind = types[column]
        ok = kind.startswith(("list", "large_list")) if where == "data.messages_field" else kind in TEXT_TYPES
        if not ok:
            expected = "a list of {role, content} messages" if where == "data.messages_field" else "text"
            raise InvalidInput(
                f"{where}: column {column!r} of {info.ref} is {kind}, not {expected}", details={"field": where}
            )


def _texts(platform: Platform, actor: Actor, ref: str, data: ft_spec.DataSpec, tokenizer: Any) -> Iterator[str]:
    """Each row as the training text the model will see (through the chat template, if the blueprint uses it)."""
    use_template = data.chat_template
    if use_template and not getattr(tokenizer, "chat_template", None):
        raise InvalidInput(
            "data.chat_template: the base model's tokenizer has no chat template; set chat_template: false",
            details={"field": "data.chat_template"},
        )
    eos = tokenizer.eos_token or ""
    seen = 0
    for table in data_service.iter_batches(platform, actor, ref):
        if data.messages_field:
            conversations = [
                [{"role": str(m.get("role", "user")), "content": str(m.get("content") or "")} for m in (row or [])]
                for row in table.column(data.messages_field).to_pylist()
            ]
        else:
            assert data.prompt_field and data.completion_field
            prompts = table.column(data.prompt_field).to_pylist()
            completions = table.column(data.completion_field).to_pylist()
            conversations = [
                [{"role": "user", "content": p or ""}, {"role": "assistant", "content": c or ""}]
                for p, c in zip(prompts, completions, strict=True)
            ]
        for messages in conversations:
            if seen >= MAX_MEASURED_ROWS:
                return
            seen += 1
            if use_template:
                yield str(tokenizer.apply_chat_template(messages, tokenize=False))
            else:
                yield "\n".join(m["content"] for m in messages) + eos


def _measure(
    platform: Platform, actor: Actor, info: data_service.VersionInfo, data: ft_spec.DataSpec, base: Base
) -> Rows:
    with _tokenizer_lock:
        tokenizer = _tokenizer(base.tokenizer_folder)
    lengths: list[int] = []
    batch: list[str] = []

    def flush() -> None:
        if batch:
            with _tokenizer_lock:
                ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
            lengths.extend(len(x) for x in ids)
            batch.clear()

    for text in _texts(platform, actor, info.ref, data, tokenizer):
        batch.append(text)
        if len(batch) >= 256:
            flush()
    flush()
    return Rows(ref=info.ref, rows=info.row_count, lengths=lengths)


# --- defaults --------------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid over `base`, mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _choices(req: PlanRequest) -> dict[str, Any]:
    """The request's choices as a partial blueprint."""
    data = {
        k: getattr(req, k)
        for k in ("train", "validation", "prompt_field", "completion_field", "messages_field")
        if getattr(req, k) is not None
    }
    hyper = {
        k: getattr(req, k)
        for k in ("learning_rate", "epochs", "max_steps", "max_length", "truncation")
        if getattr(req, k) is not None
    }
    out: dict[str, Any] = {}
    if req.base_model is not None:
        out["base_model"] = req.base_model
    if req.method is not None:
        out["method"] = req.method
    if data:
        out["data"] = data
    if hyper:
        out["hyperparameters"] = hyper
    return out


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _defaults(
    given: dict[str, Any], parameters: int, rows: int, lengths: list[int], context: int | None
) -> dict[str, Any]:
    """Defaults for what the caller left out, by the base model's size and the data's."""
    method = given.get("method", "lora")
    hyper: dict[str, Any] = {
        "learning_rate": 2e-5 if method == "full" else (2e-4 if parameters < 1_000_000_000 else 1e-4),
        "batch_size": 8 if parameters < 500_000_000 else 4,
        "gradient_accumulation": 1 if parameters < 500_000_000 else 2,
        "packing": rows >= 10_000,
    }
    given_hyper = given.get("hyperparameters") or {}
    if not isinstance(given_hyper, dict) or ("epochs" not in given_hyper and "max_steps" not in given_hyper):
        hyper["epochs"] = 3 if rows <= 1_000 else 2 if rows <= 10_000 else 1
    ceiling = min(context or 2048, 2048)
    longest = max(lengths, default=0)
    hyper["max_length"] = max(64, min(ceiling, _next_power_of_two(longest)))
    out: dict[str, Any] = {"method": "lora", "hyperparameters": hyper, "data": {"chat_template": True}}
    if method != "full":
        r = 16 if parameters <= 3_000_000_000 else 8
        out["lora"] = {"r": r, "alpha": 2 * r, "dropout": 0.05, "target_modules": list(ft_spec.LORA_TARGETS)}
    return out


# --- estimates -------------------------------------------------------------------------------------------


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _batch_tokens(lengths: list[int], batch: int, max_length: int, packing: bool) -> int:
    """Tokens one epoch computes: packed into max_length blocks, or padded to each batch's longest row."""
    if packing:
        return math.ceil(sum(lengths) / max_length) * max_length
    return sum(max(lengths[i : i + batch]) * len(lengths[i : i + batch]) for i in range(0, len(lengths), batch))


def estimate(bp: ft_spec.Blueprint, base: Base, lengths: list[int], trainable: int) -> dict[str, Any]:
    """Time and memory of the blueprint on this machine (the formula is in the module's docstring)."""
    h = bp.hyperparameters
    n = base.parameters
    cores = _cores()
    k = 6 if bp.method == "full" else 4
    tokens_per_s = REFERENCE_TOKENS_PER_S * (REFERENCE_PARAMETERS / n) * (cores / REFERENCE_CORES) * (4 / k)
    sequences_per_step = h.batch_size * h.gradient_accumulation
    per_epoch_steps = max(1, math.ceil(len(lengths) / sequences_per_step))
    steps = h.max_steps if h.max_steps is not None else max(1, math.ceil((h.epochs or 1) * per_epoch_steps))
    epoch_tokens = _batch_tokens(lengths, h.batch_size, h.max_length, h.packing) if lengths else 0
    tokens = int(epoch_tokens * steps / per_epoch_steps)
    c = base.config
    hidden, layers = int(c.get("hidden_size", 0)), int(c.get("num_hidden_layers", 0))
    heads, vocab = int(c.get("num_attention_heads", 1)), int(c.get("vocab_size", 0))
    b, s = h.batch_size, (h.max_length if h.packing else min(h.max_length, max(lengths, default=1)))
    weights = int(0.55 * n) if bp.method == "qlora" else 4 * n
    optimizer = 16 * trainable
    activations = b * s * layers * hidden * 64 + b * s * vocab * 8 + b * heads * s * s * layers * 8
    memory = weights + optimizer + activations + RUNTIME_BYTES
    available = _available_memory()
    return {
        "cores": cores,
        "tokens_per_second": round(tokens_per_s, 1),
        "steps": steps,
        "sequences_per_step": sequences_per_step,
        "tokens": tokens,
        "seconds": round(tokens / tokens_per_s, 1),
        "memory_bytes": memory,
        "available_memory_bytes": available,
        "fits_in_memory": None if available is None else memory <= available,
        "formula": "tokens/s = 209 * (134.5M / parameters) * (cores / 2) * (4 / k), k = 4 (LoRA) or 6 (full)",
    }


# --- plan ------------------------------------------------------------------------------------------------


def _qlora_available() -> bool:
    """QLoRA needs bitsandbytes and a CUDA device."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _given(req: PlanRequest) -> dict[str, Any]:
    if req.source is not None and req.blueprint is not None:
        raise InvalidInput(
            "give the blueprint as 'source' (YAML) or 'blueprint' (an object), not both", details={"field": "source"}
        )
    start = ft_spec.parse_yaml(req.source) if req.source is not None else dict(req.blueprint or {})
    return _merge(start, _choices(req))


def _pin(given: dict[str, Any], base: Base, train: str, validation: str | None) -> dict[str, Any]:
    data = dict(given.get("data") or {})
    data["train"] = train
    if validation is not None:
        data["validation"] = validation
    return {**given, "base_model": base.ref, "data": data}


def plan(platform: Platform, actor: Actor, req: PlanRequest) -> Planned:
    """Build a blueprint from the request (defaults for the rest), check it against the base model and the
    data, estimate it, and store it in the caller's project (the same blueprint returns the stored one)."""
    actor.require("member", "plan fine-tunes")
    given = _given(req)
    base_ref = given.get("base_model")
    if not isinstance(base_ref, str) or not base_ref:
        raise InvalidInput("blueprint field 'base_model': is required", details={"field": "base_model"})
    data_given = given.get("data")
    if not isinstance(data_given, dict) or not isinstance(data_given.get("train"), str):
        raise InvalidInput("blueprint field 'data.train': is required", details={"field": "data.train"})
    # the settings that do not depend on the data, checked before anything is read
    static = _merge(_defaults(given, REFERENCE_PARAMETERS, 0, [], None), given)
    static = _merge(static, {"base_model": "x@1", "data": {"train": "x@1", "validation": None}})
    ft_spec.load(static)
    if given.get("method") == "qlora" and not _qlora_available():
        raise InvalidInput(
            "blueprint field 'method': qlora needs bitsandbytes and a CUDA device, which this machine lacks; use lora",
            details={"field": "method"},
        )
    base = base_model(platform, actor, base_ref)
    train_info = _dataset(platform, actor, data_given["train"], "data.train")
    validation = data_given.get("validation")
    val_info = _dataset(platform, actor, validation, "data.validation") if isinstance(validation, str) else None
    draft = ft_spec.load(static)
    _check_columns(train_info, draft.data, "data.train")
    if val_info is not None:
        _check_columns(val_info, draft.data, "data.validation")
    train_rows = _measure(platform, actor, train_info, draft.data, base)
    if not train_rows.lengths:
        raise InvalidInput(f"data.train: {train_info.ref} has no rows", details={"field": "data.train"})
    val_rows = _measure(platform, actor, val_info, draft.data, base) if val_info is not None else None
    full = _merge(
        _defaults(given, base.parameters, train_info.row_count, train_rows.lengths, base.context_length),
        _pin(given, base, train_info.ref, val_info.ref if val_info else None),
    )
    given_eval = full.get("eval")
    if isinstance(given_eval, dict) and isinstance(given_eval.get("dataset"), str):  # pinned, as data is
        full["eval"] = {**given_eval, "dataset": _dataset(platform, actor, given_eval["dataset"], "eval.dataset").ref}
    bp = ft_spec.load(full)
    h = bp.hyperparameters
    if base.context_length and h.max_length > base.context_length:
        raise InvalidInput(
            f"blueprint field 'hyperparameters.max_length': {h.max_length} is longer than the base model's"
            f" context ({base.context_length} tokens)",
            details={"field": "hyperparameters.max_length"},
        )
    _check_eval(platform, actor, bp)
    report = _report(bp, train_rows, val_rows)
    if h.truncation == "refuse" and report["train"]["too_long"] + (report.get("validation") or {}).get("too_long", 0):
        too_long = report["train"]["too_long"] + (report.get("validation") or {}).get("too_long", 0)
        raise InvalidInput(
            f"blueprint field 'hyperparameters.max_length': {too_long} row(s) are longer than {h.max_length}"
            f" tokens (the longest has {report['train']['longest']}) and truncation is 'refuse'; raise max_length"
            " or choose truncate or drop",
            details={"field": "hyperparameters.max_length", "too_long": too_long},
        )
    kept = [min(n, h.max_length) for n in train_rows.lengths if h.truncation != "drop" or n <= h.max_length]
    if not kept:
        raise InvalidInput(
            f"blueprint field 'hyperparameters.max_length': every row is longer than {h.max_length} tokens and"
            " truncation is 'drop'",
            details={"field": "hyperparameters.max_length"},
        )
    trainable = base.parameters if bp.method == "full" else lora_parameters(base.config, bp.lora or ft_spec.LoraSpec())
    report["base_model"] = {"ref": base.ref, "parameters": base.parameters, "context_length": base.context_length}
    report["trainable_parameters"] = trainable
    report["estimate"] = estimate(bp, base, kept, trainable)
    return _store(platform, actor, bp, report)


def _check_eval(platform: Platform, actor: Actor, bp: ft_spec.Blueprint) -> None:
    """The eval section: its evaluators build, the gate's score is one of theirs, and its dataset (default the
    validation data) exists and has the prompt column."""
    from podium.evals.evaluators.base import build

    ev = bp.eval
    if not ev.evaluators:
        if ev.min_score is not None or ev.better_than_base_by > 0:
            raise InvalidInput(
                "blueprint field 'eval.evaluators': the gate needs evaluators to score the answers",
                details={"field": "eval.evaluators"},
            )
        return
    names = []
    for i, spec in enumerate(ev.evaluators):
        try:
            names.append(build(spec).name)
        except (InvalidInput, ValueError, TypeError) as exc:
            said = exc.message if isinstance(exc, InvalidInput) else str(exc)
            raise InvalidInput(
                f"blueprint field 'eval.evaluators[{i}]': {said}", details={"field": f"eval.evaluators[{i}]"}
            ) from None
    if ev.score not in names:
        raise InvalidInput(
            f"blueprint field 'eval.score': {ev.score!r} is not one of the evaluators' scores ({', '.join(names)})",
            details={"field": "eval.score"},
        )
    ref = ev.dataset or bp.data.validation
    if ref is None:
        raise InvalidInput(
            "blueprint field 'eval.dataset': name the held-out rows the models answer (or give data.validation)",
            details={"field": "eval.dataset"},
        )
    if ev.dataset is not None:
        _check_columns(_dataset(platform, actor, ev.dataset, "eval.dataset"), bp.data, "eval.dataset")


def _report(bp: ft_spec.Blueprint, train: Rows, val: Rows | None) -> dict[str, Any]:
    limit = bp.hyperparameters.max_length
    policy = bp.hyperparameters.truncation

    def one(rows: Rows) -> dict[str, Any]:
        ordered = sorted(rows.lengths)
        too_long = sum(1 for n in rows.lengths if n > limit)
        return {
            "ref": rows.ref,
            "rows": rows.rows,
            "measured_rows": len(rows.lengths),
            "tokens": sum(rows.lengths),
            "longest": ordered[-1] if ordered else 0,
            "median": ordered[len(ordered) // 2] if ordered else 0,
            "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0,
            "too_long": too_long,
            "truncated": too_long if policy == "truncate" else 0,
            "dropped": too_long if policy == "drop" else 0,
        }

    return {"train": one(train), "validation": one(val) if val is not None else None}


# --- storage and reads -----------------------------------------------------------------------------------


def _info(row: FinetuneBlueprint) -> BlueprintInfo:
    return BlueprintInfo(
        id=row.id,
        base_model=row.base_model,
        train=row.train,
        method=str(row.spec.get("method", "")),
        estimated_seconds=(row.report.get("estimate") or {}).get("seconds"),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _detail(row: FinetuneBlueprint) -> BlueprintDetail:
    return BlueprintDetail(
        **_info(row).model_dump(), content_hash=row.content_hash, spec=row.spec, source=row.source, report=row.report
    )


def _store(platform: Platform, actor: Actor, bp: ft_spec.Blueprint, report: dict[str, Any]) -> Planned:
    blueprint_id = ft_spec.blueprint_id(bp)
    project = actor.project_id

    def existing() -> FinetuneBlueprint | None:
        owner = FinetuneBlueprint.project_id.is_(None) if project is None else FinetuneBlueprint.project_id == project
        with platform.db.read_session() as s:
            return s.scalars(select(FinetuneBlueprint).where(FinetuneBlueprint.id == blueprint_id, owner)).first()

    found = existing()
    if found is not None:
        return Planned(created=False, blueprint=_detail(found))
    row = FinetuneBlueprint(
        pk=new_id("ftr"),
        id=blueprint_id,
        project_id=project,
        content_hash=ft_spec.content_hash(bp),
        spec=bp.model_dump(mode="json"),
        source=ft_spec.to_yaml(bp),
        report=report,
        base_model=bp.base_model,
        train=bp.data.train,
        created_by=actor.label,
    )
    try:
        with platform.db.session() as s:
            s.add(row)
            s.flush()
            record_audit(
                s,
                actor,
                "finetune.blueprint.create",
                "finetune_blueprint",
                blueprint_id,
                details={"base_model": bp.base_model, "train": bp.data.train},
            )
            detail = _detail(row)
    except IntegrityError:  # the same blueprint stored at the same time
        found = existing()
        if found is None:
            raise
        return Planned(created=False, blueprint=_detail(found))
    return Planned(created=True, blueprint=detail)


def _find(platform: Platform, actor: Actor, blueprint_id: str, field: str = "id") -> FinetuneBlueprint:
    scope = actor.scope()
    with platform.db.read_session() as s:
        q = select(FinetuneBlueprint).where(FinetuneBlueprint.id == blueprint_id)
        rows = [
            r for r in s.scalars(q.order_by(FinetuneBlueprint.created_at)) if scope is None or r.project_id in scope
        ]
    if not rows:
        raise NotFound(f"blueprint {blueprint_id!r} not found", details={"field": field})
    own = [r for r in rows if r.project_id == actor.project_id]
    return (own or rows)[0]


def list_blueprints(platform: Platform, actor: Actor) -> list[BlueprintInfo]:
    """The blueprints the actor sees, newest first."""
    actor.require("viewer", "read fine-tuning blueprints")
    scope = actor.scope()
    with platform.db.read_session() as s:
        q = select(FinetuneBlueprint).order_by(FinetuneBlueprint.created_at.desc()).limit(MAX_LISTED)
        if scope is not None:
            projects = [p for p in scope if p is not None]
            q = q.where(FinetuneBlueprint.project_id.in_(projects) | FinetuneBlueprint.project_id.is_(None))
        return [_info(r) for r in s.scalars(q)]


def get_blueprint(platform: Platform, actor: Actor, blueprint_id: str) -> BlueprintDetail:
    """One blueprint by id, of the actor's project (or global)."""
    actor.require("viewer", "read fine-tuning blueprints")
    return _detail(_find(platform, actor, blueprint_id))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def diff(platform: Platform, actor: Actor, a: str, b: str) -> Diff:
    """What differs between two blueprints: each setting (dotted path) and a unified diff of their YAML."""
    actor.require("viewer", "read fine-tuning blueprints")
    ra, rb = _find(platform, actor, a, "a"), _find(platform, actor, b, "b")
    fa, fb = _flatten(ra.spec), _flatten(rb.spec)
    changes = [
        Change(field=k, a=fa.get(k), b=fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)
    ]
    lines = difflib.unified_diff(ra.source.splitlines(keepends=True), rb.source.splitlines(keepends=True), a, b)
    return Diff(a=a, b=b, changes=changes, diff="".join(lines))
