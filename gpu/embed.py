"""Fast batched embedding: text in, unit vectors out, with no padding.

The texts are tokenised by the Rust tokenizer in a background thread (it releases the GIL), sorted
by length and packed end to end into packs of at most ``token_budget`` tokens, as in the
Prepacking paper: a pack is one ``(tokens,)`` row with position ids restarting at every sequence
and ``cu_seqlens`` marking where each one starts, so no FLOP is spent on padding. Attention runs
inside each sequence only (flash-attention varlen on CUDA; a padded SDPA with a key mask on the
CPU). The encoder is the Hugging Face BERT-family module's own weights, re-laid out (Q, K and V
fused into one matrix) and cast to fp16/bf16 on the GPU; mean or CLS pooling and L2 normalisation
follow, as the sentence-transformers modules do.

On the CPU the same code runs in float32 and gives the sentence-transformers vectors to rounding
(tests/test_gpu_embed.py checks both). Nothing here imports project code.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gpu.attention import packed_attention

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta")


# -- tokenisation and packing ------------------------------------------------------------------
class BatchTokenizer:
    """A Hugging Face fast tokenizer that returns flat int32 ids and lengths (special tokens added)."""

    def __init__(self, hf_tokenizer: Any, max_length: int, *, strip: bool = True, fast: bool = True) -> None:
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                f"tokenizer {type(hf_tokenizer).__name__} is not a fast (Rust) tokenizer; "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        self.json = backend.to_str()
        self._tok = _make_tokenizer(self.json, max_length)
        self.max_length = max_length
        self.strip = strip
        self.fast = fast

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of all texts end to end (int32) and each text's length (int64)."""
        return _encode(self._tok, texts, self.strip, self.fast)


def _make_tokenizer(json_str: str, max_length: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json_str)
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def _encode(tok: Any, texts: Sequence[str], strip: bool, fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
    batch = [t.strip() for t in texts] if strip else list(texts)
    # encode_batch_fast (tokenizers >= 0.20) skips the character offsets, which nothing here uses.
    encode = (getattr(tok, "encode_batch_fast", None) if fast else None) or tok.encode_batch
    ids = [e.ids for e in encode(batch)]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


# Tokenising in a worker process (FastEmbedder(tokenize="process")): the worker holds its own
# tokenizer, so turning the Rust encodings into arrays never takes the GPU-feeding process's GIL.
_WORKER: dict[str, Any] = {}


def _worker_init(json_str: str, max_length: int, strip: bool, fast: bool) -> None:
    _WORKER.update(tok=_make_tokenizer(json_str, max_length), strip=strip, fast=fast)


def _worker_encode(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return _encode(_WORKER["tok"], texts, _WORKER["strip"], _WORKER["fast"])


@dataclass(frozen=True)
class Pack:
    """Sequences packed end to end, with what attention and pooling need to keep them apart."""

    ids: torch.Tensor  # (T,) int64 token ids
    positions: torch.Tensor  # (T,) int64 position of each token in its own sequence
    seq_index: torch.Tensor  # (T,) int64 which sequence of the pack each token belongs to
    cu_seqlens: torch.Tensor  # (B + 1,) int32 start of each sequence, then T
    lengths: torch.Tensor  # (B,) int64
    order: torch.Tensor  # (B,) int64 each sequence's index in the caller's input
    max_seqlen: int

    @property
    def n_seqs(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def pad_index(self) -> torch.Tensor:
        """Each token's row in a padded ``(n_seqs * max_seqlen)`` layout (CPU attention path)."""
        return self.seq_index * self.max_seqlen + self.positions

    def to(self, device: str | torch.device) -> Pack:
        non_blocking = torch.device(device).type == "cuda"

        def move(t: torch.Tensor) -> torch.Tensor:
            if non_blocking:
                t = t.pin_memory()
            return t.to(device, non_blocking=non_blocking)

        return Pack(
            move(self.ids),
            move(self.positions),
            move(self.seq_index),
            move(self.cu_seqlens),
            move(self.lengths),
            move(self.order),
            self.max_seqlen,
        )


def pack_sequences(
    flat_ids: np.ndarray,
    lengths: np.ndarray,
    token_budget: int,
    *,
    first_index: int = 0,
    sort: bool = True,
    indices: np.ndarray | None = None,
) -> list[Pack]:
    """Cut tokenised sequences into packs of at most ``token_budget`` tokens.

    ``flat_ids`` holds the sequences end to end, ``lengths`` their lengths; sequence ``i`` is the
    caller's input ``first_index + i``. With ``sort`` the sequences go longest first, so that the
    packs are alike. A sequence longer than the budget gets a pack of its own. ``indices``, when
    given, names each sequence's input index instead (sequences carried over from earlier groups).
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    n = int(lengths.shape[0])
    if n == 0:
        return []
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    order = np.argsort(-lengths, kind="stable") if sort else np.arange(n)
    packs: list[Pack] = []
    i = 0
    while i < n:
        j, total = i, 0
        while j < n and (j == i or total + lengths[order[j]] <= token_budget):
            total += int(lengths[order[j]])
            j += 1
        sel = order[i:j]
        lens = lengths[sel]
        ids = np.concatenate([flat_ids[starts[s] : starts[s] + lengths[s]] for s in sel])
        seq_index = np.repeat(np.arange(len(sel), dtype=np.int64), lens)
        cu = np.zeros(len(sel) + 1, dtype=np.int32)
        np.cumsum(lens, out=cu[1:])
        positions = np.arange(total, dtype=np.int64) - np.repeat(cu[:-1].astype(np.int64), lens)
        packs.append(
            Pack(
                torch.from_numpy(ids.astype(np.int64)),
                torch.from_numpy(positions),
                torch.from_numpy(seq_index),
                torch.from_numpy(cu),
                torch.from_numpy(lens.astype(np.int64)),
                torch.from_numpy(
                    indices[sel].astype(np.int64)
                    if indices is not None
                    else sel.astype(np.int64) + first_index
                ),
                int(lens.max()),
            )
        )
        i = j
    return packs


# -- the packed encoder ------------------------------------------------------------------------
def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported activation '{name}' in the packed encoder; use the model's own forward")


def _add_layer_norm(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float
) -> torch.Tensor:
    return F.layer_norm(x + y, (x.shape[-1],), w, b, eps)


def _gelu_linear_fused(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``gelu(x @ w.T + b)`` with the GELU in the matrix product's epilogue (cuBLASLt on CUDA)."""
    return torch._addmm_activation(b, x, w.t(), use_gelu=True)


@dataclass(frozen=True)
class _Layer:
    w_qkv: torch.Tensor
    b_qkv: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    w_1: torch.Tensor
    b_1: torch.Tensor
    w_2: torch.Tensor
    b_2: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor


class PackedEncoder:
    """A BERT-family encoder run over :class:`Pack` es: no padding, fused QKV, varlen attention.

    Built from a Hugging Face ``BertModel`` (or RoBERTa / XLM-R) with :meth:`from_hf`; the weights
    are copied, so the source module may be freed. ``pooling`` is ``mean`` or ``cls``.
    """

    def __init__(
        self,
        hf_model: Any,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        pooling: str = "mean",
        normalize: bool = True,
        compile: bool = False,
        attention: str = "auto",
        fused_gelu: bool = True,
        kernels: str = "auto",
    ) -> None:
        cfg = hf_model.config
        if cfg.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"the packed encoder supports {', '.join(SUPPORTED_MODEL_TYPES)}, not '{cfg.model_type}'; "
                "embed with sentence-transformers' encode instead"
            )
        if pooling not in ("mean", "cls"):
            raise ValueError(f"unknown pooling '{pooling}'; use mean or cls")
        if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type '{cfg.position_embedding_type}' is not supported")

        def t(p: torch.Tensor) -> torch.Tensor:
            return p.detach().to(device=device, dtype=dtype).contiguous()

        emb = hf_model.embeddings
        self.word = t(emb.word_embeddings.weight)
        self.pos = t(emb.position_embeddings.weight)
        self.type0 = t(emb.token_type_embeddings.weight[0])
        self.emb_ln = (t(emb.LayerNorm.weight), t(emb.LayerNorm.bias), float(emb.LayerNorm.eps))
        # RoBERTa-style models number positions from padding_idx + 1.
        self.position_offset = cfg.pad_token_id + 1 if cfg.model_type != "bert" else 0
        self.layers: list[_Layer] = []
        for layer in hf_model.encoder.layer:
            sa = layer.attention.self
            self.layers.append(
                _Layer(
                    t(torch.cat([sa.query.weight, sa.key.weight, sa.value.weight])),
                    t(torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])),
                    t(layer.attention.output.dense.weight),
                    t(layer.attention.output.dense.bias),
                    t(layer.attention.output.LayerNorm.weight),
                    t(layer.attention.output.LayerNorm.bias),
                    t(layer.intermediate.dense.weight),
                    t(layer.intermediate.dense.bias),
                    t(layer.output.dense.weight),
                    t(layer.output.dense.bias),
                    t(layer.output.LayerNorm.weight),
                    t(layer.output.LayerNorm.bias),
                )
            )
        self.eps = float(cfg.layer_norm_eps)
        self.heads = int(cfg.num_attention_heads)
        self.hidden = int(cfg.hidden_size)
        self.max_positions = int(cfg.max_position_embeddings) - self.position_offset
        self.act = _activation(cfg.hidden_act)
        self.device = device
        self.dtype = dtype
        self.pooling = pooling
        self.normalize = normalize
        self.attention = attention
        self.n_layers = len(self.layers)
        self.intermediate = int(cfg.intermediate_size)
        self._add_ln: Callable[..., torch.Tensor] = _add_layer_norm
        self._embed_ln: Callable[..., torch.Tensor] | None = None
        if kernels not in ("auto", "triton", "torch"):
            raise ValueError(f"unknown kernels '{kernels}'; use auto, triton or torch")
        on_cuda = str(device).startswith("cuda")
        if compile:
            self._add_ln = torch.compile(_add_layer_norm, dynamic=True)
        elif kernels == "triton" or (kernels == "auto" and on_cuda and dtype != torch.float32):
            # One-pass residual add + LayerNorm and embedding + LayerNorm (gpu.triton_embed).
            try:
                from gpu import triton_embed
            except ImportError:
                if kernels == "triton":
                    raise
            else:
                self._add_ln = triton_embed.add_layer_norm
                self._embed_ln = triton_embed.embed_layer_norm
        self.kernels = "triton" if self._embed_ln is not None else "torch"
        # GELU fused into the first FFN product on CUDA (cuBLASLt's epilogue; the GPU test checks it
        # against the exact CPU path); elsewhere the model's own activation.
        gelu = cfg.hidden_act in ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")
        self.fused_gelu = fused_gelu and gelu and str(device).startswith("cuda")

    def flops_per_token(self, mean_sq_len: float) -> float:
        """Matrix FLOPs per token: the linear layers plus attention at the given mean of L^2 / L."""
        h, i = self.hidden, self.intermediate
        linear = 2 * (4 * h * h + 2 * h * i)
        return self.n_layers * (linear + 4 * mean_sq_len * h)

    @torch.inference_mode()
    def hidden_states(self, pack: Pack) -> torch.Tensor:
        """Last hidden states of every token of the pack, ``(tokens, hidden)``."""
        if pack.max_seqlen > self.max_positions:
            raise ValueError(
                f"a sequence of {pack.max_seqlen} tokens exceeds the model's {self.max_positions} "
                "positions; truncate when tokenising"
            )
        if self._embed_ln is not None:
            x = self._embed_ln(
                pack.ids, pack.positions, self.word, self.pos, self.type0, *self.emb_ln, self.position_offset
            )
        else:
            x = self.word[pack.ids] + self.pos[pack.positions + self.position_offset] + self.type0
            x = F.layer_norm(x, (self.hidden,), self.emb_ln[0], self.emb_ln[1], self.emb_ln[2])
        n_tok = pack.n_tokens
        head_dim = self.hidden // self.heads
        pad_index = None if self.attention == "flash" or x.is_cuda else pack.pad_index
        for L in self.layers:
            qkv = F.linear(x, L.w_qkv, L.b_qkv).view(n_tok, 3, self.heads, head_dim)
            a = packed_attention(
                qkv[:, 0],
                qkv[:, 1],
                qkv[:, 2],
                pack.cu_seqlens,
                pack.max_seqlen,
                pad_index=pad_index,
                n_seqs=pack.n_seqs,
                backend=self.attention,
            )
            y = F.linear(a.reshape(n_tok, self.hidden), L.w_o, L.b_o)
            x = self._add_ln(x, y, L.ln1_w, L.ln1_b, self.eps)
            if self.fused_gelu:
                mid = _gelu_linear_fused(x, L.w_1, L.b_1)
            else:
                mid = self.act(F.linear(x, L.w_1, L.b_1))
            x = self._add_ln(x, F.linear(mid, L.w_2, L.b_2), L.ln2_w, L.ln2_b, self.eps)
        return x

    @torch.inference_mode()
    def pool(self, pack: Pack, x: torch.Tensor) -> torch.Tensor:
        """Pooled (and normalised) float32 vectors of the pack's sequences, in pack order."""
        if self.pooling == "cls":
            v = x[pack.cu_seqlens[:-1].long()].float()
        else:
            v = torch.zeros(pack.n_seqs, self.hidden, device=x.device, dtype=torch.float32)
            v.index_add_(0, pack.seq_index, x.float())
            v /= pack.lengths.unsqueeze(1).to(v.dtype)
        return F.normalize(v, dim=-1) if self.normalize else v

    def encode_pack(self, pack: Pack) -> torch.Tensor:
        return self.pool(pack, self.hidden_states(pack))


# -- text in, vectors out ----------------------------------------------------------------------
@dataclass(frozen=True)
class EmbedConfig:
    """How :class:`FastEmbedder` runs. ``dtype`` ``auto`` is bf16 on GPUs that have it, else fp16
    on CUDA and float32 on the CPU. ``kernels``: ``auto`` (Triton add + LayerNorm on CUDA in half
    precision), ``triton`` or ``torch``. ``tokenize``: ``thread`` (a background thread) or
    ``process`` (a worker process, started on first use and kept). ``carry_partial`` holds each
    tokenised group's last, part-filled pack back and packs it with the next group."""

    device: str = "auto"
    dtype: str = "auto"
    token_budget: int | None = None  # tokens a pack; None: 262,144 on CUDA, 65,536 elsewhere
    group_size: int = 512
    compile: bool = False
    attention: str = "auto"
    fused_gelu: bool = True
    kernels: str = "auto"
    tokenize: str = "thread"
    carry_partial: bool = True


def resolve_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if name not in table:
        raise ValueError(f"unknown dtype '{name}'; use auto, float32, float16 or bfloat16")
    return table[name]


def _groups(n: int, group_size: int) -> Iterator[tuple[int, int]]:
    """Input ranges to tokenise: a small first one so the GPU starts early, then full groups."""
    start, size = 0, max(1, min(group_size, 128))
    while start < n:
        end = min(n, start + size)
        yield start, end
        start, size = end, group_size


class FastEmbedder:
    """Text in, unit float32 vectors out, through :class:`PackedEncoder`.

    Build it with :meth:`from_sentence_transformer` from a loaded ``SentenceTransformer`` whose
    modules are Transformer, Pooling (mean or CLS) and optionally Normalize, the layout of
    all-MiniLM-L6-v2 and most BERT-family sentence encoders.
    """

    def __init__(
        self,
        encoder: PackedEncoder,
        tokenizer: BatchTokenizer,
        *,
        token_budget: int = 65536,
        group_size: int = 512,
        tokenize: str = "thread",
        carry_partial: bool = True,
    ) -> None:
        if tokenize not in ("thread", "process"):
            raise ValueError(f"unknown tokenize '{tokenize}'; use thread or process")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.token_budget = max(token_budget, tokenizer.max_length)
        self.group_size = group_size
        self.tokenize = tokenize
        self.carry_partial = carry_partial
        self._pool: Any = None
        self.dim = encoder.hidden
        self.max_tokens = tokenizer.max_length
        self.device = encoder.device
        self.last_tokens = 0

    @classmethod
    def from_sentence_transformer(cls, st_model: Any, config: EmbedConfig | None = None) -> FastEmbedder:
        from gpu.device import resolve_device

        cfg = config or EmbedConfig()
        device = resolve_device(cfg.device)
        modules = list(st_model)
        names = [type(m).__name__ for m in modules]
        if not names or names[0] != "Transformer" or "Pooling" not in names:
            raise ValueError(f"modules {names} are not Transformer + Pooling; use encode() instead")
        pooling_module = modules[names.index("Pooling")]
        mode = getattr(pooling_module, "pooling_mode", None) or (
            "cls" if getattr(pooling_module, "pooling_mode_cls_token", False) else "mean"
        )
        if isinstance(mode, (tuple, list)) and len(mode) == 1:
            mode = mode[0]
        pooling = "cls" if mode == "cls" else "mean" if mode in ("mean", "mean_tokens") else str(mode)
        extra = [n for n in names[1:] if n not in ("Pooling", "Normalize")]
        if extra:
            raise ValueError(f"modules {extra} after the transformer are not supported; use encode()")
        transformer = modules[0]
        hf_model = getattr(transformer, "auto_model", None) or transformer.model
        hf_tokenizer = getattr(transformer, "tokenizer", None) or transformer.processor
        encoder = PackedEncoder(
            hf_model,
            device=device,
            dtype=resolve_dtype(cfg.dtype, device),
            pooling=pooling,
            normalize="Normalize" in names,
            compile=cfg.compile,
            attention=cfg.attention,
            fused_gelu=cfg.fused_gelu,
            kernels=cfg.kernels,
        )
        tokenizer = BatchTokenizer(hf_tokenizer, int(transformer.max_seq_length))
        budget = cfg.token_budget or (262144 if str(device).startswith("cuda") else 65536)
        return cls(
            encoder,
            tokenizer,
            token_budget=budget,
            group_size=cfg.group_size,
            tokenize=cfg.tokenize,
            carry_partial=cfg.carry_partial,
        )

    def embed_tokens(self, flat_ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """Vectors of pre-tokenised sequences, on the encoder's device, in input order."""
        out = torch.empty(len(lengths), self.dim, device=self.device, dtype=torch.float32)
        for pack in pack_sequences(flat_ids, lengths, self.token_budget):
            p = pack.to(self.device)
            out.index_copy_(0, p.order, self.encoder.encode_pack(p))
        return out

    def _process_pool(self) -> Any:
        """The tokenising worker process (spawned on first use, then kept)."""
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            t = self.tokenizer
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=mp.get_context("spawn"),
                initializer=_worker_init,
                initargs=(t.json, t.max_length, t.strip, t.fast),
            )
        return self._pool

    def close(self) -> None:
        """Stop the tokenising worker process, if one was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def embed(self, texts: Sequence[str], *, is_query: bool = False) -> np.ndarray:
        """``(len(texts), dim)`` float32 vectors; tokenising overlaps the GPU's work."""
        n = len(texts)
        out = torch.empty(n, self.dim, device=self.device, dtype=torch.float32)
        tokens = 0
        thread_pool = None
        if self.tokenize == "thread":
            pool = thread_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
            encode: Callable[..., tuple[np.ndarray, np.ndarray]] = self.tokenizer.encode
        else:
            pool, encode = self._process_pool(), _worker_encode
        try:
            ranges = list(_groups(n, self.group_size))
            futures: list[Future[tuple[np.ndarray, np.ndarray]]] = [
                pool.submit(encode, texts[a:b]) for a, b in ranges
            ]
            held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # sequences carried over
            for g, ((start, end), fut) in enumerate(zip(ranges, futures)):
                flat, lengths = fut.result()
                tokens += int(lengths.sum())
                index = np.arange(start, end, dtype=np.int64)
                if held is not None:
                    flat = np.concatenate([held[0], flat])
                    lengths = np.concatenate([held[1], lengths])
                    index = np.concatenate([held[2], index])
                    held = None
                packs = pack_sequences(flat, lengths, self.token_budget, indices=index)
                room = self.token_budget - self.tokenizer.max_length  # another sequence would fit
                if self.carry_partial and g + 1 < len(ranges) and packs and packs[-1].n_tokens <= room:
                    last = packs.pop()  # part-filled: pack it again with the next group
                    held = (last.ids.numpy().astype(np.int32), last.lengths.numpy(), last.order.numpy())
                for pack in packs:
                    p = pack.to(self.device)
                    out.index_copy_(0, p.order, self.encoder.encode_pack(p))
        finally:
            if thread_pool is not None:
                thread_pool.shutdown(wait=True, cancel_futures=True)
        self.last_tokens = tokens
        return out.cpu().numpy()
