"""Triton kernels for the long-context engine's per-token steps: RMSNorm, RoPE, SiLU-gate.

Each reads its input once and writes its output once (PyTorch's eager versions make several
passes, with float32 temporaries), and RoPE writes straight into the query buffer and the KV
cache. They compute in float32 and round once; ``gpu.lc`` uses them on CUDA when Triton is there
and falls back to the eager versions otherwise. Import this module only where Triton is installed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, n_cols, stride_x, stride_out, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
    r = tl.rsqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    # As the model does: normalise in float32, round to the activation dtype, then scale.
    y = (x * r).to(out_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_out + cols, (w * y).to(out_ptr.dtype.element_ty), mask=ok)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """``w * normalise(x)`` over the last dimension of a 2-D ``x`` (rows with unit column stride)."""
    rows, n = x.shape
    out = torch.empty(rows, n, device=x.device, dtype=x.dtype)
    block = triton.next_power_of_2(n)
    _rms_norm_kernel[(rows,)](x, w, out, n, x.stride(0), out.stride(0), eps, BLOCK=block, num_warps=8)
    return out


@triton.jit
def _rope_kernel(
    x_ptr, cos_ptr, sin_ptr, out_ptr, n_heads, sx_t, sx_h, so_t, so_h, sc_t,
    HALF: tl.constexpr, HP: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0).to(tl.int64)
    h = tl.arange(0, HP)[:, None]
    j = tl.arange(0, HALF)[None, :]
    ok = h < n_heads
    base = x_ptr + t * sx_t + h * sx_h
    x1 = tl.load(base + j, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(base + HALF + j, mask=ok, other=0.0).to(tl.float32)
    c1 = tl.load(cos_ptr + t * sc_t + j).to(tl.float32)
    c2 = tl.load(cos_ptr + t * sc_t + HALF + j).to(tl.float32)
    s1 = tl.load(sin_ptr + t * sc_t + j).to(tl.float32)
    s2 = tl.load(sin_ptr + t * sc_t + HALF + j).to(tl.float32)
    obase = out_ptr + t * so_t + h * so_h
    ty = out_ptr.dtype.element_ty
    tl.store(obase + j, (x1 * c1 - x2 * s1).to(ty), mask=ok)
    tl.store(obase + HALF + j, (x2 * c2 + x1 * s2).to(ty), mask=ok)


def rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotary embedding of ``x`` ``(tokens, heads, d)`` (unit stride along ``d``) into ``out``."""
    tokens, heads, d = x.shape
    if out is None:
        out = torch.empty(tokens, heads, d, device=x.device, dtype=x.dtype)
    cos, sin = cos.contiguous(), sin.contiguous()
    _rope_kernel[(tokens,)](
        x, cos, sin, out, heads, x.stride(0), x.stride(1), out.stride(0), out.stride(1), cos.stride(0),
        HALF=d // 2, HP=triton.next_power_of_2(heads), num_warps=4,
    )  # fmt: skip
    return out


@triton.jit
def _silu_gate_kernel(gu_ptr, out_ptr, n_cols, stride_gu, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < n_cols
    g = tl.load(gu_ptr + row * stride_gu + cols, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + row * stride_gu + n_cols + cols, mask=ok, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(out_ptr + row * stride_out + cols, y.to(out_ptr.dtype.element_ty), mask=ok)


def silu_gate(gu: torch.Tensor, inter: int) -> torch.Tensor:
    """``silu(gu[:, :inter]) * gu[:, inter:]`` for the fused gate/up product ``gu``."""
    rows = gu.shape[0]
    out = torch.empty(rows, inter, device=gu.device, dtype=gu.dtype)
    block = 1024
    _silu_gate_kernel[(rows, triton.cdiv(inter, block))](
        gu, out, inter, gu.stride(0), out.stride(0), BLOCK=block, num_warps=4
    )
    return out


@triton.jit
def _merge_kernel(
    o1_ptr, l1_ptr, o2_ptr, l2_ptr, out_ptr, n_heads, s1_t, s1_h, s2_t, s2_h, so_t, so_h,
    sl1_h, sl1_t, sl2_h, sl2_t,
    D: tl.constexpr, HP: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0).to(tl.int64)
    h = tl.arange(0, HP)
    ok = h < n_heads
    l1 = tl.load(l1_ptr + h * sl1_h + t * sl1_t, mask=ok, other=0.0).to(tl.float32)
    l2 = tl.load(l2_ptr + h * sl2_h + t * sl2_t, mask=ok, other=0.0).to(tl.float32)
    w1 = tl.sigmoid(l1 - l2)[:, None]  # exp(l1) / (exp(l1) + exp(l2))
    j = tl.arange(0, D)[None, :]
    hh = h[:, None]
    m = ok[:, None]
    o1 = tl.load(o1_ptr + t * s1_t + hh * s1_h + j, mask=m, other=0.0).to(tl.float32)
    o2 = tl.load(o2_ptr + t * s2_t + hh * s2_h + j, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + t * so_t + hh * so_h + j, (o2 + w1 * (o1 - o2)).to(out_ptr.dtype.element_ty), mask=m)


def merge_two(
    o1: torch.Tensor, l1: torch.Tensor, o2: torch.Tensor, l2: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """Exact softmax merge of two attention results over disjoint keys into ``out``.

    ``o1``/``o2``/``out`` ``(tokens, heads, d)`` (unit stride along ``d``), ``l1``/``l2`` the
    float32 log-sum-exps ``(heads, tokens)`` (any strides)."""
    tokens, heads, d = o1.shape
    _merge_kernel[(tokens,)](
        o1, l1, o2, l2, out, heads, o1.stride(0), o1.stride(1), o2.stride(0), o2.stride(1),
        out.stride(0), out.stride(1), l1.stride(0), l1.stride(1), l2.stride(0), l2.stride(1),
        D=d, HP=triton.next_power_of_2(heads), num_warps=4,
    )  # fmt: skip
    return out
