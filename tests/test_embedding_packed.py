"""The embedder the app uses takes gpu.embed's packed encoder on CUDA and gives the same vectors
as sentence-transformers on the CPU. The model is a real BERT architecture with random weights
and a small WordPiece vocabulary written here, so the test runs on a GPU machine with no weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from indexes.embedding import SentenceTransformerEmbedder

WORDS = [
    "the",
    "old",
    "man",
    "and",
    "sea",
    "fish",
    "boat",
    "hook",
    "line",
    "sun",
    "water",
    "day",
    "night",
    "he",
    "she",
    "it",
    "was",
    "is",
    "had",
    "a",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "his",
    "her",
    "they",
    "we",
    "you",
    "i",
    "that",
    "this",
    "at",
    "by",
    "from",
    "as",
    "be",
    "were",
    "are",
    "marlin",
    "shark",
    "hand",
]


def tiny_sentence_model(root: Path) -> Path:
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
    ]
    (root / "tok").mkdir(parents=True)
    (root / "tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(root / "tok" / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=128,
    )
    hf_dir = root / "hf"
    BertModel(cfg).save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=64)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = models.Pooling(dim(), pooling_mode="mean")
    out = root / "st"
    SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu").save(str(out))
    return out


def texts(n: int) -> list[str]:
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 120)))) for _ in range(n)]


def test_packed_path_stays_off_on_the_cpu(tmp_path: Path) -> None:
    emb = SentenceTransformerEmbedder(tiny_sentence_model(tmp_path), device="cpu")
    vecs = emb.embed(texts(5))
    assert emb.packed_gpu is False and emb._packed is None
    assert vecs.shape == (5, 128)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_embedder_uses_packed_encoder_and_matches_cpu(tmp_path: Path) -> None:
    model_dir = tiny_sentence_model(tmp_path)
    batch = texts(400)  # some longer than the 64-token window: windowed, then pooled
    cpu = SentenceTransformerEmbedder(model_dir, device="cpu").embed(batch)
    gpu = SentenceTransformerEmbedder(model_dir, device="cuda")
    got = gpu.embed(batch)
    assert gpu._packed is not None, "the packed encoder was not used on CUDA"
    cos = (got * cpu).sum(1)
    assert cos.min() > 0.995, float(cos.min())
    # Queries still go through sentence-transformers and agree too.
    q = gpu.embed(["the old man and the marlin"], is_query=True)
    q_cpu = SentenceTransformerEmbedder(model_dir, device="cpu").embed(
        ["the old man and the marlin"], is_query=True
    )
    assert float((q * q_cpu).sum()) > 0.995
