"""Embedders: text in, L2-normalised float32 vectors out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int
    tokenizer_dir: str

    def embed(self, texts: Sequence[str], *, is_query: bool = False) -> np.ndarray:
        """Vectors of shape (len(texts), dim), float32, unit length."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local directory."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        self.name = name or Path(model_dir).name
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 0)
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer_dir = str(model_dir)
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.device = device

    def embed(self, texts: Sequence[str], *, is_query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefix = self.query_prefix if is_query else self.document_prefix
        batch = [prefix + t for t in texts] if prefix else list(texts)
        vecs = self.model.encode(
            batch,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)
