"""Token windows over a text, so long texts are embedded whole instead of silently cut.

A sentence-transformers encoder reads at most ``max_seq_length`` tokens and drops
the rest without a word. ``token_windows`` cuts a text into windows of at most
``window`` tokens (by the encoder's own tokenizer offsets), at most ``stride``
tokens apart and spread evenly, each a character range of the text; the last
window ends at the end of the text, so every token is read at least once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MultiVectors:
    """Several vectors per text: ``vectors[i]`` belongs to text ``owners[i]``."""

    vectors: np.ndarray
    owners: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.shape[0] != self.owners.shape[0]:
            raise ValueError(f"{self.vectors.shape[0]} vectors but {self.owners.shape[0]} owners")

    def pooled(self, n_texts: int, how: str = "mean") -> np.ndarray:
        """One unit vector per text: the mean (renormalised) or the first window's vector."""
        dim = self.vectors.shape[1]
        out = np.zeros((n_texts, dim), dtype=np.float32)
        if how == "mean":
            np.add.at(out, self.owners, self.vectors)
        elif how == "first":
            first = np.unique(self.owners, return_index=True)[1]
            out[self.owners[first]] = self.vectors[first]
        else:
            raise ValueError(f"unknown pooling '{how}'; use 'mean' or 'first'")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


def window_starts(n_tokens: int, window: int, stride: int) -> list[int]:
    """Token offsets of the fewest windows of ``window`` tokens whose starts are at most
    ``stride`` apart, spread evenly from the start to the end of the text."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    if n_tokens <= window:
        return [0]
    m = -(-(n_tokens - window) // stride) + 1
    span = n_tokens - window
    return sorted({round(i * span / (m - 1)) for i in range(m)})


def token_windows(
    offsets: Sequence[tuple[int, int]], text_len: int, window: int, stride: int
) -> list[tuple[int, int]]:
    """Character ranges of token windows, from the tokenizer's (start, end) offsets of each token.

    A text with no tokens gives one window over the whole text.
    """
    toks = [(a, b) for a, b in offsets if b > a]
    if not toks:
        return [(0, text_len)]
    spans = []
    for s in window_starts(len(toks), window, stride):
        e = min(len(toks), s + window)
        spans.append((toks[s][0], toks[e - 1][1]))
    return spans
