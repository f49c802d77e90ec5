"""Second-stage rescoring of retrieval candidates.

No cross-encoder with shipped weights installs from PyPI, so none is built in:

- ``CrossEncoderReranker`` runs any sentence-transformers ``CrossEncoder`` from a
  local directory the user provides (e.g. a downloaded ms-marco-MiniLM-L-6-v2).
- ``BiEncoderRescorer`` is what runs without one, and says so in its name: the
  embedder re-reads each candidate in short windows (126 tokens) and scores it by
  its best window's cosine with the question. It is a finer-grained bi-encoder
  score, not a cross-encoder; on LaRA it moves recall@1 a little and recall@5
  not at all (docs/retrieval.md), so it is off by default.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pipeline.errors import BadSetting, FileMissing

RerankKind = Literal["none", "cross-encoder", "bi-encoder"]


class Reranker(Protocol):
    name: str

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One relevance score per text; higher is better."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder read from a local directory."""

    def __init__(
        self, model_dir: str | Path, *, device: str = "cpu", batch_size: int = 32, max_length: int = 512
    ) -> None:
        path = Path(model_dir)
        if not path.is_dir():
            raise FileMissing(
                f"cross-encoder '{model_dir}' is not a directory",
                "set retrieval.reranker_path to a local sentence-transformers CrossEncoder directory "
                "(none ships with longqa)",
            )
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(str(path), device=device, max_length=max_length, local_files_only=True)
        self.name = f"cross-encoder:{path.name}"
        self.batch_size = batch_size

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        out = self.model.predict(
            [(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)[:, -1]


class BiEncoderRescorer:
    """Max cosine between the question and short windows of each candidate (a bi-encoder, not
    a cross-encoder). Window vectors are kept in a small cache, so a document's chunks are
    embedded once across questions."""

    def __init__(self, embedder: Any, *, window_tokens: int = 126, cache_size: int = 20_000) -> None:
        if not hasattr(embedder, "embed_multi"):
            raise TypeError(
                f"bi-encoder rescoring needs an embedder with embed_multi (windows); "
                f"{type(embedder).__name__} has none"
            )
        self.embedder = embedder
        self.window_tokens = window_tokens
        self.name = f"bi-encoder rescoring ({embedder.name}, max over {window_tokens}-token windows)"
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def remember(self, text: str, window_vectors: np.ndarray) -> None:
        """Keep precomputed window vectors of ``text`` (e.g. embedded at ingest or on a GPU)."""
        self._cache[self._key(text)] = np.asarray(window_vectors, dtype=np.float32)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _windows(self, texts: Sequence[str]) -> list[np.ndarray]:
        keys = [self._key(t) for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            mv = self.embedder.embed_multi([texts[i] for i in todo], window=self.window_tokens)
            for j, i in enumerate(todo):
                self._cache[keys[i]] = mv.vectors[mv.owners == j]
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        for k in keys:
            self._cache.move_to_end(k)
        return [self._cache[k] for k in keys]

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        q = self.embedder.embed([query], is_query=True)[0]
        return np.array([float((w @ q).max()) if len(w) else -1.0 for w in self._windows(texts)])


def make_reranker(
    kind: RerankKind, *, embedder: Any = None, path: str = "", device: str = "cpu"
) -> Reranker | None:
    """The reranker for a setting: None for 'none'."""
    if kind == "none":
        return None
    if kind == "cross-encoder":
        if not path:
            raise BadSetting(
                "retrieval.reranker_path",
                "reranker 'cross-encoder' needs retrieval.reranker_path: a local sentence-transformers "
                "CrossEncoder directory (none ships with longqa)",
                "set it, or set retrieval.reranker to 'bi-encoder' or 'none'",
            )
        return CrossEncoderReranker(path, device=device)
    if kind == "bi-encoder":
        return BiEncoderRescorer(embedder)
    raise ValueError(f"unknown reranker '{kind}'; use 'none', 'cross-encoder' or 'bi-encoder'")
