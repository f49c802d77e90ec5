"""Embedding long texts with the real all-MiniLM-L6-v2: windows instead of silent truncation,
training-free window extension (position interpolation, NTK rotary scaling), late chunking."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from indexes.embedding import SentenceTransformerEmbedder, truncation_warning
from indexes.long_context import interpolate_table, ntk_rope_parameters, ntk_theta
from tests.conftest import shared


@pytest.fixture(scope="module")
def pearl() -> str:
    return shared("lara/32k/book/The Pearl.txt").read_text()[:7000]


def test_long_text_is_embedded_in_windows_not_cut(embedder, pearl: str) -> None:  # type: ignore[no-untyped-def]
    assert embedder.long_text == "windows" and embedder.max_tokens == 256
    text = pearl[:3000]  # about 650 wordpieces: the encoder reads 254 at a time
    spans = embedder.windows(text)
    assert len(spans) == 3 and spans[0][0] <= 1 and spans[-1][1] == len(text)
    assert all(embedder.count_tokens([text[a:b]])[0] <= embedder.window for a, b in spans)
    whole = embedder.embed([text])[0]
    head = embedder.embed([text[spans[0][0] : spans[0][1]]])[0]
    tail = embedder.embed([text[spans[-1][0] : spans[-1][1]]])[0]
    # The mean of the windows sees the end of the text; a cut vector would equal the head's.
    assert float(whole @ tail) > 0.6 and float(whole @ head) < 0.999
    mv = embedder.embed_multi([text, "short"])
    assert list(mv.owners) == [0, 0, 0, 1]
    assert np.allclose(np.linalg.norm(mv.vectors, axis=1), 1, atol=1e-5)
    small = embedder.embed_multi([text], window=126)
    assert len(small.owners) == len(embedder.windows(text, 126)) >= 5


def test_truncate_mode_warns(embedder, pearl: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    cut = SentenceTransformerEmbedder(embedder.tokenizer_dir, long_text="truncate")
    cut.model = embedder.model  # same weights, no second load
    with caplog.at_level(logging.WARNING, logger="indexes.embedding"):
        v = cut.embed([pearl[:3000], "short text"])
    assert "lose their end" in caplog.text and "1 of 2 texts" in caplog.text
    assert v.shape == (2, 384)
    assert truncation_warning(600, 256, "all-minilm-l6-v2", "truncate") is not None
    assert "chunking.max_tokens <= 254" in str(truncation_warning(600, 256, "m", "truncate"))
    assert truncation_warning(600, 256, "m", "windows") is None
    assert truncation_warning(240, 256, "m", "truncate") is None


def test_position_interpolation_reads_a_whole_long_chunk(embedder, pearl: str) -> None:  # type: ignore[no-untyped-def]
    ext = SentenceTransformerEmbedder(embedder.tokenizer_dir, extend_to=1024)
    table = ext._hf_model().embeddings.position_embeddings.weight
    base = embedder._hf_model().embeddings.position_embeddings.weight
    assert ext.max_tokens == 1024 and tuple(table.shape) == (1024, 384)
    # The ends of the table are kept; inner rows are interpolated between learned ones.
    assert np.allclose(table[0].detach().numpy(), base[0].detach().numpy())
    assert np.allclose(table[-1].detach().numpy(), base[-1].detach().numpy())
    mid = interpolate_table(base, 1023)[1].detach().numpy()
    assert np.allclose(mid, (0.5 * (base[0] + base[1])).detach().numpy(), atol=1e-6)
    text = pearl[:3000]
    assert ext.count_tokens([text])[0] <= 1022
    v = ext.embed([text])[0]
    # It reads the whole chunk: the vector is closer to the mean of windows than to the head.
    head = embedder.embed([text[: embedder.windows(text)[0][1]]])[0]
    assert float(v @ embedder.embed([text])[0]) > float(v @ head) - 0.05
    assert np.isclose(np.linalg.norm(v), 1, atol=1e-5)


def test_ntk_scaling_of_rotary_configs() -> None:
    from transformers import AutoModel, ModernBertConfig

    assert ntk_theta(10000.0, 1.0, 64) == 10000.0
    assert ntk_theta(10000.0, 4.0, 64) == pytest.approx(10000 * 4 ** (64 / 62))
    cfg = ModernBertConfig(
        hidden_size=64, num_attention_heads=2, num_hidden_layers=2, intermediate_size=96,
        max_position_embeddings=128, vocab_size=100, pad_token_id=0,
    )  # fmt: skip
    over = ntk_rope_parameters(cfg, 4.0)
    assert over["max_position_embeddings"] == 512
    params = over["rope_parameters"]
    layers = params.values() if all(isinstance(v, dict) for v in params.values()) else [params]
    old = cfg.rope_parameters
    old_layers = old.values() if all(isinstance(v, dict) for v in old.values()) else [old]
    for p, o in zip(layers, old_layers):
        assert p["rope_theta"] == pytest.approx(ntk_theta(o["rope_theta"], 4.0, 32))
    # The scaled config builds and runs past its original window.
    import torch

    model = AutoModel.from_config(ModernBertConfig(**{**cfg.to_dict(), **over})).eval()
    with torch.inference_mode():
        out = model(input_ids=torch.randint(1, 100, (1, 400))).last_hidden_state
    assert out.shape == (1, 400, 64) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="RoPE encoders only"):
        from transformers import BertConfig

        ntk_rope_parameters(BertConfig(), 2.0)


def test_late_chunking_pools_contextual_tokens(embedder, pearl: str) -> None:  # type: ignore[no-untyped-def]
    spans = [(0, 900), (900, 2500), (2500, 4000)]
    late = embedder.embed_spans(pearl[:4000], spans)
    alone = embedder.embed([pearl[a:b] for a, b in spans])
    assert late.shape == (3, 384) and np.allclose(np.linalg.norm(late, axis=1), 1, atol=1e-5)
    sims = late @ alone.T
    assert all(sims[i, i] > 0.8 and sims[i, i] == sims[i].max() for i in range(3))


def test_questions_embed_on_one_cpu_thread_and_restore_the_setting(embedder) -> None:  # type: ignore[no-untyped-def]
    import torch

    before = torch.get_num_threads()
    v = embedder.embed(["What was the net loss for the quarter?"], is_query=True)
    assert v.shape == (1, 384) and torch.get_num_threads() == before
    assert embedder.query_threads == 1
