"""Packed (padding-free) embedding: the packing itself, and the same vectors as sentence-transformers
(real all-MiniLM-L6-v2 on the CPU here; fp16 flash-varlen on CUDA under -m gpu)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gpu.attention import packed_attention
from gpu.embed import BatchTokenizer, EmbedConfig, FastEmbedder, PackedEncoder, pack_sequences
from tests.conftest import shared

CUDA = torch.cuda.is_available()


def lara_texts(n: int) -> list[str]:
    path = shared("lara/query/32k_book_location.jsonl")
    texts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        ctx = json.loads(line).get("context") or ""
        texts += [ctx[i : i + 900] for i in range(0, min(len(ctx), 2700), 900)]
        if len(texts) >= n:
            break
    return texts[:n]


def test_pack_sequences_keeps_every_token_once() -> None:
    lengths = np.array([5, 300, 2, 40, 40, 7, 1], dtype=np.int64)
    flat = np.arange(lengths.sum(), dtype=np.int32)
    packs = pack_sequences(flat, lengths, token_budget=64, first_index=100)
    assert [p.order.tolist() for p in packs][0] == [101]  # longer than the budget: alone
    seen = sorted(i for p in packs for i in p.order.tolist())
    assert seen == list(range(100, 107))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for p in packs:
        assert p.n_tokens <= 64 or p.n_seqs == 1
        assert p.cu_seqlens.dtype == torch.int32 and p.cu_seqlens[-1] == p.n_tokens
        assert p.max_seqlen == int(p.lengths.max())
        for j, orig in enumerate(p.order.tolist()):
            a, b = int(p.cu_seqlens[j]), int(p.cu_seqlens[j + 1])
            s = orig - 100
            assert p.ids[a:b].tolist() == flat[starts[s] : starts[s] + lengths[s]].tolist()
            assert p.positions[a:b].tolist() == list(range(lengths[s]))
            assert set(p.seq_index[a:b].tolist()) == {j}
    lens_in_order = [int(lengths[o - 100]) for p in packs for o in p.order.tolist()]
    assert lens_in_order == sorted(lens_in_order, reverse=True)


def test_packed_attention_equals_attention_per_sequence() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = [3, 9, 1, 6]
    q, k, v = (torch.randn(sum(lengths), 4, 8, generator=g) for _ in range(3))
    flat = np.zeros(sum(lengths), dtype=np.int32)
    (pack,) = pack_sequences(flat, np.array(lengths), 100, sort=False)
    out = packed_attention(q, k, v, pack.cu_seqlens, pack.max_seqlen, pad_index=pack.pad_index, n_seqs=4)
    a = 0
    for n in lengths:
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[a : a + n].transpose(0, 1), k[a : a + n].transpose(0, 1), v[a : a + n].transpose(0, 1)
        ).transpose(0, 1)
        torch.testing.assert_close(out[a : a + n], ref, atol=1e-6, rtol=1e-5)
        a += n


def test_fast_embedder_equals_sentence_transformers_on_cpu(embedder) -> None:  # type: ignore[no-untyped-def]
    texts = lara_texts(6) + ["  a short one  ", "word " * 400, "Ünïcödé àccents — and [brackets]"]
    fast = FastEmbedder.from_sentence_transformer(
        embedder.model, EmbedConfig(device="cpu", token_budget=700, group_size=4)
    )
    assert fast.dim == embedder.dim and fast.max_tokens == embedder.max_tokens
    got = fast.embed(texts)
    want = embedder.embed(texts)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5
    assert fast.last_tokens > 6 * 150
    # Without carrying part-filled packs, and tokenised in a worker process: the same vectors.
    for kw in ({"carry_partial": False}, {"tokenize": "process"}):
        other = FastEmbedder.from_sentence_transformer(
            embedder.model, EmbedConfig(device="cpu", token_budget=700, group_size=4, **kw)
        )
        try:
            assert np.abs(other.embed(texts) - got).max() < 1e-6
        finally:
            other.close()
    # The tokenizer gives the ids sentence-transformers uses, cut at the window.
    tok = BatchTokenizer(embedder.model[0].tokenizer, embedder.max_tokens)
    flat, lengths = tok.encode(texts[-2:])
    assert lengths[0] == embedder.max_tokens
    ref = embedder.model[0].tokenizer(texts[-1].strip())["input_ids"]
    assert flat[lengths[0] :].tolist() == ref
    assert fast.embed([]).shape == (0, embedder.dim)


def test_unsupported_encoder_is_refused() -> None:
    from transformers import Qwen2Config, Qwen2Model

    with pytest.raises(ValueError, match="not 'qwen2'"):
        PackedEncoder(
            Qwen2Model(
                Qwen2Config(
                    hidden_size=32,
                    intermediate_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    num_key_value_heads=1,
                    vocab_size=50,
                )
            )
        )


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype,compile", [("float16", False), ("bfloat16", False), ("float16", True)])
def test_cuda_packed_encoder_equals_cpu_float32(dtype: str, compile: bool) -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    model = BertModel(cfg).eval()
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 256, size=300)
    flat = rng.integers(1000, 30000, size=int(lengths.sum())).astype(np.int32)
    cpu = PackedEncoder(model, device="cpu")
    gpu = PackedEncoder(model, device="cuda", dtype=getattr(torch, dtype), compile=compile)
    for pack in pack_sequences(flat, lengths, 8192):
        want = cpu.encode_pack(pack)
        got = gpu.encode_pack(pack.to("cuda")).cpu()
        cos = (got * want).sum(-1)
        assert cos.min() > 0.999, float(cos.min())
