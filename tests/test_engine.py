"""The local engine on small real models: exactness against transformers, batch invariance, per-request
parameters, seeds, cancellation, queue limits, the transformers fallback and LoRA adapters."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from podium.models.worker.api import Finished, QueueFull, SeqRequest, TokenOut
from podium.models.worker.engine import Engine, HFBackend
from podium.models.worker.fastllama import FastLlama
from podium.models.worker.loader import load_causal_lm


def load(path: Path, dtype: str = "float32", adapter: Path | None = None) -> Any:
    return load_causal_lm(
        path, fmt="hf", sha256="unused", cache_root=path.parent / "cache", dtype=dtype, adapter=adapter
    )


class Collector:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.finished: Finished | None = None
        self.done = threading.Event()

    def emit(self, ev: Any) -> None:
        if isinstance(ev, TokenOut):
            self.tokens.append(ev.token_id)
        else:
            self.finished = ev
            self.done.set()


def request(prompt: list[int], eos: list[int], **kw: Any) -> tuple[SeqRequest, Collector]:
    col = Collector()
    params = {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": None, "logprobs": None} | kw
    return SeqRequest(id=str(id(col)), prompt_ids=prompt, eos_ids=eos, emit=col.emit, **params), col


def hf_greedy(lm: Any, prompt: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = lm.model.generate(
            torch.tensor([prompt]),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            min_new_tokens=n,
        )
    return [int(t) for t in out[0][len(prompt) :]]


PROMPT = [101, 2023, 2003, 1037, 3231, 1997, 1996, 3194, 102]


def test_fast_path_matches_transformers(tiny_models: dict[str, Path]) -> None:
    lm = load(tiny_models["llama"])
    fast = FastLlama(lm.model, max_slots=4, max_len=256)
    with torch.no_grad():
        ref = lm.model(torch.tensor([PROMPT])).logits[0, -1]
    assert torch.allclose(fast.prefill(PROMPT, 0), ref, atol=1e-4)
    # greedy continuation step by step equals transformers' generate
    tokens, pos, logits = [], len(PROMPT), fast.prefill(PROMPT, 1)
    for _ in range(12):
        nxt = int(logits.argmax())
        tokens.append(nxt)
        logits = fast.decode(torch.tensor([nxt, nxt]), torch.tensor([pos, pos]))[1]
        pos += 1
    assert tokens == hf_greedy(lm, PROMPT, 12)


def test_int8_rows_are_batch_invariant(tiny_models: dict[str, Path]) -> None:
    lm = load(tiny_models["llama"])
    fast = FastLlama(lm.model, max_slots=8, max_len=256)
    fast.quantize([PROMPT * 3])
    prompts = [PROMPT, PROMPT[:4], [101, 7592, 2088, 102] * 5, PROMPT[2:]]
    for slot, p in enumerate(prompts):
        fast.prefill(p, slot)
    tokens = torch.tensor([7592, 2088, 3231, 1996])
    positions = torch.tensor([len(p) for p in prompts])
    together = fast.decode(tokens, positions)
    fast.prefill(prompts[0], 0)
    alone = fast.decode(tokens[:1], positions[:1])
    assert torch.equal(together[0], alone[0])


def test_engine_honours_each_requests_parameters(tiny_models: dict[str, Path]) -> None:
    lm = load(tiny_models["llama"])
    engine = Engine(lm, max_batch=4, max_queue=8)
    engine.start()
    try:
        greedy, g = request(PROMPT, [], max_new_tokens=10)
        short, s = request(PROMPT, [], max_new_tokens=3)
        seeded_a, a = request(PROMPT, [], max_new_tokens=12, temperature=1.0, seed=7)
        seeded_b, b = request(PROMPT[:5], [], max_new_tokens=12, temperature=0.9, top_p=0.8, seed=7)
        engine.submit_many([greedy, short, seeded_a, seeded_b])
        for col in (g, s, a, b):
            assert col.done.wait(60)
        assert g.tokens == hf_greedy(lm, PROMPT, 10)
        assert len(s.tokens) == 3 and s.finished and s.finished.reason == "length"
        assert s.tokens == g.tokens[:3]
        # the same seed alone gives the same tokens as it did in a batch with others
        again, a2 = request(PROMPT, [], max_new_tokens=12, temperature=1.0, seed=7)
        engine.submit_many([again])
        assert a2.done.wait(60)
        assert a2.tokens == a.tokens
        other, o = request(PROMPT, [], max_new_tokens=12, temperature=1.0, seed=8)
        engine.submit_many([other])
        assert o.done.wait(60)
        assert o.tokens != a.tokens
        # an end-of-sequence token stops a sequence with reason "stop"
        stop_token = a.tokens[3]
        cut = a.tokens.index(stop_token)
        eos_req, e = request(PROMPT, [stop_token], max_new_tokens=12, temperature=1.0, seed=7)
        engine.submit_many([eos_req])
        assert e.done.wait(60)
        assert e.tokens == a.tokens[:cut] and e.finished and e.finished.reason == "stop"
    finally:
        engine.stop()


def test_cancel_frees_the_slot_and_queue_limit(tiny_models: dict[str, Path]) -> None:
    lm = load(tiny_models["llama"])
    engine = Engine(lm, max_batch=1, max_queue=1)
    engine.start()
    try:
        long_req, col = request(PROMPT, [], max_new_tokens=200)
        engine.submit_many([long_req])
        deadline = time.monotonic() + 30
        while len(col.tokens) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        queued, q = request(PROMPT, [], max_new_tokens=2)
        engine.submit_many([queued])  # fills the one waiting place
        extra, _ = request(PROMPT, [], max_new_tokens=2)
        with pytest.raises(QueueFull):
            engine.submit_many([extra])
        engine.cancel(long_req)
        assert col.done.wait(30) and col.finished and col.finished.reason == "cancelled"
        assert len(col.tokens) < 200
        assert q.done.wait(30) and len(q.tokens) == 2  # the freed slot served the queued request
        assert engine.stats()["active"] == 0 and engine.stats()["waiting"] == 0
    finally:
        engine.stop()


def test_transformers_fallback_for_other_architectures(tiny_models: dict[str, Path]) -> None:
    lm = load(tiny_models["gpt2"])
    engine = Engine(lm, max_batch=2)
    engine.start()
    assert isinstance(engine.backend, HFBackend)
    try:
        r1, c1 = request(PROMPT, [], max_new_tokens=8)
        r2, c2 = request(PROMPT[:3], [], max_new_tokens=5)
        engine.submit_many([r1, r2])
        assert c1.done.wait(60) and c2.done.wait(60)
        assert c1.tokens == hf_greedy(lm, PROMPT, 8)
        assert c2.tokens == hf_greedy(lm, PROMPT[:3], 5)
    finally:
        engine.stop()


def test_lora_adapter_is_applied(tiny_models: dict[str, Path]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = load(tiny_models["llama"])
    adapted = load(tiny_models["llama"], adapter=tiny_models["lora"])
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"])), str(tiny_models["lora"])
    )
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        got = adapted.model(ids).logits[0, -1]
        want = reference(ids).logits[0, -1]
        plain = base.model(ids).logits[0, -1]
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)
