"""Triton kernels for the packed encoder's memory-bound steps: residual add + LayerNorm, and the
embedding sum (word + position + token type) + LayerNorm, each in one pass.

PyTorch's eager ``F.layer_norm(x + y)`` writes the sum and reads it back (five passes over the
activations instead of three); the embedding step gathers, adds and normalises in five kernels.
These compute in float32 and round once; ``gpu.embed`` uses them on CUDA where Triton is
installed and falls back to the eager versions otherwise (tests/test_gpu_embed.py compares them).
Import this module only where Triton is installed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_ROWS = 4  # rows per program: a 768-wide row is only 1.5 KB


@triton.jit
def _add_ln_kernel(
    x_ptr, y_ptr, w_ptr, b_ptr, out_ptr, n_rows, n_cols, eps,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    ok = (rows < n_rows) & (cols < n_cols)
    off = rows * n_cols + cols
    ty = out_ptr.dtype.element_ty
    s = tl.load(x_ptr + off, mask=ok, other=0.0).to(tl.float32) + tl.load(y_ptr + off, mask=ok, other=0.0).to(
        tl.float32
    )
    s = s.to(ty).to(tl.float32)  # the sum rounded as the eager x + y would be
    mean = tl.sum(s, axis=1) / n_cols
    d = tl.where(ok, s - mean[:, None], 0.0)
    r = tl.rsqrt(tl.sum(d * d, axis=1) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    tl.store(out_ptr + off, (d * r[:, None] * w + b).to(ty), mask=ok)


def add_layer_norm(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float
) -> torch.Tensor:
    """``layer_norm(x + y)`` over the last dimension of contiguous 2-D ``x`` and ``y``."""
    rows, n = x.shape
    out = torch.empty_like(x)
    block = triton.next_power_of_2(n)
    _add_ln_kernel[(triton.cdiv(rows, _ROWS),)](
        x, y.contiguous(), w, b, out, rows, n, eps, ROWS=_ROWS, BLOCK=block, num_warps=4
    )
    return out


@triton.jit
def _embed_ln_kernel(
    ids_ptr, pos_ptr, word_ptr, posemb_ptr, type_ptr, w_ptr, b_ptr, out_ptr,
    n_rows, n_cols, pos_offset, eps,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    r1 = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    live = r1 < n_rows
    tok = tl.load(ids_ptr + r1, mask=live, other=0).to(tl.int64)[:, None]
    pos = (tl.load(pos_ptr + r1, mask=live, other=0).to(tl.int64) + pos_offset)[:, None]
    rows = r1[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    cok = cols < n_cols
    ok = (rows < n_rows) & cok
    e = tl.load(word_ptr + tok * n_cols + cols, mask=ok, other=0.0).to(tl.float32)
    e += tl.load(posemb_ptr + pos * n_cols + cols, mask=ok, other=0.0).to(tl.float32)
    e += tl.load(type_ptr + cols, mask=cok, other=0.0).to(tl.float32)
    mean = tl.sum(e, axis=1) / n_cols
    d = tl.where(ok, e - mean[:, None], 0.0)
    r = tl.rsqrt(tl.sum(d * d, axis=1) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=cok, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=cok, other=0.0).to(tl.float32)
    tl.store(out_ptr + rows * n_cols + cols, (d * r[:, None] * w + b).to(out_ptr.dtype.element_ty), mask=ok)


def embed_layer_norm(
    ids: torch.Tensor,
    positions: torch.Tensor,
    word: torch.Tensor,
    pos_emb: torch.Tensor,
    type0: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    eps: float,
    pos_offset: int = 0,
) -> torch.Tensor:
    """``layer_norm(word[ids] + pos_emb[positions + pos_offset] + type0)``, ``(tokens, hidden)``."""
    rows, n = int(ids.shape[0]), int(word.shape[1])
    out = torch.empty(rows, n, device=word.device, dtype=word.dtype)
    block = triton.next_power_of_2(n)
    _embed_ln_kernel[(triton.cdiv(rows, _ROWS),)](
        ids, positions, word, pos_emb, type0, w, b, out, rows, n, pos_offset, eps,
        ROWS=_ROWS, BLOCK=block, num_warps=4,
    )  # fmt: skip
    return out
