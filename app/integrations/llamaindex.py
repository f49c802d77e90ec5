"""longqa as a LlamaIndex retriever and query engine (``pip install 'longqa[llama-index]'``).

``LongqaRetriever`` retrieves passages from a longqa library (its data directory) with the
same hybrid retriever the CLI and the app use, as ``NodeWithScore``/``TextNode``s whose
metadata says where each passage is: file, pages or time range, character span.

``LongqaQueryEngine`` answers with longqa's own routed answer (``QAService.ask``: RAG or long
context per question, Self-Route fallback, verified citations) and returns a LlamaIndex
``Response``: ``source_nodes`` are the verified citations, ``metadata`` the route (mode and
reason) and every citation's verdict.

    from app.integrations.llamaindex import LongqaQueryEngine, LongqaRetriever

    nodes = LongqaRetriever.from_data_dir(".longqa").retrieve("When was Word for MS-DOS launched?")
    response = LongqaQueryEngine.from_data_dir(".longqa").query("When was Word for MS-DOS launched?")

Errors are longqa's typed errors (``pipeline.errors``): an empty library raises
``NothingIngested`` with its fix, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from app.service import QAService
from app.settings import load_settings
from indexes.hybrid import Retrieved
from pipeline.errors import MissingExtra
from pipeline.types import Answer, Citation, Span

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.base.response.schema import Response
    from llama_index.core.callbacks.base import CallbackManager
    from llama_index.core.query_engine import CustomQueryEngine
    from llama_index.core.schema import (
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise MissingExtra("the LlamaIndex integration", "llama-index-core", "llama-index") from exc

# Bookkeeping in a node's metadata that neither an embedding nor an LLM prompt should see when
# the nodes go on into a LlamaIndex pipeline; the file name and the pages do.
_HIDDEN = [
    "doc_id",
    "chunk_id",
    "file_path",
    "char_start",
    "char_end",
    "time_start",
    "time_end",
    "retrieved_via",
    "dense_score",
    "bm25_score",
    "citation",
    "verified",
    "support",
    "origin",
]


def open_service(data_dir: str | Path | None = None, **overrides: Any) -> QAService:
    """A QAService on ``data_dir`` (default: ``$LONGQA_HOME`` or ``./.longqa``, as the CLI),
    with the settings from the environment and ``longqa.toml``; ``overrides`` as for Settings."""
    if data_dir is not None:
        overrides["data_dir"] = Path(data_dir)
    return QAService(load_settings(**overrides))


def _where(
    doc_id: str,
    source_path: str,
    span: Span,
    pages: tuple[int, int] | None,
    time: tuple[float, float] | None,
) -> dict[str, Any]:
    """Where a passage is, as flat metadata (LlamaIndex's ``file_path``/``file_name``/``page_label``
    conventions, plus longqa's page range, time range and character span)."""
    meta: dict[str, Any] = {
        "doc_id": doc_id,
        "file_path": source_path,
        "file_name": Path(source_path).name,
        "char_start": span.start,
        "char_end": span.end,
    }
    if pages:
        meta["page_start"], meta["page_end"] = pages
        meta["page_label"] = str(pages[0]) if pages[0] == pages[1] else f"{pages[0]}-{pages[1]}"
    if time:
        meta["time_start"], meta["time_end"] = time
    return meta


def _node(node_id: str, text: str, span: Span, meta: dict[str, Any]) -> TextNode:
    return TextNode(
        id_=node_id,
        text=text,
        start_char_idx=span.start,
        end_char_idx=span.end,
        metadata=meta,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=meta["doc_id"])},
        excluded_embed_metadata_keys=[k for k in _HIDDEN if k in meta],
        excluded_llm_metadata_keys=[k for k in _HIDDEN if k in meta],
    )


def passage_node(r: Retrieved, source_path: str) -> NodeWithScore:
    """A retrieved passage as a node: the chunk's text, scored by the retriever."""
    c = r.chunk
    meta = _where(c.doc_id, source_path, c.span, c.pages, c.time)
    meta.update(chunk_id=c.chunk_id, retrieved_via=r.hit.via)
    if r.dense_score is not None:
        meta["dense_score"] = float(r.dense_score)
    if r.bm25_score is not None:
        meta["bm25_score"] = float(r.bm25_score)
    return NodeWithScore(node=_node(c.chunk_id, c.text, c.span, meta), score=float(r.hit.score))


def citation_node(c: Citation) -> NodeWithScore:
    """A citation as a node: the quoted document text, scored by how well it supports the claim."""
    meta = _where(c.doc_id, c.source_path, c.span, c.pages, c.time)
    meta.update(citation=c.number, verified=c.verified, support=float(c.support), origin=c.origin)
    if c.chunk_id:
        meta["chunk_id"] = c.chunk_id
    node_id = f"{c.doc_id}:{c.span.start}-{c.span.end}"
    return NodeWithScore(node=_node(node_id, c.quote, c.span, meta), score=float(c.support))


def verdict(c: Citation) -> dict[str, Any]:
    """One citation's verification verdict, for ``Response.metadata``."""
    return {
        "number": c.number,
        "verified": c.verified,
        "support": float(c.support),
        "origin": c.origin,
        "file_path": c.source_path,
        "pages": list(c.pages) if c.pages else None,
        "time": list(c.time) if c.time else None,
        "span": [c.span.start, c.span.end],
        "quote": c.quote,
        "verdict": c.verdict or ("verified" if c.verified else "unsupported"),
        "reason": c.reason,
        "model_check": c.model_check or None,
    }


def answer_response(ans: Answer) -> Response:
    """longqa's answer as a LlamaIndex Response: verified citations as source nodes, the route
    and the verdicts of all citations (unverified ones too) in the metadata."""
    return Response(
        response=ans.text,
        source_nodes=[citation_node(c) for c in ans.citations if c.verified],
        metadata={
            "mode": ans.mode,
            "reason": ans.route.reason,
            "forced": ans.route.forced,
            "model": ans.model,
            "retrieval": ans.retrieval,
            "verdicts": [verdict(c) for c in ans.citations],
            "usage": {
                "prompt_tokens": ans.usage.prompt_tokens,
                "completion_tokens": ans.usage.completion_tokens,
                "seconds": ans.usage.seconds,
            },
        },
    )


class LongqaRetriever(BaseRetriever):
    """Passages from a longqa library, retrieved as the CLI and the app retrieve them (hybrid
    dense + BM25 with the configured fusion and rescoring). ``top_k``: ``retrieval.top_k``;
    ``doc_ids``: only these documents (see ``longqa docs``)."""

    def __init__(
        self,
        service: QAService,
        *,
        top_k: int | None = None,
        doc_ids: Sequence[str] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.service = service
        self.top_k = top_k
        self.doc_ids = list(doc_ids) if doc_ids else None

    @classmethod
    def from_data_dir(
        cls,
        data_dir: str | Path | None = None,
        *,
        top_k: int | None = None,
        doc_ids: Sequence[str] | None = None,
        **overrides: Any,
    ) -> LongqaRetriever:
        return cls(open_service(data_dir, **overrides), top_k=top_k, doc_ids=doc_ids)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.service.retrieve(query_bundle.query_str, k=self.top_k, doc_ids=self.doc_ids)
        paths = {d.doc_id: d.source_path for d in self.service.documents()}
        return [passage_node(h, paths.get(h.chunk.doc_id, "")) for h in hits]


class LongqaQueryEngine(CustomQueryEngine):
    """Answers with longqa's routed answer (``mode``: auto, rag or lc, as ``longqa ask --mode``;
    ``doc_ids``: only these documents) and its verified citations."""

    service: Any  # a QAService (pydantic cannot check it)
    mode: Literal["auto", "rag", "lc"] = "auto"
    doc_ids: list[str] | None = None

    @classmethod
    def from_data_dir(
        cls,
        data_dir: str | Path | None = None,
        *,
        mode: Literal["auto", "rag", "lc"] = "auto",
        doc_ids: Sequence[str] | None = None,
        **overrides: Any,
    ) -> LongqaQueryEngine:
        return cls(
            service=open_service(data_dir, **overrides),
            mode=mode,
            doc_ids=list(doc_ids) if doc_ids else None,
        )

    def custom_query(self, query_str: str) -> Response:
        return answer_response(self.service.ask(query_str, mode=self.mode, doc_ids=self.doc_ids))
