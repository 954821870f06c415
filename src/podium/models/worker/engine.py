"""The local generation engine: continuous batching over a slot-based KV cache.

One engine thread owns the model. Each iteration it (1) retires cancelled and finished sequences,
(2) admits waiting sequences into free slots and prefills them in chunks under a token budget, so a
long prompt never stalls the others for long, and (3) runs one decode step for every sequence that
has finished its prefill. Each sequence keeps its own max_tokens, temperature, top_p and seed (a
private torch.Generator). Events go back to the HTTP layer through each request's `emit`.

Other work on the model (scoring a prompt, see `scoring`) is a `Job`: a generator run on the same
thread one step per iteration, in the last cache slot, which is kept free for it while it waits or runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from podium.models.worker.api import Finished, QueueFull, SeqRequest, TokenOut
from podium.models.worker.derived import CacheUnwritable, DerivedCache
from podium.models.worker.fastllama import INT8_ALPHA, INT8_FORMAT, FastLlama
from podium.models.worker.loader import LoadedLM, SafetensorsModel

log = logging.getLogger("podium.worker.engine")
CALIBRATION = Path(__file__).with_name("calibration.txt")
INT8 = "int8"  # the derived-cache kind of calibrated int8 weights
INT8_FILE = "int8.safetensors"


@dataclass
class _Active:
    req: SeqRequest
    generator: torch.Generator | None
    prefilled: int = 0  # prompt tokens already in the cache
    position: int = 0  # next cache position
    last_token: int = 0
    generated: int = 0
    started: float = field(default_factory=time.monotonic)
    counts: dict[int, int] = field(default_factory=dict)  # generated tokens, for the penalties
    bias: tuple[torch.Tensor, torch.Tensor] | None = None  # logit_bias as (token ids, values)


JobSteps = Generator[int, None, Any]  # yields after each step (tokens run); returns the job's result


class Job:
    """Work run on the engine thread: `make(backend, slot)` builds the steps; `future` gets the result.

    `slot` is a cache slot no sequence uses while the job runs. A step should take about one prefill
    chunk, so that the sequences being generated advance between steps.
    """

    def __init__(self, make: Callable[[Any, int], JobSteps]):
        self.make = make
        self.future: Future[Any] = Future()
        self.steps: JobSteps | None = None
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        """Drop the job (at its next step if it is running); its future ends cancelled."""
        self.cancelled.set()
        self.future.cancel()


class HFBackend:
    """Fallback for architectures the fast path does not cover: transformers forward, one cache per slot."""

    def __init__(self, model: Any, max_slots: int):
        from transformers import DynamicCache

        self.model = model
        self.caches: list[Any] = [None] * max_slots
        self._cache_cls = DynamicCache

    @torch.inference_mode()
    def prefill(self, tokens: list[int], slot: int, start: int = 0) -> torch.Tensor:
        if start == 0:
            self.caches[slot] = self._cache_cls()
        ids = torch.tensor([tokens])
        pos = torch.arange(start, start + len(tokens)).unsqueeze(0)
        out = self.model(input_ids=ids, position_ids=pos, past_key_values=self.caches[slot], use_cache=True)
        self.caches[slot] = out.past_key_values
        logits: torch.Tensor = out.logits[0, -1].float()
        return logits

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        rows = []
        for b in range(tokens.shape[0]):
            out = self.model(
                input_ids=tokens[b].view(1, 1),
                position_ids=positions[b].view(1, 1),
                past_key_values=self.caches[b],
                use_cache=True,
            )
            self.caches[b] = out.past_key_values
            rows.append(out.logits[0, -1].float())
        return torch.stack(rows)

    def prefill_many(self, chunks: list[tuple[list[int], int, int]]) -> list[torch.Tensor]:
        return [self.prefill(tokens, slot, start) for tokens, slot, start in chunks]

    def move_slot(self, src: int, dst: int, length: int) -> None:
        self.caches[dst] = self.caches[src]
        self.caches[src] = None


def calibration_ids(tokenizer: Any) -> list[list[int]]:
    """The token sequences int8 calibration runs: plain text, and a chat turn in the model's template."""
    text = CALIBRATION.read_text()
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": text[:400]}, {"role": "assistant", "content": text[400:900]}], tokenize=True
    )
    if hasattr(chat, "keys"):
        chat = chat["input_ids"]
    return [list(tokenizer.encode(text)), [int(t) for t in chat]]


def int8_key(weights_key: str, calibration: list[list[int]], max_len: int) -> str:
    """What an int8 state depends on, hashed: the weights, the calibration tokens, the method's parameters."""
    spec = {
        "weights": weights_key,
        "calibration": calibration,
        "max_len": max_len,
        "alpha": INT8_ALPHA,
        "format": INT8_FORMAT,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def quantize_int8(fast: FastLlama, lm: LoadedLM, cache: DerivedCache | None) -> None:
    """Switch the fast path to int8: the state cached for these weights if there is one, else calibrate
    (about 5 s for a 135M model on 2 cores) and cache the result for the next start of any home."""
    calibration = calibration_ids(lm.tokenizer)
    started = time.monotonic()
    if cache is None or not lm.weights_key:
        fast.quantize(calibration)
        log.info("quantised to batch-invariant int8 in %.1fs", time.monotonic() - started)
        return
    made: dict[str, torch.Tensor] = {}

    def build(folder: Path) -> None:
        if not made:  # calibrate once, even if the first cache root cannot take the file
            made.update(fast.quantize(calibration))
            log.info("quantised to batch-invariant int8 in %.1fs", time.monotonic() - started)
        save_file(made, str(folder / INT8_FILE))

    key = int8_key(lm.weights_key, calibration, fast.max_len)
    try:
        entry = cache.get_or_build(INT8, key, build, what="int8 weights")
    except CacheUnwritable as exc:
        log.warning("%s; the int8 weights are not cached", exc)
        if not made:
            fast.quantize(calibration)
        return
    if made:
        return
    try:
        fast.load_int8(load_file(str(entry.path / INT8_FILE)))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # intact on disk, yet not for this model
        log.warning("the cached int8 weights in %s do not load (%s); calibrating instead", entry.path, exc)
        fast.quantize(calibration)
        return
    log.info("int8 weights loaded from the cache in %.1fs", time.monotonic() - started)


def make_backend(lm: LoadedLM, max_slots: int, cache: DerivedCache | None = None) -> Any:
    """The fast Llama-family path where it applies (int8 or fp32), else the transformers fallback."""
    try:
        fast = FastLlama(lm.model, max_slots=max_slots, max_len=lm.context_length)
    except (ValueError, KeyError) as exc:
        log.info("using the transformers fallback engine: %s", exc)
        if isinstance(lm.model, SafetensorsModel):  # mapped for the fast path, which refused it after all
            lm.model = lm.model.module()
        return HFBackend(lm.model, max_slots)
    if lm.dtype == "int8":
        quantize_int8(fast, lm, cache)
    return fast


class Engine:
    """Continuous batching for one causal LM; thread-safe `submit_many` and `cancel`.

    The engine thread builds its own backend (calibration, int8 prepacking) before serving: measured on
    a 2-core CPU, decoding on a thread other than the one that prepared the weights ran at about half
    speed (34 against 60 tok/s on one stream), so every torch call on the weights stays on one thread.
    """

    def __init__(
        self,
        lm: LoadedLM,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        prefill_budget: int = 512,
        cache: DerivedCache | None = None,
    ):
        self.lm = lm
        self.cache = cache  # where int8 weights made for these weights are kept for the next start
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.prefill_budget = prefill_budget
        self.backend: Any = None  # built on the engine thread by `start`
        self._built = threading.Event()
        self._build_error: BaseException | None = None
        self._waiting: deque[SeqRequest] = deque()
        self._slots: list[_Active] = []  # decode-ready first, then at most one prefilling
        self._jobs: deque[Job] = deque()  # the first one runs (in slot max_batch - 1) once a slot is free
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="podium-engine", daemon=True)
        self.steps = 0
        self.tokens = 0

    # --- client side (any thread) -----------------------------------------------------------------

    def start(self) -> None:
        """Start the engine thread; returns once it has built its backend (re-raising a failure)."""
        self._thread.start()
        self._built.wait()
        if self._build_error is not None:
            raise self._build_error

    def stop(self) -> None:
        """Finish every sequence as cancelled and stop the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(30)

    def submit_many(self, reqs: list[SeqRequest]) -> None:
        """Queue sequences (all or none); `QueueFull` when the waiting queue would overflow."""
        with self._cv:
            free = self.max_batch - len(self._slots)
            if len(self._waiting) + len(reqs) > self.max_queue + max(0, free):
                raise QueueFull()
            self._waiting.extend(reqs)
            self._cv.notify_all()

    def submit_job(self, job: Job) -> Job:
        """Queue work on the model (`QueueFull` when as many jobs as `max_queue` are waiting)."""
        with self._cv:
            if self._stopping:
                raise RuntimeError("the engine is stopping")
            if len(self._jobs) >= self.max_queue:
                raise QueueFull()
            self._jobs.append(job)
            self._cv.notify_all()
        return job

    def cancel(self, req: SeqRequest) -> None:
        """Stop a sequence; its slot is freed at the next iteration."""
        req.cancelled.set()
        with self._cv:
            self._cv.notify_all()

    def stats(self) -> dict[str, Any]:
        """Queue depth and activity counters."""
        return {
            "active": len(self._slots),
            "waiting": len(self._waiting),
            "jobs": len(self._jobs),
            "max_batch": self.max_batch,
            "steps": self.steps,
            "tokens": self.tokens,
            "backend": type(self.backend).__name__,
            "dtype": self.lm.dtype,
        }

    # --- engine thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.backend = make_backend(self.lm, self.max_batch, self.cache)
        except BaseException as exc:
            self._build_error = exc
            return
        finally:
            self._built.set()
        while True:
            with self._cv:
                while not self._stopping and not self._waiting and not self._slots and not self._jobs:
                    self._cv.wait()
                if self._stopping:
                    break
            try:
                self._job_step()
                self._iteration()
            except Exception as exc:  # a bug or OOM: fail what is running, keep serving
                log.exception("engine iteration failed")
                for a in self._slots:
                    a.req.emit(Finished("error", f"{type(exc).__name__}: {exc}"))
                self._slots.clear()
        for a in self._slots:
            a.req.emit(Finished("cancelled"))
        self._slots.clear()
        with self._cv:
            while self._waiting:
                self._waiting.popleft().emit(Finished("cancelled"))
            while self._jobs:
                self._end_job(self._jobs.popleft(), CancelledError())

    def _end_job(self, job: Job, result: Any = None, error: BaseException | None = None) -> None:
        if job.steps is not None:
            job.steps.close()
        if job.future.done():  # cancelled before it started
            return
        if isinstance(error, CancelledError) and job.future.cancel():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    def _job_step(self) -> None:
        """One step of the first job: started once the last slot is free (admission keeps it free)."""
        with self._cv:
            job = self._jobs[0] if self._jobs else None
        if job is None:
            return
        if job.cancelled.is_set():
            self._pop_job(job, error=CancelledError())
            return
        if job.steps is None:
            if len(self._slots) >= self.max_batch:
                return  # the slot frees as the sequences in it finish
            if not job.future.set_running_or_notify_cancel():
                self._pop_job(job)
                return
            job.steps = job.make(self.backend, self.max_batch - 1)
        try:
            next(job.steps)
        except StopIteration as done:
            self._pop_job(job, result=done.value)
        except Exception as exc:  # the job fails alone; the sequences go on
            log.exception("engine job failed")
            self._pop_job(job, error=exc)

    def _pop_job(self, job: Job, result: Any = None, error: BaseException | None = None) -> None:
        with self._cv:
            self._jobs.remove(job)
        self._end_job(job, result, error)

    def _ready_count(self) -> int:
        n = 0
        for a in self._slots:
            if a.prefilled < len(a.req.prompt_ids):
                break
            n += 1
        return n

    def _retire(self, index: int, event: Finished) -> None:
        """Free slot `index`, keeping decode-ready sequences contiguous from slot 0."""
        active = self._slots[index]
        active.req.emit(event)
        last = len(self._slots) - 1
        ready = self._ready_count()
        if index < ready:
            # move the last decode-ready sequence into the hole, then the prefilling one behind it
            if index != ready - 1:
                moved = self._slots[ready - 1]
                self.backend.move_slot(ready - 1, index, moved.position)
                self._slots[index] = moved
            if last >= ready:
                pre = self._slots[last]
                self.backend.move_slot(last, ready - 1, pre.prefilled)
                self._slots[ready - 1] = pre
            self._slots.pop()
        else:
            self._slots.pop(index)

    def _iteration(self) -> None:
        # 1. retire cancelled sequences
        for i in range(len(self._slots) - 1, -1, -1):
            if self._slots[i].req.cancelled.is_set():
                self._retire(i, Finished("cancelled"))
        # 2. admit and prefill under a token budget, all chunks in one pass
        budget = self.prefill_budget
        batch: list[tuple[_Active, int, int]] = []  # (sequence, slot, tokens this pass)
        ready = self._ready_count()
        if ready < len(self._slots):  # the sequence whose prefill was cut short last time
            active = self._slots[ready]
            take = min(budget, len(active.req.prompt_ids) - active.prefilled)
            batch.append((active, ready, take))
            budget -= take
        room = self.max_batch - 1 if self._jobs else self.max_batch  # the last slot is the jobs'
        while budget > 0 and len(self._slots) < room:
            with self._cv:
                req = self._waiting.popleft() if self._waiting else None
            if req is None:
                break
            if req.cancelled.is_set():
                req.emit(Finished("cancelled"))
                continue
            gen = None
            if req.temperature > 0:
                gen = torch.Generator()
                gen.manual_seed(req.seed if req.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
            active = _Active(req, gen)
            if req.logit_bias:
                active.bias = (torch.tensor(list(req.logit_bias)), torch.tensor(list(req.logit_bias.values())))
            self._slots.append(active)
            take = min(budget, len(req.prompt_ids))
            batch.append((active, len(self._slots) - 1, take))
            budget -= take
        if batch:
            chunks = [(a.req.prompt_ids[a.prefilled : a.prefilled + n], slot, a.prefilled) for a, slot, n in batch]
            results = self.backend.prefill_many(chunks)
            for a, _, n in batch:
                a.prefilled += n
            # emit first tokens from the highest slot down, so retiring one never moves an unvisited one
            for (a, slot, _), logits in reversed(list(zip(batch, results, strict=True))):
                if a.prefilled == len(a.req.prompt_ids):
                    a.position = a.prefilled
                    self._emit_token(slot, a, logits)
        # 3. one decode step for every decode-ready sequence
        ready = self._ready_count()
        if ready == 0:
            return
        tokens = torch.tensor([a.last_token for a in self._slots[:ready]])
        positions = torch.tensor([a.position for a in self._slots[:ready]])
        logits = self.backend.decode(tokens, positions)
        self.steps += 1
        actives = self._slots[:ready]
        if any(a.req.adjusts for a in actives):
            logits = logits.clone()  # the backend's buffer is left as it was
            for i, a in enumerate(actives):
                if a.req.adjusts:
                    self._adjust(logits[i], a)
        for a in actives:
            a.position += 1
        sampled = self._sample_batch(logits, actives)
        for i in range(ready - 1, -1, -1):
            self._emit_token(i, self._slots[i], logits[i], sampled[i])

    def _emit_token(self, index: int, active: _Active, logits: torch.Tensor, token: int | None = None) -> None:
        """Sample (unless given) the next token for a sequence, emit it, retire the sequence if it is done."""
        req = active.req
        if req.cancelled.is_set():
            self._retire(index, Finished("cancelled"))
            return
        if token is None:
            if req.adjusts:
                logits = logits.clone()
                self._adjust(logits, active)
            token = self._sample_batch(logits.unsqueeze(0), [active])[0]
        if req.constraint is not None and not req.constraint.accept(token):
            # cannot happen with the mask applied; a guard so a grammar bug never emits text it forbids
            self._retire(index, Finished("error", f"the output constraint refused token {token}"))
            return
        if token in req.eos_ids:
            self._retire(index, Finished("stop"))
            return
        if req.presence_penalty or req.frequency_penalty:
            active.counts[token] = active.counts.get(token, 0) + 1
        event = TokenOut(token)
        if req.logprobs is not None:
            lp = torch.log_softmax(logits.float(), dim=-1)
            event.logprob = float(lp[token])
            if req.logprobs > 0:
                values, ids = lp.topk(req.logprobs)
                event.top = [(int(i), float(v)) for i, v in zip(ids, values, strict=True)]
        active.last_token = token
        active.generated += 1
        self.tokens += 1
        req.emit(event)
        if active.generated >= req.max_new_tokens or active.position >= self.lm.context_length:
            self._retire(index, Finished("length"))

    @staticmethod
    def _adjust(row: torch.Tensor, active: _Active) -> None:
        """Change one row of logits in place, as OpenAI defines it: minus the frequency penalty times each
        generated token's count and the presence penalty once per token seen, plus `logit_bias`; then the
        constraint masks what it does not allow next."""
        req = active.req
        if active.counts:
            ids = torch.tensor(list(active.counts))
            counts = torch.tensor(list(active.counts.values()), dtype=row.dtype)
            row[ids] -= counts * req.frequency_penalty + req.presence_penalty
        if active.bias is not None:
            ids, values = active.bias
            row[ids] += values.to(row.dtype)
        if req.constraint is not None:
            req.constraint.apply(row)

    @staticmethod
    def _sample_batch(logits: torch.Tensor, actives: list[_Active]) -> list[int]:
        """Next tokens for a batch: greedy rows by argmax; the others by nucleus sampling with each
        sequence's own generator (softmax and the top-k pre-sort run once for the whole batch)."""
        out = [0] * len(actives)
        greedy = [i for i, a in enumerate(actives) if a.req.temperature <= 0 or a.generator is None]
        if greedy:
            picks = torch.argmax(logits[greedy], dim=-1).tolist()
            for i, t in zip(greedy, picks, strict=True):
                out[i] = int(t)
        sampling = [i for i in range(len(actives)) if i not in set(greedy)]
        if not sampling:
            return out
        temps = torch.tensor([actives[i].req.temperature for i in sampling]).unsqueeze(1)
        probs = torch.softmax(logits[sampling].float() / temps, dim=-1)
        k = min(256, probs.shape[-1])
        heads, orders = torch.topk(probs, k, dim=-1)
        for row, i in enumerate(sampling):
            req, gen = actives[i].req, actives[i].generator
            if req.top_p >= 1.0:
                out[i] = int(torch.multinomial(probs[row], 1, generator=gen))
                continue
            head, order = heads[row], orders[row]
            if float(head.sum()) < req.top_p and k < probs.shape[-1]:  # a flat distribution: sort it all
                head, order = torch.sort(probs[row], descending=True)
            keep = (torch.cumsum(head, dim=-1) - head) < req.top_p
            keep[0] = True
            out[i] = int(order[torch.multinomial(head * keep, 1, generator=gen)])
        return out
