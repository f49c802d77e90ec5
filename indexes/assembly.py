"""Putting retrieved chunks into the prompt in a chosen order.

- ``"rank"``: best first, as retrieved.
- ``"document"``: order-preserving (OP-RAG, Yu et al. 2024): chunks in the order
  they appear in their document; documents in the order of their best chunk.
- ``"ends"``: the strongest chunks at both ends of the context, the weakest in
  the middle (the reordering of "Long-Context LLMs Meet RAG", Jin et al. 2024):
  ranks 1, 3, 5, ... from the start and ..., 6, 4, 2 towards the end, because
  models read the edges of a long context best.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

from pipeline.types import Chunk

ContextOrder = Literal["rank", "document", "ends"]


class _HasChunk(Protocol):
    @property
    def chunk(self) -> Chunk: ...


T = TypeVar("T", bound=_HasChunk)


def assemble(items: Sequence[T], order: ContextOrder = "document") -> list[T]:
    """``items`` (best first) rearranged for the prompt."""
    ranked = list(items)
    if order == "rank":
        return ranked
    if order == "document":
        doc_rank: dict[str, int] = {}
        for i, it in enumerate(ranked):
            doc_rank.setdefault(it.chunk.doc_id, i)
        return sorted(ranked, key=lambda it: (doc_rank[it.chunk.doc_id], it.chunk.span.start))
    if order == "ends":
        return ranked[0::2] + ranked[1::2][::-1]
    raise ValueError(f"unknown context order '{order}'; use 'rank', 'document' or 'ends'")
