"""longqa as a LlamaIndex retriever and query engine (app/integrations/llamaindex.py), on the
bundled samples with the real embedded embedder and the real small LLM."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_index.core", reason="the llama-index extra is not installed")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.base.response.schema import Response  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode  # noqa: E402

from app.integrations.llamaindex import LongqaQueryEngine, LongqaRetriever  # noqa: E402
from app.service import QAService  # noqa: E402
from pipeline.errors import NothingIngested  # noqa: E402
from pipeline.types import Answer  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "app" / "samples"
PDF = SAMPLES / "word-processor-history.pdf"
TEXT = SAMPLES / "gold-bug-opening.txt"
WORD = "Microsoft launched Word for MS-DOS in 1983"


def test_retriever_returns_the_passage_with_where_it_is(settings, embedder) -> None:  # type: ignore[no-untyped-def]
    svc = QAService(settings, embedder=embedder)
    try:
        with pytest.raises(NothingIngested):
            LongqaRetriever(svc).retrieve("anything?")
        report = svc.ingest([PDF, TEXT])
        assert len(report.ingested) == 2, report.failed
        retriever = LongqaRetriever(svc, top_k=3)
        assert isinstance(retriever, BaseRetriever)
        nodes = retriever.retrieve("When did Microsoft launch Word for MS-DOS?")
        assert 1 <= len(nodes) <= 3 and all(isinstance(n, NodeWithScore) for n in nodes)
        assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
        top = nodes[0].node
        assert isinstance(top, TextNode)
        assert WORD in " ".join(top.get_content().split())  # the answer's passage comes first
        meta = top.metadata
        assert meta["file_path"] == str(PDF.resolve()) and meta["file_name"] == PDF.name
        assert meta["page_start"] == 1 and meta["page_label"].startswith("1")  # the sentence is on p. 1
        doc = svc.store.get_document(meta["doc_id"])
        span = (meta["char_start"], meta["char_end"])
        assert (top.start_char_idx, top.end_char_idx) == span
        assert doc.text[span[0] : span[1]] == top.get_content()  # the span is where the text is
        assert top.ref_doc_id == meta["doc_id"]
        # The bookkeeping stays out of what a LlamaIndex LLM would read; where it is does not.
        llm_view = top.get_content(metadata_mode=MetadataMode.LLM)
        assert "page_label: 1" in llm_view and "char_start" not in llm_view

        # A text file: no pages, the span still places the passage; scoped to that document.
        gold = next(d for d in svc.documents() if d.source_path == str(TEXT.resolve()))
        scoped = LongqaRetriever(svc, top_k=2, doc_ids=[gold.doc_id])
        for n in scoped.retrieve("What did Legrand find on the beach?"):
            m = n.node.metadata
            assert m["doc_id"] == gold.doc_id and "page_start" not in m
            text = svc.store.get_document(gold.doc_id).text
            assert text[m["char_start"] : m["char_end"]] == n.node.get_content()

        # The same library opened from its data directory, as a user would.
        same = LongqaRetriever.from_data_dir(settings.data_dir, top_k=3)
        same.service._embedder = embedder  # the session's embedder, not a second copy in memory
        try:
            again = same.retrieve("When did Microsoft launch Word for MS-DOS?")
            assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]
        finally:
            same.service.close()
    finally:
        svc.close()


def test_query_engine_returns_longqa_answer_as_a_response(service) -> None:  # type: ignore[no-untyped-def]
    """The engine answers through QAService.ask (the small test model: its answer may be poor,
    what the Response carries must be exactly that answer's)."""
    service.ingest([PDF])
    answers: list[Answer] = []
    ask = service.ask
    service.ask = lambda *a, **k: answers.append(ask(*a, **k)) or answers[-1]  # type: ignore[method-assign]
    engine = LongqaQueryEngine(service=service, mode="rag")
    response = engine.query("When did Microsoft launch Word for MS-DOS?")
    assert isinstance(response, Response) and len(answers) == 1
    ans = answers[0]
    assert response.response == ans.text
    meta = response.metadata
    assert meta is not None
    assert (meta["mode"], meta["reason"], meta["forced"]) == ("rag", "RAG mode was requested", True)
    assert meta["model"] == "smollm2-135m" and meta["retrieval"] == ans.retrieval
    # every citation's verdict, verified or not; source_nodes: the verified ones, in order
    assert [(v["number"], v["verified"], v["support"]) for v in meta["verdicts"]] == [
        (c.number, c.verified, c.support) for c in ans.citations
    ]
    verified = [c for c in ans.citations if c.verified]
    assert [n.node.metadata["citation"] for n in response.source_nodes] == [c.number for c in verified]
    text = service.store.get_document(service.documents()[0].doc_id).text
    for n, c in zip(response.source_nodes, verified):
        m = n.node.metadata
        assert m["verified"] is True and m["file_path"] == c.source_path == str(PDF.resolve())
        assert n.node.get_content() == c.quote == text[m["char_start"] : m["char_end"]]
        assert (m.get("page_start"), m.get("page_end")) == (c.pages or (None, None))
        assert n.score == c.support


@pytest.mark.slow
def test_query_engine_answers_with_a_verified_page(tmp_path, embedder, model_cache) -> None:  # type: ignore[no-untyped-def]
    """The default 1.5B model, routed as 'longqa ask' routes: the answer and its verified source."""
    from app.settings import Settings

    svc = QAService(Settings(data_dir=tmp_path, model_cache=model_cache), embedder=embedder)
    try:
        svc.ingest([PDF])
        response = LongqaQueryEngine(service=svc).query(
            "When did Microsoft launch Word for MS-DOS, and what did it introduce?"
        )
    finally:
        svc.close()
    assert response.response and "1983" in response.response
    meta = response.metadata
    assert meta is not None and meta["mode"] in ("rag", "lc") and meta["reason"] and not meta["forced"]
    assert any(
        "1983" in n.node.get_content() and n.node.metadata["page_start"] == 1 for n in response.source_nodes
    ), meta["verdicts"]
