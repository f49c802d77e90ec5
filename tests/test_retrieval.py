"""Hybrid retrieval on a real PDF finds the page that holds the answer."""

from __future__ import annotations

import pytest

from indexes.hybrid import rrf_fuse
from tests.conftest import shared

QUESTIONS = [
    ("How many data breaches have occurred since 2005 according to the Identity Theft Resource Center?", 5),
    ("Which CL command changes function usage to allow a user to administer RCAC rules?", 8),
    ("What does the VERIFY_GROUP_FOR_USER function check?", 12),
]


@pytest.mark.parametrize("method", ["dense", "bm25", "hybrid"])
def test_answer_page_in_top_hits(service, method: str) -> None:  # type: ignore[no-untyped-def]
    service.ingest([shared("pdf/docling_redp5110_sampled.pdf")])
    service.retriever.config = type(service.retriever.config)(method=method, top_k=5)
    for question, page in QUESTIONS:
        hits = service.retriever.retrieve(question)
        assert len(hits) == 5
        assert [h.hit.rank for h in hits] == [1, 2, 3, 4, 5]
        pages = [h.chunk.pages for h in hits]
        assert any(p and p[0] <= page <= p[1] for p in pages), (question, pages)


def test_rrf_fusion_orders_by_reciprocal_rank() -> None:
    fused = rrf_fuse([[1, 2, 3], [3, 1, 4]], [1.0, 1.0], k=60)
    assert [i for i, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
