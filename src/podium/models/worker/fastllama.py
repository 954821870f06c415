"""A compact Llama-family forward pass for serving: slot-based KV cache, fused projections, and
batch-invariant int8 linears.

Why not the transformers forward: per decode step it rebuilds masks and walks generic code paths, and
its KV cache has to be re-padded whenever a request joins or leaves a batch. Here every sequence owns a
cache slot; a decode step runs all active slots at once, each at its own position.

Batch invariance: dynamic int8 quantisation normally scales activations per tensor, so one request's
numbers depend on the others in its batch. `QLinear` scales each row to [-1, 1] and adds an anchor row
holding -1 and +1, which pins the quantisation parameters; the int8 GEMM accumulates exactly in int32,
so every row's result is bit-identical whatever it is batched with. Sampling with a seed is therefore
reproducible under any load.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
ATTN_BLOCK = 64
INT8_ALPHA = 0.45  # SmoothQuant's migration strength
INT8_PARTS = ("qweight", "scales", "inv_smooth")
INT8_FORMAT = 1  # the meaning of an int8 state; cached states are keyed by it


class QLinear:
    """y = x Wᵀ + b, in fp32 or as a batch-invariant int8 GEMM with SmoothQuant-style input scaling.

    int8: weights quantised per output channel; each activation row scaled to [-1, 1] on its own;
    `smooth` (per input channel, from calibration) moves activation outliers into the weights.
    """

    def __init__(
        self,
        weight: torch.Tensor | Callable[[], torch.Tensor],
        bias: torch.Tensor | None,
        scratch: dict[int, torch.Tensor],
        shape: tuple[int, int] | None = None,
    ):
        self.scratch = scratch  # staging rows shared by the model's projections, by input width
        # the fp32 weight is built on first use: a model switched to cached int8 weights never reads it
        self._make: Callable[[], torch.Tensor] | None = None
        self._weight: torch.Tensor | None = None
        if isinstance(weight, torch.Tensor):
            self._weight = weight.float().contiguous()
            shape = (int(weight.shape[0]), int(weight.shape[1]))
        else:
            self._make = weight
        if shape is None:
            raise ValueError("a lazily built weight needs its shape")
        self.bias = bias.float().contiguous() if bias is not None else None
        self.out_features, self.in_features = shape
        self.int8 = False
        self.inv_smooth: torch.Tensor | None = None
        self.amax: torch.Tensor | None = None  # per input channel, collected during calibration
        self.observing = False

    @property
    def weight(self) -> torch.Tensor | None:
        """The fp32 weight (None once in int8), built on first use."""
        if self._weight is None and self._make is not None:
            self._weight = self._make().float().contiguous()
            self._make = None
        return self._weight

    @weight.setter
    def weight(self, value: torch.Tensor | None) -> None:
        self._weight, self._make = value, None

    def observe(self, x: torch.Tensor) -> None:
        """Record the largest magnitude seen per input channel (calibration)."""
        a = x.detach().abs().amax(dim=0)
        self.amax = a if self.amax is None else torch.maximum(self.amax, a)

    def int8_parts(self, alpha: float) -> dict[str, torch.Tensor]:
        """This projection in int8: weights (per output channel) with their scales, and the input scaling
        smoothed with the calibrated activation range (if any). `load_int8` switches to them."""
        assert self.weight is not None
        w = self.weight
        parts: dict[str, torch.Tensor] = {}
        if self.amax is not None:
            wmax = w.abs().amax(dim=0).clamp_min(1e-5)
            smooth = (self.amax.clamp_min(1e-5) ** alpha / wmax ** (1 - alpha)).clamp_min(1e-5)
            w = w * smooth
            parts["inv_smooth"] = (1.0 / smooth).contiguous()
        scales = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, scales, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
            parts["qweight"] = qw.int_repr()
            parts["scales"] = qw.q_per_channel_scales()
        return parts

    def load_int8(self, parts: dict[str, torch.Tensor]) -> None:
        """Switch to int8 weights made by `int8_parts` (here or in an earlier process: the result is the same)."""
        qweight, scales = parts["qweight"], parts["scales"]
        if tuple(qweight.shape) != (self.out_features, self.in_features) or qweight.dtype != torch.int8:
            raise ValueError(
                f"int8 weights of shape {tuple(qweight.shape)} do not fit a"
                f" {self.in_features}→{self.out_features} projection"
            )
        zeros = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qw = torch._make_per_channel_quantized_tensor(qweight, scales.double(), zeros, 0)
            self.packed = torch.ops.quantized.linear_prepack(qw, None)
        inv = parts.get("inv_smooth")
        self.inv_smooth = inv.float().contiguous() if inv is not None else None
        self.weight = None
        self.int8 = True

    def quantize(self, alpha: float) -> None:
        """Switch to int8, smoothing with the calibrated activation range (if any)."""
        self.load_int8(self.int8_parts(alpha))

    def fold_smoothing(self) -> torch.Tensor | None:
        """Hand the input scaling to the caller (to fold into a preceding norm weight); returns it."""
        inv, self.inv_smooth = self.inv_smooth, None
        return inv

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.int8:
            assert self.weight is not None
            if self.observing:
                self.observe(x)
            return F.linear(x, self.weight, self.bias)
        if self.inv_smooth is not None:
            x = x * self.inv_smooth
        rows = x.shape[0]
        staging = self.scratch.get(self.in_features)
        if staging is None or staging.shape[0] <= rows:
            # row 0 is the anchor (-1 and +1, pinning the quantisation range); rows 1… take the activations
            staging = torch.zeros(max(rows + 1, 32), self.in_features)
            staging[0, 0], staging[0, 1] = 1.0, -1.0
            self.scratch[self.in_features] = staging
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12)
        buf = staging[: rows + 1]
        torch.div(x, scale, out=buf[1:])
        y: torch.Tensor = torch.ops.quantized.linear_dynamic(buf, self.packed, False)[1:]
        y.mul_(scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y


class Layer:
    """One decoder block's weights (the projections' fp32 weights are read only when first needed)."""

    def __init__(self, sd: Mapping[str, torch.Tensor], prefix: str, eps: float, scratch: dict[int, torch.Tensor]):
        def w(name: str) -> torch.Tensor:
            return sd[f"{prefix}.{name}"]

        def b(name: str) -> torch.Tensor | None:
            return sd.get(f"{prefix}.{name}")

        def fused(*names: str) -> QLinear:
            """One projection over several weights stacked by output channel (built lazily)."""
            parts = [w(n) for n in names]  # views: their shapes are known without reading the data
            shape = (sum(int(p.shape[0]) for p in parts), int(parts[0].shape[1]))
            biases = [b(n.replace(".weight", ".bias")) for n in names]
            bias = torch.cat(biases) if all(x is not None for x in biases) else None  # type: ignore[arg-type]
            if len(parts) == 1:
                return QLinear(parts[0].detach, bias, scratch, shape)
            return QLinear(lambda: torch.cat([p.detach() for p in parts]), bias, scratch, shape)

        self.qkv = fused("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")
        self.o = fused("self_attn.o_proj.weight")
        self.gate_up = fused("mlp.gate_proj.weight", "mlp.up_proj.weight")
        self.down = fused("mlp.down_proj.weight")
        self.norm1 = w("input_layernorm.weight").float()
        self.norm2 = w("post_attention_layernorm.weight").float()
        self.eps = eps

    def linears(self) -> list[QLinear]:
        """The block's projections."""
        return [self.qkv, self.o, self.gate_up, self.down]


def _zeros(shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 tensor of zeros whose memory is zeroed lazily: numpy's zeros come from calloc, so the pages
    are the kernel's zero pages until first written, where `torch.zeros` writes every byte up front (the
    KV cache of 16 slots by 256 positions of SmolLM2 is 189 MB: about half a second at every start)."""
    count = int(np.prod(shape))
    flat = np.zeros(count + 16, dtype=np.float32)
    start = (-flat.ctypes.data % 64) // 4  # aligned to 64 bytes, as torch's own allocations are
    return torch.from_numpy(flat[start : start + count]).view(shape)


_REQUIRED = ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "rms_norm_eps")


def unsupported(cfg: Any, max_len: int) -> str | None:
    """Why the fast path cannot run a model of this config (a transformers config or any object with the
    same attributes), or None if it can."""
    arch = (getattr(cfg, "architectures", None) or [""])[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        return f"fast path supports {SUPPORTED_ARCHITECTURES}, not {arch}"
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", None):
        return f"rope type {kind} is not supported by the fast path"
    window = getattr(cfg, "sliding_window", None)
    if window and window < max_len and arch != "Qwen2ForCausalLM":
        return "sliding-window attention is not supported by the fast path"
    missing = [k for k in _REQUIRED if getattr(cfg, k, None) is None]
    if missing:
        return f"the config lacks {', '.join(missing)}"
    return None


def weights_of(model: Any) -> Mapping[str, torch.Tensor]:
    """The model's tensors by name: `model.weights` when it has them (safetensors read lazily, see
    `loader.SafetensorsModel`), else a transformers module's state dict."""
    weights = getattr(model, "weights", None)
    if isinstance(weights, Mapping):
        return weights
    return {k: v.detach() for k, v in model.state_dict().items()}


class FastLlama:
    """Serving forward pass over a Llama/Mistral/Qwen2 model's weights: a transformers module, or any
    object with a `config` and lazily read `weights` (so int8 weights from the cache are the only copy of
    the projections ever in memory)."""

    def __init__(self, model: Any, *, max_slots: int, max_len: int):
        cfg = model.config
        reason = unsupported(cfg, max_len)
        if reason is not None:
            raise ValueError(reason)
        rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
        sd = weights_of(model)
        self.hidden = int(cfg.hidden_size)
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or self.hidden // self.heads)
        self.n_layers = int(cfg.num_hidden_layers)
        self.vocab = int(cfg.vocab_size)
        eps = float(cfg.rms_norm_eps)
        self.eps = eps
        self.embed = sd["model.embed_tokens.weight"].float().contiguous()
        self.scratch: dict[int, torch.Tensor] = {}
        self.layers = [Layer(sd, f"model.layers.{i}", eps, self.scratch) for i in range(self.n_layers)]
        self.final_norm = sd["model.norm.weight"].float()
        head = sd.get("lm_head.weight", self.embed)
        self.lm_head = QLinear(head.detach, None, self.scratch, (int(head.shape[0]), int(head.shape[1])))
        theta = float(rope.get("rope_theta") or getattr(cfg, "rope_theta", None) or 10000.0)
        inv = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim))
        pos = torch.arange(max_len, dtype=torch.float64)
        freqs = torch.outer(pos, inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos().float()
        self.sin = emb.sin().float()
        self.max_len = max_len
        self.max_slots = max_slots
        self.q_size = self.heads * self.head_dim
        self.scale = self.head_dim**-0.5
        self.kv_size = self.kv_heads * self.head_dim
        self.capacity = 0
        self.k_cache: list[torch.Tensor] = []
        self.v_cache: list[torch.Tensor] = []
        with torch.inference_mode():
            self._grow(256)

    def linears(self) -> list[QLinear]:
        """Every projection, the output head included."""
        return [lin for layer in self.layers for lin in layer.linears()] + [self.lm_head]

    def quantize(self, calibration: list[list[int]], alpha: float = INT8_ALPHA) -> dict[str, torch.Tensor]:
        """Calibrate activation ranges on a few prompts in fp32, then switch every projection to int8.

        Returns the int8 state (`load_int8` rebuilds the same model from it without calibrating again).
        """
        lins = self.linears()
        for lin in lins:
            lin.observing = True
        try:
            for tokens in calibration:
                self.prefill(tokens[: self.max_len], 0, all_logits=True)
        finally:
            for lin in lins:
                lin.observing = False
        state = {f"{i}.{name}": t for i, lin in enumerate(lins) for name, t in lin.int8_parts(alpha).items()}
        self.load_int8(state)
        return state

    def load_int8(self, state: dict[str, torch.Tensor]) -> None:
        """Switch every projection to the int8 weights of `state` (from `quantize`, here or cached)."""
        lins = self.linears()
        if any(lin.int8 for lin in lins):
            raise ValueError("the model is int8 already")
        if len({k.split(".", 1)[0] for k in state}) != len(lins):
            raise ValueError(
                f"the int8 state holds {len({k.split('.', 1)[0] for k in state})} projections, not {len(lins)}"
            )
        parts = [
            {name: state[f"{i}.{name}"] for name in INT8_PARTS if f"{i}.{name}" in state} for i in range(len(lins))
        ]
        for lin, p in zip(lins, parts, strict=True):  # check all before changing any
            q = p.get("qweight")
            if q is None or tuple(q.shape) != (lin.out_features, lin.in_features) or q.dtype != torch.int8:
                raise ValueError(
                    f"the int8 state does not fit this model's {lin.in_features}→{lin.out_features} weights"
                )
        for lin, p in zip(lins, parts, strict=True):
            lin.load_int8(p)
        for layer in self.layers:  # fold the input scaling of qkv and gate_up into the norms before them
            for lin, attr in ((layer.qkv, "norm1"), (layer.gate_up, "norm2")):
                inv = lin.fold_smoothing()
                if inv is not None:
                    setattr(layer, attr, getattr(layer, attr) * inv)
        inv = self.lm_head.fold_smoothing()
        if inv is not None:
            self.final_norm = self.final_norm * inv

    # --- cache --------------------------------------------------------------------------------

    def _grow(self, needed: int) -> None:
        """Make room for `needed` positions per slot (doubling, up to the context window)."""
        if needed <= self.capacity:
            return
        cap = max(256, self.capacity)
        while cap < needed:
            cap *= 2
        cap = min(cap, -(-self.max_len // ATTN_BLOCK) * ATTN_BLOCK)
        shape = (self.max_slots, self.kv_heads, cap, self.head_dim)
        new_k = [_zeros(shape) for _ in range(self.n_layers)]
        new_v = [_zeros(shape) for _ in range(self.n_layers)]
        if self.capacity:
            for i in range(self.n_layers):
                new_k[i][:, :, : self.capacity].copy_(self.k_cache[i])
                new_v[i][:, :, : self.capacity].copy_(self.v_cache[i])
        self.k_cache, self.v_cache, self.capacity = new_k, new_v, cap

    @torch.inference_mode()
    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's cache from one slot to another (to keep active slots contiguous)."""
        for i in range(self.n_layers):
            self.k_cache[i][dst, :, :length].copy_(self.k_cache[i][src, :, :length])
            self.v_cache[i][dst, :, :length].copy_(self.v_cache[i][src, :, :length])

    # --- math ---------------------------------------------------------------------------------

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    @torch.inference_mode()
    def prefill(self, tokens: list[int], slot: int, start: int = 0, all_logits: bool = False) -> torch.Tensor:
        """Run a prompt chunk for one slot (positions start…start+n-1); returns the last position's logits."""
        n = len(tokens)
        self._grow(start + n)
        x = self.embed[torch.tensor(tokens)]
        cos = self.cos[start : start + n].unsqueeze(0)
        sin = self.sin[start : start + n].unsqueeze(0)
        for i, layer in enumerate(self.layers):
            h = self._norm(x, layer.norm1)
            qkv = layer.qkv(h)
            q = qkv[:, : self.q_size].view(n, self.heads, self.head_dim).transpose(0, 1)
            k = qkv[:, self.q_size : self.q_size + self.kv_size].view(n, self.kv_heads, self.head_dim).transpose(0, 1)
            v = qkv[:, self.q_size + self.kv_size :].view(n, self.kv_heads, self.head_dim).transpose(0, 1)
            q = self._rope(q, cos, sin)
            k = self._rope(k, cos, sin)
            self.k_cache[i][slot, :, start : start + n] = k
            self.v_cache[i][slot, :, start : start + n] = v
            keys = self.k_cache[i][slot, :, : start + n].unsqueeze(0)
            values = self.v_cache[i][slot, :, : start + n].unsqueeze(0)
            if start == 0:
                attn = F.scaled_dot_product_attention(q.unsqueeze(0), keys, values, is_causal=True, enable_gqa=True)
            else:
                mask = torch.ones(n, start + n, dtype=torch.bool).tril(diagonal=start)
                attn = F.scaled_dot_product_attention(q.unsqueeze(0), keys, values, attn_mask=mask, enable_gqa=True)
            x = x + layer.o(attn[0].transpose(0, 1).reshape(n, self.q_size))
            h = self._norm(x, layer.norm2)
            gu = layer.gate_up(h)
            half = gu.shape[1] // 2
            x = x + layer.down(F.silu(gu[:, :half]) * gu[:, half:])
        if all_logits:
            return self.lm_head(self._norm(x, self.final_norm))
        last = self._norm(x[-1:], self.final_norm)
        return self.lm_head(last)[0]

    @torch.inference_mode()
    def prefill_many(self, chunks: list[tuple[list[int], int, int]]) -> list[torch.Tensor]:
        """Prefill several prompt chunks, given as (tokens, slot, start), in one pass: the projections run
        once over all their tokens; attention stays per sequence. Returns each chunk's last logits."""
        if len(chunks) == 1:
            tokens, slot, start = chunks[0]
            return [self.prefill(tokens, slot, start)]
        self._grow(max(start + len(t) for t, _, start in chunks))
        flat = [t for tokens, _, _ in chunks for t in tokens]
        x = self.embed[torch.tensor(flat)]
        spans = []
        offset = 0
        for tokens, slot, start in chunks:
            spans.append((offset, len(tokens), slot, start))
            offset += len(tokens)
        positions = torch.cat([torch.arange(start, start + n) for _, n, _, start in spans])
        cos = self.cos[positions].unsqueeze(0)
        sin = self.sin[positions].unsqueeze(0)
        total = len(flat)
        for i, layer in enumerate(self.layers):
            h = self._norm(x, layer.norm1)
            qkv = layer.qkv(h)
            q = qkv[:, : self.q_size].view(total, self.heads, self.head_dim).transpose(0, 1)
            k = (
                qkv[:, self.q_size : self.q_size + self.kv_size]
                .view(total, self.kv_heads, self.head_dim)
                .transpose(0, 1)
            )
            v = qkv[:, self.q_size + self.kv_size :].view(total, self.kv_heads, self.head_dim).transpose(0, 1)
            q = self._rope(q, cos, sin)
            k = self._rope(k, cos, sin)
            outs = []
            for off, n, slot, start in spans:
                self.k_cache[i][slot, :, start : start + n] = k[:, off : off + n]
                self.v_cache[i][slot, :, start : start + n] = v[:, off : off + n]
                keys = self.k_cache[i][slot, :, : start + n].unsqueeze(0)
                values = self.v_cache[i][slot, :, : start + n].unsqueeze(0)
                qs = q[:, off : off + n].unsqueeze(0)
                if start == 0:
                    attn = F.scaled_dot_product_attention(qs, keys, values, is_causal=True, enable_gqa=True)
                else:
                    mask = torch.ones(n, start + n, dtype=torch.bool).tril(diagonal=start)
                    attn = F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask, enable_gqa=True)
                outs.append(attn[0].transpose(0, 1).reshape(n, self.q_size))
            x = x + layer.o(torch.cat(outs))
            h = self._norm(x, layer.norm2)
            gu = layer.gate_up(h)
            half = gu.shape[1] // 2
            x = x + layer.down(F.silu(gu[:, :half]) * gu[:, half:])
        lasts = torch.stack([x[off + n - 1] for off, n, _, _ in spans])
        logits = self.lm_head(self._norm(lasts, self.final_norm))
        return list(logits)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One step for slots 0…B-1: `tokens[b]` at `positions[b]`; returns logits [B, vocab].

        Attention runs over a key length rounded up to a multiple of 64 with masked positions adding
        exact zeros, so a row's result does not depend on how long the other rows are.
        """
        bsz = tokens.shape[0]
        longest = int(positions.max()) + 1
        span = -(-longest // ATTN_BLOCK) * ATTN_BLOCK
        self._grow(span)
        x = self.embed[tokens]
        cos = self.cos[positions].unsqueeze(1)  # [B, 1, D]
        sin = self.sin[positions].unsqueeze(1)
        rows = torch.arange(bsz)
        bias = torch.zeros(bsz, 1, 1, span).masked_fill_(
            (torch.arange(span).unsqueeze(0) > positions.unsqueeze(1)).view(bsz, 1, 1, span), float("-inf")
        )
        group = self.heads // self.kv_heads
        for i, layer in enumerate(self.layers):
            h = self._norm(x, layer.norm1)
            qkv = layer.qkv(h)
            qk = self._rope(
                qkv[:, : self.q_size + self.kv_size].view(bsz, self.heads + self.kv_heads, self.head_dim), cos, sin
            )
            q, k = qk[:, : self.heads], qk[:, self.heads :]
            v = qkv[:, self.q_size + self.kv_size :].view(bsz, self.kv_heads, self.head_dim)
            kc, vc = self.k_cache[i], self.v_cache[i]
            kc[rows, :, positions] = k
            vc[rows, :, positions] = v
            qg = q.view(bsz, self.kv_heads, group, self.head_dim)
            scores = torch.matmul(qg, kc[:bsz, :, :span].transpose(-1, -2)).mul_(self.scale).add_(bias)
            attn = torch.matmul(torch.softmax(scores, dim=-1), vc[:bsz, :, :span])
            x = x + layer.o(attn.reshape(bsz, self.q_size))
            h = self._norm(x, layer.norm2)
            gu = layer.gate_up(h)
            half = gu.shape[1] // 2
            x = x + layer.down(F.silu(gu[:, :half]) * gu[:, half:])
        return self.lm_head(self._norm(x, self.final_norm))
