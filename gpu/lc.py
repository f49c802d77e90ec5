"""Long-context inference with a transformers decoder: one prefill of the document, then questions
answered on its cached keys and values without reading the document again.

:class:`LongContextEngine` drives a Hugging Face Llama-family model (Qwen2, Llama, Mistral) layer by
layer with the model's own modules and weights:

- **Prefill**: every layer runs the whole sequence through one causal attention call (PyTorch SDPA:
  flash or cuDNN kernels, grouped-query heads handled by the kernel), while the per-token work
  (projections, MLP) runs in chunks of ``chunk_tokens``, so activations stay a few GB whatever the
  length. Q/K/V and gate/up projections are fused into single matrix products. Keys and values go
  straight into a preallocated cache with room for ``question_capacity`` more tokens.
- **Questions on the cached prefix** (:meth:`LongContextEngine.ask`, :meth:`generate`): new tokens
  are written after the prefix; their attention is split into "over the prefix" (no mask; the
  prefix is cut in pieces run as one batched flash kernel, as in flash-decoding, so a short
  question still fills the GPU) and "over the new tokens" (causal), merged exactly by log-sum-exp.
  The prefix is never copied or modified, so any number of questions reuse it.

Peak memory follows :func:`gpu.memory.estimate_lc_memory`, which the router uses to decide whether
LC fits. Every path has a CPU fallback computing the same function in float32 (tests compare it to
the model's own forward). Nothing here imports project code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from gpu.attention import attention_with_lse, merge_partials, split_kv_attention

SUPPORTED_DECODERS = ("qwen2", "llama", "mistral")
ATTENTION_BACKENDS = ("auto", "flash", "cudnn", "efficient", "math")


@dataclass(frozen=True)
class LCConfig:
    """How :class:`LongContextEngine` runs.

    ``attention`` picks the prefill kernel: ``auto`` (SDPA's own choice), ``flash``, ``cudnn``,
    ``efficient`` or ``math``. ``kernels`` runs the per-token steps (RMSNorm, RoPE, SiLU-gate) as
    ``triton`` kernels (gpu.triton_lc), ``torch`` eager ops, or ``compile`` (torch.compile, for the
    prefill only); ``auto`` is Triton on CUDA where it is installed. ``graphs`` replays questions
    as CUDA graphs (one per 32-token length bucket and prefix), which removes the launch gaps.
    ``prune_last_layer`` skips the prefill work whose result nothing reads: in the last layer only
    the keys and values of every token (for the cache) and the last token's query, attention and
    MLP (for the logits) are computed. ``attention_split`` > 0 runs the prefill's causal attention
    per block of that many queries on CUDA: the block over all earlier keys without a mask, over
    its own keys causally, the two merged exactly by log-sum-exp (0: one causal call a layer).
    ``streams`` > 1 runs the per-chunk output projection and MLP of a layer on that many CUDA
    streams in turn, so one chunk's memory-bound passes (RMSNorm, SiLU-gate) can overlap another
    chunk's matmuls (1: everything on the current stream).
    """

    chunk_tokens: int = 8192
    question_capacity: int = 1024
    attention: str = "auto"
    kernels: str = "auto"
    graphs: bool = True
    prune_last_layer: bool = True
    attention_split: int = 0
    streams: int = 1

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(
                f"unknown attention '{self.attention}'; use one of {', '.join(ATTENTION_BACKENDS)}"
            )
        if self.kernels not in ("auto", "triton", "torch", "compile"):
            raise ValueError(f"unknown kernels '{self.kernels}'; use auto, triton, torch or compile")
        if self.chunk_tokens < 1 or self.question_capacity < 1 or self.streams < 1:
            raise ValueError("chunk_tokens, question_capacity and streams must be positive")


@dataclass
class KVPrefix:
    """A document's keys and values, per layer ``(capacity, kv_heads, head_dim)``; rows
    ``[0, length)`` hold the document, the rest is scratch room for questions and answers."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    length: int
    last_logits: torch.Tensor
    graphs: dict[int, Any] = field(default_factory=dict)  # captured questions, by length bucket

    @property
    def capacity(self) -> int:
        return int(self.k[0].shape[0])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` ``(tokens, heads, d)``; ``cos``/``sin`` ``(tokens, d)``."""
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.unsqueeze(1) + rot * sin.unsqueeze(1)


def _silu_gate(gu: torch.Tensor, inter: int) -> torch.Tensor:
    return F.silu(gu[:, :inter]) * gu[:, inter:]


@dataclass(frozen=True)
class _Kernels:
    """The per-token steps: ``rms(x, w, eps)``, ``rope(x, cos, sin, out)``, ``gate(gu, inter)``."""

    rms: Callable[..., torch.Tensor]
    rope: Callable[..., torch.Tensor]
    gate: Callable[..., torch.Tensor]


def _rope_into(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    y = _rope(x, cos, sin)
    if out is None:
        return y
    out.copy_(y)
    return out


def _make_kernels(kind: str, device: torch.device) -> _Kernels:
    if kind == "auto":
        kind = "torch"
        if device.type == "cuda":
            try:
                import gpu.triton_lc  # noqa: F401

                kind = "triton"
            except ImportError:
                pass
    if kind == "triton":
        from gpu import triton_lc

        return _Kernels(triton_lc.rms_norm, triton_lc.rope, triton_lc.silu_gate)
    if kind == "compile":
        rope = torch.compile(_rope, dynamic=True)

        def rope_into(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None):
            y = rope(x, cos, sin)
            return y if out is None else out.copy_(y)

        return _Kernels(
            torch.compile(_rms_norm, dynamic=True), rope_into, torch.compile(_silu_gate, dynamic=True)
        )
    return _Kernels(_rms_norm, _rope_into, _silu_gate)


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, backend: str = "auto"
) -> torch.Tensor:
    """Causal attention of ``q`` ``(L, H, d)`` over ``k``/``v`` ``(L, Hkv, d)`` through SDPA.

    ``backend``: ``auto`` lets SDPA choose (grouped-query heads passed as such); ``flash``,
    ``cudnn`` or ``efficient`` force that kernel (K/V repeated to every head where the kernel
    needs it); ``math`` (and any CPU tensor) computes it plainly.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n_heads, n_kv = q.shape[1], k.shape[1]
    rep = n_heads // n_kv
    qt, kt, vt = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    gqa = rep > 1
    if backend == "math" or not q.is_cuda:
        if gqa:
            kt, vt = kt.repeat_interleave(rep, dim=1), vt.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale)
    elif backend == "auto":
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=gqa)
    else:
        chosen = {
            "flash": SDPBackend.FLASH_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
        }[backend]
        if backend != "flash" and gqa:
            kt, vt = kt.repeat_interleave(rep, dim=1), vt.repeat_interleave(rep, dim=1)
            gqa = False
        with sdpa_kernel(chosen):
            out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=gqa)
    return out[0].transpose(0, 1)


def _cudnn_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """cuDNN attention ``(n, H, d)`` and its float32 log-sum-exp ``(H, n)``, grouped KV heads as
    they are (causal aligned to the first key, so only for equal lengths)."""
    qt, kt, vt = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    res = torch.ops.aten._scaled_dot_product_cudnn_attention(
        qt, kt, vt, None, True, 0.0, causal, False, scale=scale
    )
    return res[0][0].transpose(0, 1), res[1].reshape(q.shape[1], q.shape[0]).float()


def split_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, block: int, backend: str = "auto"
) -> torch.Tensor:
    """Causal attention like :func:`causal_attention`, computed per block of ``block`` queries:
    each block over all earlier keys with no mask and over its own keys causally (cuDNN, with the
    log-sum-exps), merged exactly in one Triton pass. CUDA half precision only."""
    from gpu.triton_lc import merge_two

    n = q.shape[0]
    out = torch.empty_like(q)
    first = "auto" if backend == "cudnn" else backend  # SDPA's cuDNN call takes grouped KV heads as they are
    out[:block] = causal_attention(q[:block], k[:block], v[:block], scale=scale, backend=first)
    for a in range(block, n, block):
        b = min(n, a + block)
        o_diag, l_diag = _cudnn_lse(q[a:b], k[a:b], v[a:b], scale, True)
        o_pre, l_pre = _cudnn_lse(q[a:b], k[:a], v[:a], scale, False)
        merge_two(o_pre, l_pre, o_diag, l_diag, out[a:b])
    return out


def _flash_lower_right(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``q`` ``(n, H, d)`` over ``k``/``v`` ``(L, Hkv, d)``, causal aligned to the last key, one
    flash-attention call (grouped KV heads passed as they are)."""
    qt, kt, vt = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    out = torch.ops.aten._scaled_dot_product_flash_attention(qt, kt, vt, 0.0, True, False, scale=scale)[0]
    return out[0].transpose(0, 1)


@dataclass(frozen=True)
class _Layer:
    ln1: torch.Tensor
    w_qkv: torch.Tensor
    b_qkv: torch.Tensor | None
    w_o: torch.Tensor
    b_o: torch.Tensor | None
    ln2: torch.Tensor
    w_gu: torch.Tensor
    w_down: torch.Tensor


def _fuse(mods: list[Any], attr: str) -> torch.Tensor | None:
    """Concatenate the modules' ``attr`` along dim 0 and make each module's tensor a view of it."""
    parts = [getattr(m, attr) for m in mods]
    if any(p is None for p in parts):
        return None
    done = getattr(mods[0], f"_lc_fused_{attr}", None)
    if done is not None and parts[0].data_ptr() == done.data_ptr():
        return done  # already fused by an earlier engine over the same model
    fused = torch.cat([p.detach() for p in parts])
    setattr(mods[0], f"_lc_fused_{attr}", fused)
    start = 0
    for p in parts:
        n = p.shape[0]
        p.data = fused[start : start + n]
        start += n
    return fused


class LongContextEngine:
    """Prefill a document once, then answer questions on its cached prefix (see the module doc)."""

    def __init__(self, model: Any, config: LCConfig | None = None) -> None:
        cfg = model.config
        if cfg.model_type not in SUPPORTED_DECODERS:
            raise ValueError(
                f"LongContextEngine supports {', '.join(SUPPORTED_DECODERS)} decoders, not "
                f"'{cfg.model_type}'; use the model's generate() instead"
            )
        if getattr(cfg, "use_sliding_window", False) and cfg.sliding_window:
            raise ValueError("sliding-window attention is not supported; set use_sliding_window=False")
        self.config = config or LCConfig()
        self.model = model
        inner = model.model
        self.embed = inner.embed_tokens
        self.norm = inner.norm
        self.rotary = inner.rotary_emb
        self.lm_head = model.lm_head
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv = int(cfg.num_key_value_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        self.hidden = int(cfg.hidden_size)
        self.inter = int(cfg.intermediate_size)
        self.eps = float(cfg.rms_norm_eps)
        self.scale = self.head_dim**-0.5
        self.layers: list[_Layer] = []
        with torch.no_grad():
            for layer in inner.layers:
                a, m = layer.self_attn, layer.mlp
                w_qkv = _fuse([a.q_proj, a.k_proj, a.v_proj], "weight")
                w_gu = _fuse([m.gate_proj, m.up_proj], "weight")
                assert w_qkv is not None and w_gu is not None
                self.layers.append(
                    _Layer(
                        layer.input_layernorm.weight,
                        w_qkv,
                        _fuse([a.q_proj, a.k_proj, a.v_proj], "bias"),
                        a.o_proj.weight,
                        a.o_proj.bias,
                        layer.post_attention_layernorm.weight,
                        w_gu,
                        m.down_proj.weight,
                    )
                )
        self.device = self.layers[0].w_qkv.device
        self.dtype = self.layers[0].w_qkv.dtype
        self._direct: bool | None = None  # one flash call for new tokens (checked on first use)
        self._side: list[torch.cuda.Stream] = []  # streams beside the current one (config.streams)
        # Prefill kernels; questions never use torch.compile (its guards cost more than it saves
        # on a few tokens, and compiled code does not go into CUDA graphs here).
        self.kernels = _make_kernels(self.config.kernels, self.device)
        small = "auto" if self.config.kernels == "compile" else self.config.kernels
        self.small_kernels = _make_kernels(small, self.device)

    # -- pieces -------------------------------------------------------------------------------
    def _cos_sin(self, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, start + n, device=self.device).unsqueeze(0)
        probe = torch.empty(0, device=self.device, dtype=self.dtype)
        cos, sin = self.rotary(probe, pos)
        return cos[0], sin[0]

    def _qkv(
        self,
        K: _Kernels,
        L: _Layer,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        q_out: torch.Tensor,
        k_out: torch.Tensor,
        v_out: torch.Tensor,
    ) -> None:
        """Project a chunk; write rotated queries to ``q_out``, keys and values to the cache."""
        n = x.shape[0]
        qkv = F.linear(K.rms(x, L.ln1, self.eps), L.w_qkv, L.b_qkv)
        hq, hk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        K.rope(qkv[:, :hq].view(n, self.n_heads, self.head_dim), cos, sin, q_out)
        K.rope(qkv[:, hq : hq + hk].view(n, self.n_kv, self.head_dim), cos, sin, k_out)
        v_out.copy_(qkv[:, hq + hk :].view(n, self.n_kv, self.head_dim))

    def _kv_only(
        self,
        K: _Kernels,
        L: _Layer,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        k_out: torch.Tensor,
        v_out: torch.Tensor,
    ) -> None:
        """Keys and values of a chunk into the cache (the rows of the fused weight after Q's)."""
        n = x.shape[0]
        hq, hk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        b = None if L.b_qkv is None else L.b_qkv[hq:]
        kv = F.linear(K.rms(x, L.ln1, self.eps), L.w_qkv[hq:], b)
        K.rope(kv[:, :hk].view(n, self.n_kv, self.head_dim), cos, sin, k_out)
        v_out.copy_(kv[:, hk:].view(n, self.n_kv, self.head_dim))

    def _last_query_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One query ``(1, H, d)`` over all of ``k``/``v`` ``(L, Hkv, d)`` (it is the last token)."""
        if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            return _flash_lower_right(q, k, v, self.scale)
        rep = self.n_heads // self.n_kv
        qt = q.transpose(0, 1).unsqueeze(0)
        kt, vt = (t.transpose(0, 1).unsqueeze(0).repeat_interleave(rep, dim=1) for t in (k, v))
        return F.scaled_dot_product_attention(qt, kt, vt, scale=self.scale)[0].transpose(0, 1)

    def _finish(self, K: _Kernels, L: _Layer, x: torch.Tensor, attn: torch.Tensor) -> None:
        """x += o_proj(attn); x += mlp(norm(x)), in place on ``x`` (a chunk of the residual)."""
        a2 = attn.reshape(x.shape[0], -1)
        if L.b_o is None:
            x.addmm_(a2, L.w_o.T)
        else:
            x.add_(F.linear(a2, L.w_o, L.b_o))
        gu = F.linear(K.rms(x, L.ln2, self.eps), L.w_gu)
        x.addmm_(K.gate(gu, self.inter), L.w_down.T)

    def _per_chunk(self, n: int, step: int, fn: Callable[[int, int], None], *keep: torch.Tensor) -> None:
        """``fn(a, b)`` for every chunk ``[a, b)`` of ``n`` tokens, the chunks taking the CUDA streams
        in turn (``config.streams``); returns with the current stream waiting for all of them.
        ``keep``: tensors made on the current stream that the other streams read."""
        if self.config.streams == 1 or self.device.type != "cuda" or n <= step:
            for a in range(0, n, step):
                fn(a, min(n, a + step))
            return
        main = torch.cuda.current_stream(self.device)
        if len(self._side) != self.config.streams - 1:
            self._side = [torch.cuda.Stream(device=self.device) for _ in range(self.config.streams - 1)]
        ready = torch.cuda.Event()
        ready.record(main)  # everything queued before (attention, the previous layer) is done first
        streams = [main, *self._side]
        for i, a in enumerate(range(0, n, step)):
            s = streams[i % len(streams)]
            if s is not main:
                s.wait_event(ready)
            with torch.cuda.stream(s):
                fn(a, min(n, a + step))
        for s in self._side:
            for t in keep:
                t.record_stream(s)  # main's allocator does not reuse it before this stream is done
            main.wait_stream(s)

    def _causal(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        split = self.config.attention_split
        if split > 0 and q.is_cuda and q.shape[0] > split:
            return split_causal_attention(
                q, k, v, scale=self.scale, block=split, backend=self.config.attention
            )
        return causal_attention(q, k, v, scale=self.scale, backend=self.config.attention)

    def _extend_attention(
        self, q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, prefix: int, end: int
    ) -> torch.Tensor:
        """New tokens' attention: all of ``[0, prefix)`` plus causal over ``[prefix, end)``.

        On CUDA one flash-attention call does it (its causal mask is aligned to the last key, and
        it takes the grouped KV heads and splits long key ranges itself); the first call checks
        that against the split computation below and keeps whichever is right.
        """
        if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and self._direct is not False:
            try:
                out = _flash_lower_right(q, kc[:end], vc[:end], self.scale)
            except RuntimeError:
                self._direct = False
            else:
                if self._direct is None:
                    ref = self._split_attention(q, kc, vc, prefix, end)
                    err = float((out.float() - ref.float()).norm() / ref.float().norm())
                    self._direct = err < 2e-2
                    if not self._direct:
                        return ref
                return out
        return self._split_attention(q, kc, vc, prefix, end)

    def _split_attention(
        self, q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, prefix: int, end: int
    ) -> torch.Tensor:
        n = q.shape[0]
        g = self.n_heads // self.n_kv
        # Over the new tokens (query i of n sees new keys up to end - n + i): small.
        q_h = q.transpose(0, 1).unsqueeze(0)  # (1, H, n, d)
        k_new = kc[prefix:end].transpose(0, 1).unsqueeze(0).repeat_interleave(g, dim=1)
        v_new = vc[prefix:end].transpose(0, 1).unsqueeze(0).repeat_interleave(g, dim=1)
        parts = [attention_with_lse(q_h, k_new, v_new, causal=True, scale=self.scale)]
        if prefix > 0:
            # Over the prefix: fold each group's query heads into rows of its one KV head.
            qf = q.view(n, self.n_kv, g, self.head_dim).permute(1, 2, 0, 3).reshape(1, self.n_kv, g * n, -1)
            kp = kc[:prefix].transpose(0, 1).unsqueeze(0)
            vp = vc[:prefix].transpose(0, 1).unsqueeze(0)
            out, lse = split_kv_attention(qf, kp, vp, scale=self.scale)
            out = out.view(1, self.n_kv, g, n, self.head_dim).reshape(1, self.n_heads, n, self.head_dim)
            parts.append((out, lse.view(1, self.n_heads, n)))
        merged, _ = merge_partials(parts)
        return merged[0].transpose(0, 1)  # (n, H, d)

    def _logits(self, x_last: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.small_kernels.rms(x_last, self.norm.weight, self.eps)).float()[-1]

    # -- public -------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor | list[int]) -> KVPrefix:
        """Run the document once; return its cache and the logits after its last token."""
        ids = torch.as_tensor(input_ids, device=self.device).reshape(-1)
        n = int(ids.shape[0])
        if n == 0:
            raise ValueError("cannot prefill an empty document")
        cap = n + self.config.question_capacity
        # One allocation for the whole cache (56 cudaMalloc calls cost milliseconds after a cache flush).
        kv = torch.empty(
            2, len(self.layers), cap, self.n_kv, self.head_dim, device=self.device, dtype=self.dtype
        )
        kcache, vcache = list(kv[0].unbind(0)), list(kv[1].unbind(0))
        x = self.embed(ids)
        qbuf = torch.empty(n, self.n_heads, self.head_dim, device=self.device, dtype=self.dtype)
        step = self.config.chunk_tokens
        rotary = [self._cos_sin(a, min(n, a + step) - a) for a in range(0, n, step)]
        K = self.kernels
        last = len(self.layers) - 1 if self.config.prune_last_layer else -1
        for i, (L, kc, vc) in enumerate(zip(self.layers, kcache, vcache)):
            if i == last:
                # Only the cache and the last token's output are read after the last layer.
                for a in range(0, n, step):
                    b = min(n, a + step)
                    self._kv_only(K, L, x[a:b], *rotary[a // step], kc[a:b], vc[a:b])
                cos, sin = rotary[-1]
                scratch = torch.empty(2, 1, self.n_kv, self.head_dim, device=self.device, dtype=self.dtype)
                self._qkv(K, L, x[-1:], cos[-1:], sin[-1:], qbuf[-1:], scratch[0], scratch[1])
                attn = self._last_query_attention(qbuf[-1:], kc[:n], vc[:n])
                self._finish(K, L, x[-1:], attn)
                continue
            self._per_chunk(
                n,
                step,
                lambda a, b, L=L, kc=kc, vc=vc: self._qkv(
                    K, L, x[a:b], *rotary[a // step], qbuf[a:b], kc[a:b], vc[a:b]
                ),
            )
            attn = self._causal(qbuf, kc[:n], vc[:n])
            self._per_chunk(n, step, lambda a, b, L=L, attn=attn: self._finish(K, L, x[a:b], attn[a:b]), attn)
            del attn
        return KVPrefix(kcache, vcache, n, self._logits(x[-1:]))

    @torch.inference_mode()
    def _extend(
        self, prefix: KVPrefix, ids: torch.Tensor, start: int, last: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Read ``ids`` at positions ``start...`` on top of the prefix; logits after row ``last``
        (a one-element index tensor; default the last row)."""
        n = int(ids.shape[0])
        end = start + n
        if end > prefix.capacity:
            raise ValueError(
                f"{end - prefix.length} tokens after the prefix exceed question_capacity "
                f"{prefix.capacity - prefix.length}; raise LCConfig.question_capacity"
            )
        K = self.small_kernels
        x = self.embed(ids)
        cos, sin = self._cos_sin(start, n)
        q = torch.empty(n, self.n_heads, self.head_dim, device=self.device, dtype=self.dtype)
        for L, kc, vc in zip(self.layers, prefix.k, prefix.v):
            self._qkv(K, L, x, cos, sin, q, kc[start:end], vc[start:end])
            attn = self._extend_attention(q, kc, vc, prefix.length, end)
            self._finish(K, L, x, attn)
        return self._logits(x[-1:] if last is None else x.index_select(0, last))

    @torch.inference_mode()
    def extend(self, prefix: KVPrefix, input_ids: torch.Tensor | list[int], start: int) -> torch.Tensor:
        """Logits after ``input_ids`` written at positions ``start...`` of the question room (rows
        ``[prefix.length, capacity)``), attending to the prefix and to rows ``[length, start)``
        written by earlier calls: how a decoding loop reads its question, then one token a step.
        The prefix rows are never written, so the next question finds them unchanged."""
        if start < prefix.length:
            raise ValueError(f"start {start} is inside the cached prefix of {prefix.length} tokens")
        ids = torch.as_tensor(input_ids, device=self.device).reshape(-1)
        return self._extend(prefix, ids, start)

    def ask(self, prefix: KVPrefix, input_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Logits (float32, ``(vocab,)``) after ``input_ids`` read on top of the cached prefix.

        The prefix stays as it was: the next question reuses it."""
        ids = torch.as_tensor(input_ids, device=self.device).reshape(-1)
        n = int(ids.shape[0])
        bucket = -(-n // 32) * 32
        if self.config.graphs and ids.is_cuda and prefix.length + bucket <= prefix.capacity:
            graph = prefix.graphs.get(bucket)
            if graph is None:
                if self._direct is None:  # settle the attention path outside any capture
                    self._extend(prefix, ids, prefix.length)
                try:
                    graph = prefix.graphs[bucket] = _AskGraph(self, prefix, bucket)
                except RuntimeError:
                    graph = prefix.graphs[bucket] = False
            if graph:
                return graph(ids)
        return self._extend(prefix, ids, prefix.length)

    def generate(
        self,
        prefix: KVPrefix,
        input_ids: torch.Tensor | list[int],
        max_new_tokens: int,
        eos_token_id: int | list[int] | None = None,
    ) -> list[int]:
        """Greedy answer to ``input_ids`` on top of the cached prefix (the prefix is left as is)."""
        ids = torch.as_tensor(input_ids, device=self.device).reshape(-1)
        stop = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or [])
        logits = self._extend(prefix, ids, prefix.length)
        pos = prefix.length + int(ids.shape[0])
        out: list[int] = []
        for _ in range(max_new_tokens):
            tok = int(torch.argmax(logits))
            out.append(tok)
            if tok in stop:
                break
            logits = self._extend(prefix, torch.tensor([tok], device=self.device), pos)
            pos += 1
        return out


class _AskGraph:
    """One question length bucket on one prefix, captured as a CUDA graph.

    The question is right-padded to the bucket: causal attention keeps the padding out of the
    real tokens, the logits are read at the last real token, and the padding's keys land in the
    scratch room after the prefix, which the next question overwrites."""

    def __init__(self, engine: LongContextEngine, prefix: KVPrefix, bucket: int) -> None:
        dev = engine.device
        self.ids = torch.zeros(bucket, dtype=torch.long, device=dev)
        self.last = torch.zeros(1, dtype=torch.long, device=dev)
        stream = torch.cuda.Stream(device=dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):
            for _ in range(2):
                engine._extend(prefix, self.ids, prefix.length, self.last)
        torch.cuda.current_stream(dev).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = engine._extend(prefix, self.ids, prefix.length, self.last)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        n = int(ids.shape[0])
        self.ids.zero_()
        self.ids[:n].copy_(ids)
        self.last.fill_(n - 1)
        self.graph.replay()
        return self.out.clone()
