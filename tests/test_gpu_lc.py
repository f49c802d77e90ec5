"""Long-context engine: prefill and questions on the cached prefix give what the model's own
forward gives (tiny real architectures, float32 on the CPU; bf16 on CUDA under -m gpu)."""

from __future__ import annotations

import pytest
import torch

from gpu.attention import attention_with_lse, merge_partials, split_kv_attention
from gpu.lc import LCConfig, LongContextEngine

CUDA = torch.cuda.is_available()


def tiny(kind: str = "qwen2", seed: int = 0):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cfg_cls, model_cls = (
        (Qwen2Config, Qwen2ForCausalLM) if kind == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    )
    cfg = cfg_cls(
        vocab_size=400,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return model_cls(cfg).eval()


@torch.no_grad()
def last_logits(model, ids: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return model(ids[None]).logits[0, -1].float()


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_prefill_and_questions_equal_full_forward(kind: str) -> None:
    model = tiny(kind)
    g = torch.Generator().manual_seed(1)
    doc, q1, q2 = (torch.randint(0, 400, (n,), generator=g) for n in (200, 17, 4))
    want_doc = last_logits(model, doc)
    want1, want2 = last_logits(model, torch.cat([doc, q1])), last_logits(model, torch.cat([doc, q2]))
    engine = LongContextEngine(model, LCConfig(chunk_tokens=64, question_capacity=40))
    prefix = engine.prefill(doc)
    torch.testing.assert_close(prefix.last_logits, want_doc, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(engine.ask(prefix, q1), want1, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(engine.ask(prefix, q2), want2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(engine.ask(prefix, q1), want1, atol=1e-4, rtol=1e-4)  # prefix untouched
    # The model still works after the engine fused its projections (views, same values).
    torch.testing.assert_close(last_logits(model, doc), want_doc)
    with pytest.raises(ValueError, match="question_capacity"):
        engine.ask(prefix, torch.zeros(41, dtype=torch.long))


def test_generate_equals_model_generate() -> None:
    model = tiny("qwen2", seed=3)
    g = torch.Generator().manual_seed(2)
    doc, q = torch.randint(0, 400, (120,), generator=g), torch.randint(0, 400, (9,), generator=g)
    engine = LongContextEngine(model, LCConfig(question_capacity=32))
    prefix = engine.prefill(doc)
    got = engine.generate(prefix, q, 6)
    with torch.no_grad():
        full = torch.cat([doc, q])[None]
        want = model.generate(full, max_new_tokens=6, do_sample=False)[0, full.shape[1] :].tolist()
    assert got == want
    assert engine.generate(prefix, q, 6) == got


def test_split_kv_and_merge_are_exact() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 6, 16, generator=g)
    k, v = torch.randn(1, 4, 5003, 16, generator=g), torch.randn(1, 4, 5003, 16, generator=g)
    out, lse = split_kv_attention(q, k, v, min_split=256)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(lse, torch.logsumexp(q @ k.transpose(-1, -2) / 4, dim=-1))
    # Prefix (no mask) + new tokens (causal) merged == causal attention aligned to the last key.
    full, _ = attention_with_lse(q, k[:, :, :300], v[:, :, :300], causal=True)
    head = split_kv_attention(q, k[:, :, :294], v[:, :, :294], min_split=64)
    tail = attention_with_lse(q, k[:, :, 294:300], v[:, :, 294:300], causal=True)
    torch.testing.assert_close(merge_partials([head, tail])[0], full)


def test_unsupported_decoder_is_refused() -> None:
    from transformers import BertConfig, BertLMHeadModel

    with pytest.raises(ValueError, match="not 'bert'"):
        LongContextEngine(
            BertLMHeadModel(
                BertConfig(
                    hidden_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    intermediate_size=32,
                    vocab_size=50,
                    is_decoder=True,
                )
            )
        )


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("attention", ["auto", "flash", "cudnn"])
def test_cuda_bf16_engine_matches_cpu_and_reuses_prefix(attention: str) -> None:
    model = tiny("qwen2")
    g = torch.Generator().manual_seed(1)
    doc, q = torch.randint(0, 400, (5000,), generator=g), torch.randint(0, 400, (37,), generator=g)
    want = last_logits(model, torch.cat([doc, q]))
    gpu_model = tiny("qwen2").to("cuda", torch.bfloat16)
    engine = LongContextEngine(gpu_model, LCConfig(chunk_tokens=1024, attention=attention))
    prefix = engine.prefill(doc.cuda())
    got = engine.ask(prefix, q.cuda()).cpu()  # one flash call over 5,000 cached tokens, or the split path
    rel = float((got - want).norm() / want.norm())
    assert rel < 3e-2, rel
    assert engine._direct is True  # the single lower-right-causal flash call agreed with the split path
    again = engine.ask(prefix, q.cuda()).cpu()  # replayed CUDA graph (question padded to 64)
    assert prefix.graphs and float((again - got).norm() / got.norm()) < 1e-2
    engine._direct = False  # and the split path (flash over pieces of the prefix, merged) agrees too
    split = engine._extend(prefix, q.cuda(), prefix.length).cpu()
    assert float((split - got).norm() / got.norm()) < 2e-2
    full = engine.prefill(torch.cat([doc, q]).cuda()).last_logits.cpu()
    assert float((got - full).norm() / full.norm()) < 3e-2


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_split_causal_attention_equals_one_call() -> None:
    from gpu.lc import causal_attention, split_causal_attention

    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(3000, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(3000, 2, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(3000, 2, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    ref = causal_attention(q, k, v, scale=128**-0.5, backend="math").float()
    got = split_causal_attention(q, k, v, scale=128**-0.5, block=1024).float()
    assert float((got - ref).norm() / ref.norm()) < 1e-2


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_prefill_on_several_streams_equals_one_stream() -> None:
    gpu_model = tiny("qwen2").to("cuda", torch.bfloat16)
    doc = torch.randint(0, 400, (5000,), generator=torch.Generator().manual_seed(4)).cuda()
    one = LongContextEngine(gpu_model, LCConfig(chunk_tokens=512)).prefill(doc)
    for streams in (2, 3):
        many = LongContextEngine(gpu_model, LCConfig(chunk_tokens=512, streams=streams)).prefill(doc)
        torch.testing.assert_close(many.last_logits, one.last_logits, atol=0, rtol=0)
        for a, b in zip(many.k + many.v, one.k + one.v):
            torch.testing.assert_close(a[: many.length], b[: one.length], atol=0, rtol=0)


def test_streams_setting_is_checked_and_a_no_op_on_the_cpu() -> None:
    with pytest.raises(ValueError, match="streams"):
        LCConfig(streams=0)
    model = tiny("qwen2")
    doc = torch.randint(0, 400, (300,), generator=torch.Generator().manual_seed(5))
    a = LongContextEngine(model, LCConfig(chunk_tokens=64)).prefill(doc).last_logits
    b = LongContextEngine(model, LCConfig(chunk_tokens=64, streams=2)).prefill(doc).last_logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)
