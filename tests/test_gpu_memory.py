"""The LC memory estimate: parameter counts, KV bytes per token, and the fit decision."""

from __future__ import annotations

import pytest
import torch

from gpu.memory import GIB, ModelShape, estimate_lc_memory, lc_fits, max_lc_tokens


def qwen7b():  # type: ignore[no-untyped-def]
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        tie_word_embeddings=False,
    )


@pytest.mark.parametrize("kind,tied", [("qwen2", False), ("qwen2", True), ("llama", False)])
def test_parameter_count_matches_the_model(kind: str, tied: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cfg_cls, model_cls = (
        (Qwen2Config, Qwen2ForCausalLM) if kind == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    )
    cfg = cfg_cls(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    with torch.device("meta"):
        model = model_cls(cfg)
    assert ModelShape.from_config(cfg).n_params == sum(p.numel() for p in model.parameters())


def test_qwen25_7b_figures() -> None:
    shape = ModelShape.from_config(qwen7b())
    assert abs(shape.n_params - 7.6156e9) < 1e6  # the published 7.62B
    assert shape.kv_bytes_per_token() == 28 * 2 * 4 * 128 * 2 == 57_344
    small, big = estimate_lc_memory(shape, 8192), estimate_lc_memory(shape, 131_072)
    assert small.weights == big.weights == shape.n_params * 2
    assert big.kv_cache == 57_344 * (131_072 + 1024)
    assert big.total > small.total and 20 * GIB < big.total < 40 * GIB
    linear, attention = shape.prefill_flops(32_768)
    assert 4.2e14 < linear < 4.4e14 and 2.1e14 < attention < 2.2e14


def test_lc_fits_explains_itself() -> None:
    shape = ModelShape.from_config(qwen7b())
    yes = lc_fits(shape, 32_768, free_bytes=79 * GIB)
    no = lc_fits(shape, 131_072, free_bytes=24 * GIB)
    assert yes.fits and not no.fits
    assert "fits in 79.0 GiB" in yes.reason and "does not fit" in no.reason and "KV cache" in no.reason


def test_max_lc_tokens_is_the_largest_count_that_fits() -> None:
    shape = ModelShape.from_config(qwen7b())
    free = 10 * GIB  # after the weights were loaded
    n = max_lc_tokens(shape, free)

    def need(k: int) -> int:
        est = estimate_lc_memory(shape, k)
        return est.total - est.weights

    assert need(n) <= 0.95 * free < need(n + 1)
    assert 100_000 < n < 200_000  # ~57 KB of KV a token plus activations
    # Counting the weights too (nothing loaded yet): 10 GiB does not even hold them.
    assert max_lc_tokens(shape, free, weights_loaded=False) == 0
    assert max_lc_tokens(shape, 40 * GIB, weights_loaded=False) < max_lc_tokens(shape, 40 * GIB)
