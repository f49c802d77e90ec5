"""Attention kernels for the GPU paths, each with a CPU fallback that computes the same function.

- :func:`packed_attention`: bidirectional attention over sequences packed end to end into one
  ``(tokens, heads, head_dim)`` tensor, delimited by ``cu_seqlens`` (no padding). On CUDA it calls
  the flash-attention varlen kernel that PyTorch ships; elsewhere it pads, runs SDPA with a key mask
  and packs the result again.
- :func:`attention_with_lse`: plain (unmasked, or causal) attention that also returns the
  log-sum-exp of each query row, so that partial results over disjoint key sets can be merged
  exactly with :func:`merge_partials` (flash-decoding style split-KV, prefix + new-tokens split).

Tensors follow PyTorch's SDPA layout ``(batch, heads, seq, head_dim)`` unless a docstring says
otherwise. Nothing here imports project code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_HALF = (torch.float16, torch.bfloat16)


def _flash_ok(t: torch.Tensor) -> bool:
    return t.is_cuda and t.dtype in _HALF


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    pad_index: torch.Tensor | None = None,
    n_seqs: int | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Bidirectional attention inside each packed sequence; returns ``(tokens, heads, head_dim)``.

    ``q``, ``k``, ``v`` are ``(tokens, heads, head_dim)``; sequence ``i`` owns rows
    ``cu_seqlens[i]:cu_seqlens[i + 1]`` (int32, on the same device). ``backend`` is ``auto``
    (flash varlen on CUDA half precision, else padded SDPA), ``flash`` or ``padded``. The padded
    path needs ``pad_index`` (each token's row in a ``(n_seqs * max_seqlen)`` padded layout) and
    ``n_seqs``, which :class:`gpu.embed.Pack` provides.
    """
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    use_flash = backend == "flash" or (backend == "auto" and _flash_ok(q))
    if use_flash:
        out = torch.ops.aten._flash_attention_forward(
            q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, 0.0, False, False, scale=scale
        )
        return out[0]
    if backend == "cudnn":  # cuDNN's ragged (THD) attention, CUDA half precision only
        out = torch.ops.aten._cudnn_attention_forward(
            q, k, v, None, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, False, 0.0, False, scale=scale
        )
        return out[0]
    if backend not in ("auto", "padded"):
        raise ValueError(f"unknown packed attention backend '{backend}'; use auto, flash, cudnn or padded")
    if pad_index is None or n_seqs is None:
        raise ValueError("the padded attention path needs pad_index and n_seqs (see gpu.embed.Pack)")
    tokens, heads, dim = q.shape

    def pad(x: torch.Tensor) -> torch.Tensor:
        buf = x.new_zeros(n_seqs * max_seqlen, heads, dim)
        buf.index_copy_(0, pad_index, x)
        return buf.view(n_seqs, max_seqlen, heads, dim).transpose(1, 2)

    valid = torch.zeros(n_seqs * max_seqlen, dtype=torch.bool, device=q.device)
    valid[pad_index] = True
    mask = valid.view(n_seqs, 1, 1, max_seqlen)
    out = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask, scale=scale)
    out = out.transpose(1, 2).reshape(n_seqs * max_seqlen, heads, dim)
    return out.index_select(0, pad_index)


def _math_attention_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention in float32 with its log-sum-exp; causal is aligned to the last key."""
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if causal:
        lq, lk = q.shape[-2], k.shape[-2]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        s = s.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    out = torch.matmul(torch.softmax(s, dim=-1), v.float())
    return out.to(q.dtype), lse


def attention_with_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q`` over ``k``/``v`` (same number of heads) and the float32 log-sum-exp.

    Shapes ``(batch, heads, seq, head_dim)``; returns ``(out, lse)`` with ``lse`` of shape
    ``(batch, heads, q_seq)``. ``causal`` aligns the mask to the last key (query ``i`` of ``n``
    sees keys up to ``k_seq - n + i``); the fused kernels only take causal with equal lengths.
    ``backend``: ``auto`` (flash on CUDA half precision, else math), ``flash``, ``efficient``,
    ``math``.
    """
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    lq = q.shape[-2]
    if causal and lq != k.shape[-2]:
        backend = "math"
    if backend == "auto":
        backend = "flash" if _flash_ok(q) else "math"
    if backend == "flash":
        res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
        return res[0], res[1][..., :lq].float()
    if backend == "efficient":
        res = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, None, True, 0.0, causal, scale=scale
        )
        return res[0], res[1][..., :lq].float()
    if backend == "math":
        return _math_attention_lse(q, k, v, causal, scale)
    raise ValueError(f"unknown attention backend '{backend}'; use auto, flash, efficient or math")


def merge_partials(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact softmax merge of attention results over disjoint key sets, by their log-sum-exps.

    Each part is ``(out, lse)``; returns the merged ``(out, lse)``.
    """
    if len(parts) == 1:
        return parts[0]
    lses = torch.stack([lse for _, lse in parts])  # (P, b, h, s)
    outs = torch.stack([out.float() for out, _ in parts])  # (P, b, h, s, d)
    return _merge_stacked(outs, lses, parts[0][0].dtype)


def _merge_stacked(
    outs: torch.Tensor, lses: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge along dim 0: ``outs`` (P, ..., s, d) float32, ``lses`` (P, ..., s)."""
    top = lses.amax(dim=0)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    weights = torch.exp(lses - top)
    total = weights.sum(dim=0)
    merged = (weights.unsqueeze(-1) * outs).sum(dim=0) / total.unsqueeze(-1)
    return merged.to(dtype), top + torch.log(total)


def split_kv_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    splits: int | None = None,
    backend: str = "auto",
    min_split: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention of a few queries over a long key sequence, with the keys split in pieces.

    ``q`` ``(1, heads, n, d)``, ``k``/``v`` ``(1, heads, L, d)`` (any strides with a contiguous last
    dimension). The keys are cut into ``splits`` pieces that run as one batched kernel, so that a
    short query still fills the GPU (as in flash-decoding), and the pieces are merged exactly.
    Returns ``(out, lse)`` like :func:`attention_with_lse`.
    """
    _, heads, n, d = q.shape
    length = k.shape[-2]
    if splits is None:
        blocks = heads * max(1, math.ceil(n / 128))
        splits = max(1, min(32, math.ceil(264 / blocks), length // min_split))
    piece = length // max(splits, 1)
    if splits <= 1 or piece == 0:
        return attention_with_lse(q, k, v, scale=scale, backend=backend)
    main = piece * splits

    def cut(x: torch.Tensor) -> torch.Tensor:
        # (1, h, splits * piece, d) -> (splits, h, piece, d), a strided view.
        return x[0, :, :main].unflatten(1, (splits, piece)).transpose(0, 1)

    qs = q.expand(splits, heads, n, d).contiguous()
    out, lse = attention_with_lse(qs, cut(k), cut(v), scale=scale, backend=backend)
    merged = _merge_stacked(out.float().unsqueeze(1), lse.unsqueeze(1), q.dtype)
    if main == length:
        return merged
    tail = attention_with_lse(q, k[:, :, main:], v[:, :, main:], scale=scale, backend=backend)
    return merge_partials([merged, tail])
