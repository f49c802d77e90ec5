"""The default 1.5B model end to end (slow: about a minute on 2 cores)."""

from __future__ import annotations

import pytest

from tests.conftest import shared


@pytest.mark.slow
def test_default_model_answers_with_a_verified_page(tmp_path, embedder, model_cache) -> None:  # type: ignore[no-untyped-def]
    from app.service import QAService
    from app.settings import Settings

    svc = QAService(Settings(data_dir=tmp_path, model_cache=model_cache), embedder=embedder)
    svc.ingest([shared("pdf/docling_redp5110_sampled.pdf")])
    ans = svc.ask(
        "How many data breaches have occurred since 2005 according to the Identity Theft Resource Center?"
    )
    assert ans.mode == "rag" and "budget" in ans.route.reason
    assert "5000" in ans.text.replace(",", "")
    assert any(c.verified and c.pages == (5, 5) for c in ans.citations), ans.citations
