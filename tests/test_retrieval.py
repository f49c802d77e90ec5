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


def test_hybrid_scores_every_hit_and_rescoring_says_what_it_is(service) -> None:  # type: ignore[no-untyped-def]
    from indexes.rerank import make_reranker

    service.ingest([shared("pdf/docling_redp5110_sampled.pdf")])
    r = service.retriever
    assert r.config.fusion == "weighted" and r.config.bm25.backend == "scoped"
    hits = r.retrieve(QUESTIONS[0][0], k=8)
    assert [h.hit.via for h in hits] == ["fused"] * 8
    # Fusion never guesses: every hit carries an exact dense and BM25 score.
    assert all(h.dense_score is not None and h.bm25_score is not None for h in hits)
    assert hits[0].hit.score >= hits[-1].hit.score
    # Scoped to a document that does not exist: nothing, not everything.
    assert r.retrieve(QUESTIONS[0][0], doc_ids=["no-such-doc"]) == []
    # The built-in rescoring is a bi-encoder and its name says so.
    r.reranker = make_reranker("bi-encoder", embedder=service.embedder)
    assert r.reranker is not None
    assert r.reranker.name.startswith("bi-encoder rescoring (") and "126-token windows" in r.reranker.name
    for question, page in QUESTIONS:
        hits = r.retrieve(question, k=5)
        assert [h.hit.via for h in hits] == ["rerank"] * 5
        assert any(h.chunk.pages and h.chunk.pages[0] <= page <= h.chunk.pages[1] for h in hits)
    with pytest.raises(ValueError, match="needs retrieval.reranker_path"):
        make_reranker("cross-encoder")
    with pytest.raises(FileNotFoundError, match="none ships with longqa"):
        make_reranker("cross-encoder", path="/nonexistent/cross-encoder")


def test_settings_reach_the_retriever(settings, embedder, smol) -> None:  # type: ignore[no-untyped-def]
    from app.service import QAService

    settings.retrieval.reranker = "bi-encoder"
    settings.retrieval.fusion = "rrf"
    settings.retrieval.bm25_backend = "bm25s"
    settings.retrieval.index_factory = "auto"
    settings.chunking.boundary = "paragraph"
    svc = QAService(settings, embedder=embedder, generator=smol)
    try:
        r = svc.retriever
        assert r.config.fusion == "rrf" and r.config.bm25.backend == "bm25s"
        assert r.reranker is not None and r.reranker.name.startswith("bi-encoder rescoring")
        assert svc.index.kind == "flat" and svc.index.auto
        assert r.search_backend == "auto"
    finally:
        svc.close()
