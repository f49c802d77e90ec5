"""GPU memory needed for long-context inference: weights + KV cache per token + activations.

The numbers follow :class:`gpu.lc.LongContextEngine`'s layout (per-token work in chunks of
``chunk_tokens``, one attention call over the whole sequence per layer), so the estimate is the
peak that engine reaches; benchmarks/gpu_prefill.py compares the two on the GPU. The router asks
:func:`lc_fits` whether a document fits before it picks long context. Nothing here imports
project code, and nothing here needs a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a Llama-family decoder depends on."""

    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> ModelShape:
        """From a transformers config (Qwen2Config, LlamaConfig, MistralConfig, ...)."""
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(
            n_layers=int(cfg.num_hidden_layers),
            hidden=int(cfg.hidden_size),
            n_heads=int(cfg.num_attention_heads),
            n_kv_heads=int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads),
            head_dim=int(head_dim),
            intermediate=int(cfg.intermediate_size),
            vocab=int(cfg.vocab_size),
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
            qkv_bias=cfg.model_type == "qwen2" or bool(getattr(cfg, "attention_bias", False)),
        )

    @property
    def n_params(self) -> int:
        h, q, kv = self.hidden, self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if self.qkv_bias else 0)
        per_layer = attn + 3 * h * self.intermediate + 2 * h
        embed = self.vocab * h * (1 if self.tied_embeddings else 2)
        return self.n_layers * per_layer + embed + h

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * dtype_bytes

    def prefill_flops(self, n_tokens: int) -> tuple[float, float]:
        """(matrix FLOPs of the linear layers, FLOPs of causal attention) for one prefill.

        The LM head counts once (only the last position's logits are computed)."""
        h, q, kv = self.hidden, self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        per_token = 2 * self.n_layers * (h * q + 2 * h * kv + q * h + 3 * h * self.intermediate)
        linear = float(per_token) * n_tokens + 2.0 * h * self.vocab
        attention = 2.0 * n_tokens * n_tokens * q * self.n_layers  # QK^T and PV, half the square each
        return linear, attention


@dataclass(frozen=True)
class LCMemoryEstimate:
    """Predicted peak GPU memory of one long-context prefill, in bytes, with its parts."""

    n_tokens: int
    weights: int
    kv_cache: int
    activations: int
    total: int

    def fits(self, free_bytes: int, margin: float = 0.95) -> bool:
        return self.total <= free_bytes * margin

    def describe(self) -> str:
        return (
            f"{self.total / GIB:.1f} GiB for {self.n_tokens:,} tokens (weights {self.weights / GIB:.1f}, "
            f"KV cache {self.kv_cache / GIB:.1f}, activations {self.activations / GIB:.1f})"
        )


def estimate_lc_memory(
    shape: ModelShape,
    n_tokens: int,
    *,
    dtype_bytes: int = 2,
    chunk_tokens: int = 8192,
    question_capacity: int = 1024,
    kv_repeat: bool = False,
) -> LCMemoryEstimate:
    """Peak memory of :class:`gpu.lc.LongContextEngine` prefilling ``n_tokens``.

    ``kv_repeat``: the attention kernel needs K and V repeated to every query head (cuDNN and the
    memory-efficient kernel without grouped-query support), which adds two full-size copies.
    """
    n = n_tokens
    c = min(chunk_tokens, n)
    h, q_dim = shape.hidden, shape.n_heads * shape.head_dim
    kv_dim = shape.n_kv_heads * shape.head_dim
    weights = shape.n_params * dtype_bytes
    kv = shape.kv_bytes_per_token(dtype_bytes) * (n + question_capacity)
    # Live for the whole prefill: the residual stream and the query buffer of a layer.
    resident = n * (h + q_dim) * dtype_bytes
    # While attention runs: its output, float32 log-sum-exp, and repeated K/V where needed.
    attention = n * q_dim * dtype_bytes + n * shape.n_heads * 4
    if kv_repeat:
        attention += 2 * n * q_dim * dtype_bytes
    # One chunk's per-token work (the larger of the projection step and the MLP step), while the
    # attention output of the layer is still alive during the MLP step.
    norm = c * h * (2 * 4 + dtype_bytes)  # float32 upcast and its normalised copy, then the cast
    proj = norm + c * (q_dim + 2 * kv_dim) * dtype_bytes * 3  # qkv, rotated q/k and the halves
    mlp = n * q_dim * dtype_bytes + norm + c * 4 * shape.intermediate * dtype_bytes
    activations = resident + max(attention, proj, mlp)
    return LCMemoryEstimate(n, weights, kv, activations, weights + kv + activations)


@dataclass(frozen=True)
class LCFit:
    fits: bool
    estimate: LCMemoryEstimate
    free_bytes: int
    reason: str


def lc_fits(shape: ModelShape, n_tokens: int, free_bytes: int, *, margin: float = 0.95, **kw: Any) -> LCFit:
    """Whether a prefill of ``n_tokens`` fits in ``free_bytes`` of GPU memory, and why in words."""
    est = estimate_lc_memory(shape, n_tokens, **kw)
    ok = est.fits(free_bytes, margin)
    verdict = "fits in" if ok else "does not fit in"
    reason = f"long context needs {est.describe()}, which {verdict} {free_bytes / GIB:.1f} GiB free"
    return LCFit(ok, est, free_bytes, reason)


def max_lc_tokens(
    shape: ModelShape, free_bytes: int, *, weights_loaded: bool = True, margin: float = 0.95, **kw: Any
) -> int:
    """The most tokens whose long-context prefill fits in ``free_bytes`` (0: none).

    ``weights_loaded``: the weights already sit on the device (``free_bytes`` was measured after
    loading them), so only the KV cache and activations must fit. Binary search over the estimate,
    which grows with the token count."""

    def need(n: int) -> int:
        est = estimate_lc_memory(shape, n, **kw)
        return est.total - (est.weights if weights_loaded else 0)

    budget = free_bytes * margin
    if need(1) > budget:
        return 0
    lo, hi = 1, 1 << 24
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def free_gpu_bytes(device: str = "cuda") -> int:
    """Free memory on a CUDA device as the driver reports it (0 without CUDA)."""
    import torch

    if not torch.cuda.is_available() or not device.startswith("cuda"):
        return 0
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free)
