"""One query against many vectors: a Triton kernel that streams the fp16 matrix once.

Scoring one query is a matrix-vector product, bound by reading the matrix (1M x 384 fp16 is
768 MB, about 0.26 ms at the H100's ~3 TB/s). The kernel gives each program ``BLOCK_N`` rows,
reads them in 16-byte vectors with the query held in registers, and writes one float32 score per
row. Import this module only where Triton is installed (the GPU machine); ``gpu.search`` does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _row_scores(
    x_ptr, q_ptr, rows, row_ok, stride_x, DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr
):
    """Float32 dot products of the query with ``rows`` of the matrix, read in ``BLOCK_D`` columns."""
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for d0 in tl.static_range(0, DIM, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        col_ok = cols < DIM
        x = tl.load(
            x_ptr + rows[:, None].to(tl.int64) * stride_x + cols[None, :],
            mask=row_ok[:, None] & col_ok[None, :],
            other=0.0,
        )
        q = tl.load(q_ptr + cols, mask=col_ok, other=0.0)
        acc += tl.sum(x.to(tl.float32) * q.to(tl.float32)[None, :], axis=1)
    return acc


@triton.autotune(
    configs=[
        triton.Config({"BLOCK_N": 32}, num_warps=4),
        triton.Config({"BLOCK_N": 64}, num_warps=4),
        triton.Config({"BLOCK_N": 64}, num_warps=8),
        triton.Config({"BLOCK_N": 128}, num_warps=8),
    ],
    key=["n_rows", "DIM"],
)
@triton.jit
def _scores_kernel(
    x_ptr, q_ptr, out_ptr, n_rows, stride_x, DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    acc = _row_scores(x_ptr, q_ptr, rows, row_ok, stride_x, DIM, BLOCK_N, BLOCK_D)
    tl.store(out_ptr + rows, acc, mask=row_ok)


def scores_fp32(x: torch.Tensor, q: torch.Tensor, n_rows: int | None = None) -> torch.Tensor:
    """``x[:n_rows] @ q`` as float32, ``x`` ``(rows, dim)`` with unit stride along ``dim``."""
    n = x.shape[0] if n_rows is None else n_rows
    dim = x.shape[1]
    if x.stride(1) != 1:
        raise ValueError("the matrix must be contiguous along its last dimension")
    out = torch.empty(n, device=x.device, dtype=torch.float32)
    block_d = min(128, triton.next_power_of_2(dim))

    def grid(meta: dict[str, int]) -> tuple[int]:
        return (triton.cdiv(n, meta["BLOCK_N"]),)

    _scores_kernel[grid](x, q.contiguous(), out, n, x.stride(0), DIM=dim, BLOCK_D=block_d)
    return out


# -- scoring fused with top-k -------------------------------------------------------------------
# Each program scores BLOCK_N rows and keeps only its own top KP, as 64-bit keys that sort like
# (score, row): the float's bits mapped to an order-preserving int32 in the high half, the row in
# the low half. Small merge launches then reduce the keys to the global top KP, and the last one
# decodes rows and scores and looks up the ids. The top k of all rows are among the top KP of
# their own block, so the result is exact; the matrix is read once and no score vector is written.
_MIN_KEY = -(2**63)


@triton.jit
def _to_keys(acc, rows, ok):
    bits = acc.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    ordered = tl.where(ok, ordered, -2147483648)
    return (ordered.to(tl.int64) << 32) | rows.to(tl.int64)


@triton.jit
def _score_topk_kernel(
    x_ptr,
    q_ptr,
    keys_ptr,
    n_rows,
    stride_x,
    DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    KP: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    acc = _row_scores(x_ptr, q_ptr, rows, row_ok, stride_x, DIM, BLOCK_N, BLOCK_D)
    top = tl.topk(_to_keys(acc, rows, row_ok), KP)
    tl.store(keys_ptr + pid * KP + tl.arange(0, KP), top)


@triton.jit
def _merge_keys_kernel(
    keys_ptr,
    out_ptr,
    scores_ptr,
    ids_ptr,
    id_map_ptr,
    n_keys,
    BLOCK: tl.constexpr,
    KP: tl.constexpr,
    FINAL: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    keys = tl.load(keys_ptr + offs, mask=offs < n_keys, other=-9223372036854775808)
    top = tl.topk(keys, KP)
    if FINAL:
        rows = top & 0xFFFFFFFF
        hi = (top >> 32).to(tl.int32)
        bits = tl.where(hi >= 0, hi, hi ^ 0x7FFFFFFF)
        out = tl.arange(0, KP)
        tl.store(scores_ptr + out, bits.to(tl.float32, bitcast=True))
        tl.store(ids_ptr + out, tl.load(id_map_ptr + rows))
    else:
        tl.store(out_ptr + pid * KP + tl.arange(0, KP), top)


def search_topk(
    x: torch.Tensor,
    q: torch.Tensor,
    n_rows: int,
    k: int,
    id_map: torch.Tensor,
    *,
    block_n: int = 128,
    num_warps: int = 4,
    merge_block: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` ``(scores float32, ids)`` of ``x[:n_rows] @ q``, best first, in a few launches.

    ``id_map`` gives the id of each row. Needs ``k <= block_n`` (``k`` is rounded up to a power
    of two internally); rows with equal scores are ordered by row, largest first.
    """
    kp = triton.next_power_of_2(max(k, 1))
    if kp > block_n or kp > merge_block:
        raise ValueError(f"k={k} is too large for the fused kernel (block of {block_n} rows)")
    dim = x.shape[1]
    n_prog = triton.cdiv(n_rows, block_n)
    keys = torch.empty(n_prog * kp, device=x.device, dtype=torch.int64)
    block_d = min(128, triton.next_power_of_2(dim))
    _score_topk_kernel[(n_prog,)](
        x,
        q.contiguous(),
        keys,
        n_rows,
        x.stride(0),
        DIM=dim,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        KP=kp,
        num_warps=num_warps,
    )
    scores = torch.empty(kp, device=x.device, dtype=torch.float32)
    ids = torch.empty(kp, device=x.device, dtype=id_map.dtype)
    n_keys = n_prog * kp
    while True:
        progs = triton.cdiv(n_keys, merge_block)
        final = progs == 1
        out = keys if final else torch.empty(progs * kp, device=x.device, dtype=torch.int64)
        _merge_keys_kernel[(progs,)](
            keys, out, scores, ids, id_map, n_keys, BLOCK=merge_block, KP=kp, FINAL=final, num_warps=8
        )
        if final:
            break
        keys, n_keys = out, progs * kp
    return scores[:k], ids[:k]


# -- scoring with block maxima, then one selection launch ----------------------------------------
# The top k rows lie in the k blocks with the largest maxima (the k-th largest block maximum is a
# score that k rows reach, so any row of the top k scores at least that much). The scoring kernel
# writes every score and one key per block (its maximum, and the block number); the selection
# kernel takes the top KP blocks and the top KP rows among their KP * BLOCK_N scores.
@triton.jit
def _score_blockmax_kernel(
    x_ptr, q_ptr, scores_ptr, block_keys_ptr, n_rows, stride_x,
    DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    acc = _row_scores(x_ptr, q_ptr, rows, row_ok, stride_x, DIM, BLOCK_N, BLOCK_D)
    tl.store(scores_ptr + rows, acc, mask=row_ok)
    best = tl.max(tl.where(row_ok, acc, float("-inf")), axis=0)
    bits = best.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    tl.store(block_keys_ptr + pid, (ordered.to(tl.int64) << 32) | pid)


@triton.jit
def _select_kernel(
    block_keys_ptr, n_keys, scores_ptr, n_rows, out_scores_ptr, out_ids_ptr, id_map_ptr,
    KEYS: tl.constexpr, KP: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    offs = tl.arange(0, KEYS)
    keys = tl.load(block_keys_ptr + offs, mask=offs < n_keys, other=-9223372036854775808)
    top_blocks = tl.topk(keys, KP)  # (KP,)
    valid = top_blocks != -9223372036854775808
    blocks = top_blocks & 0xFFFFFFFF
    rows = blocks[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]  # (KP, BLOCK_N)
    ok = valid[:, None] & (rows < n_rows)
    s = tl.load(scores_ptr + rows, mask=ok, other=float("-inf"))
    cand = tl.reshape(_to_keys(s, rows, ok), [KP * BLOCK_N])
    top = tl.topk(cand, KP)
    best_rows = top & 0xFFFFFFFF
    hi = (top >> 32).to(tl.int32)
    bits = tl.where(hi >= 0, hi, hi ^ 0x7FFFFFFF)
    out = tl.arange(0, KP)
    tl.store(out_scores_ptr + out, bits.to(tl.float32, bitcast=True))
    tl.store(out_ids_ptr + out, tl.load(id_map_ptr + best_rows))


def search_topk_blocks(
    x: torch.Tensor,
    q: torch.Tensor,
    n_rows: int,
    k: int,
    id_map: torch.Tensor,
    *,
    block_n: int = 256,
    num_warps: int = 8,
    max_keys: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` ``(scores float32, ids)`` of ``x[:n_rows] @ q``: a scoring launch that also keeps
    each block's maximum, key merges while more than ``max_keys`` blocks remain, one selection."""
    kp = triton.next_power_of_2(max(k, 1))
    if kp * block_n > 8192 or kp > max_keys:
        raise ValueError(f"k={k} is too large for the block selection (blocks of {block_n} rows)")
    dim = x.shape[1]
    n_blocks = triton.cdiv(n_rows, block_n)
    scores = torch.empty(n_blocks * block_n, device=x.device, dtype=torch.float32)
    keys = torch.empty(n_blocks, device=x.device, dtype=torch.int64)
    block_d = min(128, triton.next_power_of_2(dim))
    _score_blockmax_kernel[(n_blocks,)](
        x, q.contiguous(), scores, keys, n_rows, x.stride(0), DIM=dim, BLOCK_N=block_n, BLOCK_D=block_d,
        num_warps=num_warps,
    )  # fmt: skip
    n_keys = n_blocks
    while n_keys > max_keys:  # keep the top kp blocks of each max_keys (exact: top kp overall survive)
        progs = triton.cdiv(n_keys, max_keys)
        out = torch.empty(progs * kp, device=x.device, dtype=torch.int64)
        _merge_keys_kernel[(progs,)](
            keys, out, out, out, id_map, n_keys, BLOCK=max_keys, KP=kp, FINAL=False, num_warps=8
        )
        keys, n_keys = out, progs * kp
    out_scores = torch.empty(kp, device=x.device, dtype=torch.float32)
    out_ids = torch.empty(kp, device=x.device, dtype=id_map.dtype)
    _select_kernel[(1,)](
        keys, n_keys, scores, n_rows, out_scores, out_ids, id_map,
        KEYS=triton.next_power_of_2(max(n_keys, kp)), KP=kp, BLOCK_N=block_n, num_warps=8,
    )  # fmt: skip
    return out_scores[:k], out_ids[:k]
