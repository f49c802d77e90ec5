"""BM25 keyword index over chunk texts (bm25s), rebuilt in memory from the store."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.textspan import terms


def _stemmer():  # type: ignore[no-untyped-def]
    try:
        import Stemmer  # PyStemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # pragma: no cover - PyStemmer is a dependency
        return None


class BM25Index:
    """Okapi BM25 over a fixed list of texts; ``ids[i]`` is the id of ``texts[i]``."""

    def __init__(self, ids: Sequence[int], texts: Sequence[str], k1: float = 1.2, b: float = 0.75):
        import logging

        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets DEBUG on import

        self.ids = np.asarray(ids, dtype=np.int64)
        self._pos = {int(v): i for i, v in enumerate(self.ids)}
        self._stem = _stemmer()
        self._model = bm25s.BM25(k1=k1, b=b)
        if len(texts):
            corpus = [self._terms(t) for t in texts]
            # bm25s needs at least one token per document.
            corpus = [c if c else ["\u2205"] for c in corpus]
            self._model.index(corpus, show_progress=False)

    def _terms(self, text: str) -> list[str]:
        toks = terms(text)
        if self._stem is not None:
            toks = self._stem.stemWords(toks)
        return toks

    def __len__(self) -> int:
        return int(self.ids.size)

    def search(self, query: str, k: int, allowed: Sequence[int] | None = None) -> list[tuple[int, float]]:
        if len(self) == 0 or k <= 0:
            return []
        terms = self._terms(query)
        if not terms:
            return []
        scores = np.asarray(self._model.get_scores(terms), dtype=np.float32)
        if allowed is not None:
            mask = np.zeros(len(self), dtype=bool)
            idx = [self._pos[a] for a in allowed if a in self._pos]
            mask[idx] = True
            scores = np.where(mask, scores, -np.inf)
        k = min(k, len(self))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i]) and scores[i] > 0]
