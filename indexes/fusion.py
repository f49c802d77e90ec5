"""Fusing ranked lists from several retrievers (dense, BM25) into one ranking.

- ``weighted_fuse``: each retriever's scores are min-max scaled over the
  candidates, then combined with weights. Every candidate must carry a score
  from every retriever (the hybrid retriever scores the union of candidates
  exactly with both), so nothing depends on where a list happened to stop.
- ``rrf_fuse``: reciprocal-rank fusion, ``sum_w w / (k + rank)``; ranks only.

On LaRA (docs/retrieval.md) weighted fusion with a small dense share beats RRF
clearly: BM25 is the strong signal there and dense scores break its ties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def rrf_fuse(
    ranked_lists: Sequence[Sequence[int]], weights: Sequence[float], k: int = 60
) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: score(id) = sum_w w / (k + rank), ranks from 1."""
    scores: dict[int, float] = {}
    for ids, w in zip(ranked_lists, weights):
        for rank, i in enumerate(ids, start=1):
            scores[i] = scores.get(i, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant vector becomes all zeros."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def weighted_fuse(
    candidates: Sequence[int],
    score_maps: Sequence[Mapping[int, float]],
    weights: Sequence[float],
) -> list[tuple[int, float]]:
    """Weighted sum of min-max scaled scores over ``candidates``, best first.

    A candidate missing from a score map gets that map's lowest score among the candidates."""
    if len(score_maps) != len(weights):
        raise ValueError(f"{len(score_maps)} score lists but {len(weights)} weights")
    ids = list(dict.fromkeys(candidates))
    if not ids:
        return []
    total = np.zeros(len(ids), dtype=np.float64)
    wsum = float(sum(weights)) or 1.0
    for scores, w in zip(score_maps, weights):
        if w == 0:
            continue
        present = [scores[i] for i in ids if i in scores]
        floor = min(present) if present else 0.0
        total += (w / wsum) * minmax(np.array([scores.get(i, floor) for i in ids]))
    order = sorted(range(len(ids)), key=lambda j: (-total[j], ids[j]))
    return [(ids[j], float(total[j])) for j in order]
