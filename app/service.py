"""The QA service: one object that front doors (CLI, Streamlit, eval, batch) talk to.

Heavy parts (embedder, generator) load lazily, once per service.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from app.answering.modes import ModeResult, answer_lc, answer_rag
from app.answering.prompts import lc_messages
from app.catalog import catalog_entail_claims, catalog_entail_threshold, catalog_params_b
from app.factories import build_asr, build_embedder, build_generator, engine_label
from app.ingest import Ingestor, IngestReport, Progress, ingestor_from_settings, reconcile
from app.llm import control
from app.llm.base import Generator
from app.routing.profiles import CALIBRATED_FILE, ModelProfile
from app.routing.router import (
    RetrievalEvidence,
    RouteInputs,
    cache_could_flip,
    digit_share,
    load_policy,
    model_profile,
    retrieval_evidence,
    route,
    should_fall_back,
)
from app.settings import Settings, setting_device
from indexes.bm25 import BM25Config
from indexes.cache import VectorCache, upgrade_legacy_store
from indexes.embedding import Embedder
from indexes.hybrid import HybridRetriever, RetrievalConfig, Retrieved
from indexes.pgvector import PgVectorIndex
from indexes.rerank import make_reranker
from indexes.vector import VectorIndex
from pipeline.errors import DocumentNotFound, EmptyQuestion, NothingIngested, PromptTooLong, QuestionTooLong
from pipeline.loaders import ASRConfig
from pipeline.store import Debris, DocInfo, MetadataStore
from pipeline.types import Answer, Document, Mode, RouteDecision, Usage

log = logging.getLogger(__name__)

LC_OVERHEAD_TOKENS = 200


# A question is a question: longer text belongs in a document (a 100,000-character question
# overflowed every prompt with advice that did not apply).
MAX_QUESTION_CHARS = 4_000


class QAService:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        search = settings.retrieval.vector_search
        self.store = MetadataStore(
            settings.resolved_database_url,
            pgvector={"auto": "auto", "pgvector": "on", "faiss": "off"}[search],  # type: ignore[arg-type]
        )
        # pgvector: the database searches; no FAISS cache in this process.
        self.uses_pgvector = search == "pgvector" or (search == "auto" and self.store.has_pgvector)
        # Crash debris of dead writers goes at once; a live writer's pending documents stay.
        self.debris: list[Debris] = reconcile(self.store)
        self._embedder = embedder
        self._generator = generator
        self._cache: VectorCache | None = None
        self._pgvector: PgVectorIndex | None = None
        self._retriever: HybridRetriever | None = None
        self._doc_tokens: dict[tuple[str, str], int] = {}

    # -- lazily built parts ---------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = build_embedder(self.settings)
        return self._embedder

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = build_generator(self.settings)
        return self._generator

    @property
    def cache(self) -> VectorCache:
        """The FAISS index as a cache of the store's vectors, loaded or rebuilt on first use."""
        if self._cache is None:
            path = self.settings.index_path
            upgraded = upgrade_legacy_store(self.store, path)
            if upgraded:
                log.warning(upgraded)
            cache = VectorCache(
                self.store,
                path,
                self.embedder.dim,
                self.settings.retrieval.index_factory,
                nprobe=self.settings.retrieval.nprobe,
            )
            notice = cache.open()
            if notice and not upgraded:
                log.warning(notice)
            self._cache = cache
        return self._cache

    @property
    def index(self) -> VectorIndex | PgVectorIndex:
        """The vector index, up to date with the store: pgvector's, or the FAISS cache."""
        if self.uses_pgvector:
            if self._pgvector is None:
                r = self.settings.retrieval
                self._pgvector = PgVectorIndex(
                    self.store,
                    self.embedder.dim,
                    index=r.pgvector_index,
                    exact_below=r.pgvector_exact_below,
                    ef_search=r.pgvector_ef_search,
                )
            self._pgvector.refresh()
            return self._pgvector
        self.cache.refresh()
        return self.cache.index

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            r = self.settings.retrieval
            self._retriever = HybridRetriever(
                self.store,
                self.index,
                self.embedder,
                RetrievalConfig(
                    method=r.method,
                    top_k=r.top_k,
                    candidates=r.candidates,
                    fusion=r.fusion,
                    dense_weight=r.dense_weight,
                    bm25_weight=r.bm25_weight,
                    bm25=BM25Config(bigrams=r.bm25_bigrams, backend=r.bm25_backend),
                    rerank_candidates=r.rerank_candidates,
                    rerank_weight=r.rerank_weight,
                ),
                reranker=make_reranker(
                    r.reranker,
                    embedder=self.embedder,
                    path=r.reranker_path,
                    device=setting_device("embedding.device", self.settings.embedding.device),
                ),
                search_backend=r.search_backend,
                cache=None if self.uses_pgvector else self.cache,
            )
        return self._retriever

    # -- library ----------------------------------------------------------------------
    def asr_config(self) -> ASRConfig:
        """The speech-to-text model, assembled from its PyPI parts on first use."""
        return build_asr(self.settings)

    def ingestor(self) -> Ingestor:
        """An Ingestor writing to this service's store, as the settings describe."""
        return ingestor_from_settings(self.store, self.embedder, self.settings, self.asr_config)

    def ingest(
        self,
        paths: Iterable[str | Path],
        progress: Callable[[Progress], None] | None = None,
        *,
        prune: bool = False,
    ) -> IngestReport:
        # No index to update: readers bring their caches up to the store's generation. A new
        # library gets its (empty) cache file now, so the first search after this ingest finds it
        # and catches up quietly instead of reporting it "missing".
        # (The file check first: the count scans the chunks, and is needed only for a new library.)
        if not self.uses_pgvector and not self.settings.index_path.exists() and self.store.counts()[1] == 0:
            _ = self.cache
        return self.ingestor().ingest(paths, progress, prune=prune)

    def documents(self) -> list[DocInfo]:
        return [d for d in self.store.list_documents() if d.status == "ready"]

    def delete(self, doc_ids: Sequence[str]) -> int:
        return len(self.store.delete_documents(doc_ids))

    # -- answering --------------------------------------------------------------------
    def _scope_ids(self, doc_ids: Sequence[str] | None) -> list[str]:
        """The ready documents a question is asked of: ``doc_ids`` or all of them."""
        ready = [d.doc_id for d in self.documents()]
        ids = list(doc_ids) if doc_ids else ready
        if not ids:
            raise NothingIngested()
        unknown = sorted(set(ids) - set(ready))
        if unknown:
            raise DocumentNotFound(unknown[0])
        return ids

    def _scope(self, doc_ids: Sequence[str] | None) -> list[Document]:
        return [self.store.get_document(i) for i in self._scope_ids(doc_ids)]

    def retrieve(
        self, question: str, *, k: int | None = None, doc_ids: Sequence[str] | None = None
    ) -> list[Retrieved]:
        """The passages RAG answers ``question`` from, best first (``k``: ``retrieval.top_k``),
        from the ready documents or ``doc_ids``; no model is loaded but the embedder. Raises
        like ``ask`` on an empty library or an unknown document."""
        question = self._question(question)
        ids = self._scope_ids(doc_ids)
        return self.retriever.retrieve(question, k=k or self.settings.retrieval.top_k, doc_ids=ids)

    @staticmethod
    def _question(question: str) -> str:
        question = question.strip()
        if not question:
            raise EmptyQuestion()
        if len(question) > MAX_QUESTION_CHARS:
            raise QuestionTooLong(len(question), MAX_QUESTION_CHARS)
        return question

    def doc_tokens(self, docs: Sequence[Document]) -> int:
        total = 0
        for d in docs:
            key = (self.generator.name, d.doc_id)
            if key not in self._doc_tokens:
                self._doc_tokens[key] = self.generator.count_tokens(d.text)
            total += self._doc_tokens[key]
        return total

    def retrieve_for_router(
        self, question: str, docs: Sequence[Document], k: int | None = None
    ) -> tuple[list[Retrieved], RetrievalEvidence | None]:
        """Passages for the question (``k``: ``retrieval.top_k``) and the evidence the router weighs
        from them; ``ask`` answers RAG questions from these same passages."""
        hits = self.retriever.retrieve(
            question, k=k or self.settings.retrieval.top_k, doc_ids=[d.doc_id for d in docs]
        )
        return hits, self.evidence(hits, docs)

    def evidence(self, hits: Sequence[Retrieved], docs: Sequence[Document]) -> RetrievalEvidence | None:
        """The router's retrieval evidence from retrieved passages: their dense scores and where
        they start, as a share of the documents' text (several documents: laid end to end)."""
        offset, start = 0, {}
        for d in docs:
            start[d.doc_id] = offset
            offset += len(d.text)
        if not offset:
            return None
        return retrieval_evidence(
            [(start.get(h.chunk.doc_id, 0) + h.chunk.span.start) / offset for h in hits],
            [h.dense_score for h in hits],
        )

    def entail_claims(self, mode: str = "rag") -> int:
        """Claims per answer the model checks: ``llm.entail_claims`` when set; unset, the catalog's
        value in RAG and none in LC, where the check's form (a follow-up on the cached document
        prompt) confirmed every claim it was asked about on the fresh labelled set, false ones
        included (docs/citations.md, "A fresh set")."""
        mine = self.settings.llm.entail_claims
        if mine is not None:
            return mine
        return catalog_entail_claims(self.generator.name) if mode == "rag" else 0

    def entail_threshold(self) -> float:
        """``llm.entail_threshold`` when set, else the catalog's value for the generator."""
        mine = self.settings.llm.entail_threshold
        return mine if mine is not None else catalog_entail_threshold(self.generator.name)

    def router_profile(self) -> ModelProfile:
        """The generator's profile the router uses: ``<data_dir>/router_profile.json`` when
        ``longqa calibrate`` wrote one for this model, else the published measurements or the
        class prior (``profile.source`` and ``profile.measured_at`` say which)."""
        name = self.generator.name
        return model_profile(
            name, catalog_params_b(name), calibrated=Path(self.settings.data_dir) / CALIBRATED_FILE
        )

    def decide(
        self,
        question: str,
        docs: Sequence[Document],
        mode: Mode,
        retrieval: RetrievalEvidence | None = None,
    ) -> RouteDecision:
        """Route a question; ``retrieval`` is evidence from passages already retrieved for it (the
        shipped policy weighs it when it was trained with it: ``RouterPolicy.uses_retrieval``)."""
        gen = self.generator
        n = self.doc_tokens(docs)
        inputs = RouteInputs(
            doc_tokens=n,
            window=gen.context_window,
            reserved_tokens=self.settings.llm.max_tokens + LC_OVERHEAD_TOKENS,
            prefill_tokens_per_s=gen.prefill_tokens_per_s,
            cached_tokens=0,
            latency_budget_s=self.settings.router.latency_budget_s,
            window_fraction=self.settings.router.window_fraction,
            question=question if mode == "auto" else "",
            model=self.router_profile(),
            doc_digit_share=digit_share([d.text for d in docs]),
            memory_tokens=getattr(gen, "lc_memory_tokens", lambda: None)(),
            retrieval=retrieval,
        )
        auto = route(inputs)
        probe = getattr(gen, "cached_prefix_tokens", None)
        if mode == "auto" and probe is not None and cache_could_flip(auto):
            # A cached document prefix makes LC cheap; probing tokenises the whole prompt, so
            # only when the answer could change the decision.
            lc_prompt = lc_messages(question, [(d.title, d.text) for d in docs])
            auto = route(replace(inputs, cached_tokens=min(n, int(probe(lc_prompt)))))
        if mode == "auto":
            return auto
        facts = auto.facts
        assert facts is not None  # route() always states its facts
        too_long = facts.doc_tokens > facts.capacity
        if mode == "lc" and too_long and self.settings.llm.lc_overflow == "refuse":
            where = (
                "the GPU's free memory holds"
                if facts.memory_bound
                else f"fit the {gen.context_window:,}-token window"
            )
            overflow = "set llm.lc_overflow to middle_cut, map_reduce or auto"
            raise PromptTooLong(
                f"LC mode was requested but the documents have {n:,} tokens, more than {where}",
                f"use --mode rag or auto, or {overflow}",
                app_fix=f"Use RAG or Auto mode, or {overflow}.",
            )
        return RouteDecision(mode, f"{mode.upper()} mode was requested", facts, forced=True)

    def ask(
        self,
        question: str,
        *,
        mode: Mode = "auto",
        doc_ids: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        on_route: Callable[[RouteDecision], None] | None = None,
    ) -> Answer:
        """Answer with citations. ``on_text`` receives the answer's text as it is decoded (a
        preview: the returned answer is the one with checked citations); ``on_restart`` is told
        why, when the Self-Route fallback discards a streamed RAG answer and answers again;
        ``on_route`` gets the routing decision before the answer starts (and the new one after a
        fallback). Under an :class:`app.llm.control.Control` it stops with ``Cancelled``."""
        question = self._question(question)
        t0 = time.perf_counter()
        docs = self._scope(doc_ids)
        hits: list[Retrieved] | None = None
        evidence = None
        if mode == "auto" and load_policy().uses_retrieval:
            # The policy weighs what retrieval finds; the same passages answer in RAG mode.
            hits, evidence = self.retrieve_for_router(question, docs)
        decision = self.decide(question, docs, mode, evidence)
        if on_route is not None:
            on_route(decision)
        control.check()
        result: ModeResult
        retrieval = ""
        if decision.mode == "rag":
            result, retrieval = self._answer_rag(
                question, docs, self.settings.retrieval.top_k, on_text, on_restart, hits=hits
            )
        else:
            result = self._answer_lc(question, docs, on_text, on_restart)
        spent = (0, 0)
        if decision.mode == "rag" and not decision.forced:  # Self-Route fallback (docs/router.md)
            fb = should_fall_back(question, result.text, decision, model=self.generator.name)
            if fb.rerun:
                spent = (result.generation.prompt_tokens, result.generation.completion_tokens)
                if on_restart is not None:
                    on_restart(fb.reason)
                decision = RouteDecision(
                    "lc" if fb.target == "lc" else "rag",
                    f"{decision.reason}; then {fb.reason}",
                    replace(decision.facts, fallback_score=round(fb.score, 4)) if decision.facts else None,
                )
                if on_route is not None:
                    on_route(decision)
                if fb.target == "lc":
                    result = self._answer_lc(question, docs, on_text, on_restart)
                else:
                    k = 3 * self.settings.retrieval.top_k
                    result, retrieval = self._answer_rag(question, docs, k, on_text, on_restart)
        if result.note:  # LC on documents longer than the window: say what was read
            decision = replace(decision, reason=f"{decision.reason}; {result.note}")
        g = result.generation
        return Answer(
            question=question,
            text=result.text,
            mode=decision.mode,
            route=decision,
            citations=tuple(result.citations),
            usage=Usage(
                g.prompt_tokens + spent[0],
                g.completion_tokens + spent[1],
                round(time.perf_counter() - t0, 3),
                g.cached_tokens,
                engine_label(self.generator),
                round(float(getattr(self.generator, "prefill_tokens_per_s", 0.0)), 1),
                round(float(getattr(self.generator, "decode_tokens_per_s", 0.0)), 1),
            ),
            model=self.generator.name,
            retrieval=retrieval,
            first_draft=result.first_draft,
            cut_off=result.cut_off,
        )

    def _answer_rag(
        self,
        question: str,
        docs: Sequence[Document],
        k: int,
        on_text: Callable[[str], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        hits: Sequence[Retrieved] | None = None,
    ) -> tuple[ModeResult, str]:
        """``hits``: passages already retrieved for this question (by ``ask`` for the router)."""
        cfg = self.settings.llm
        retrieved = (
            list(hits)
            if hits is not None
            else self.retriever.retrieve(question, k=k, doc_ids=[d.doc_id for d in docs])
        )
        retrieval = f"{self.settings.retrieval.method} top-{len(retrieved)}"
        if self.retriever.reranker is not None:  # say what rescored the passages
            retrieval += f", rescored by {self.retriever.reranker.name}"
        return answer_rag(
            question,
            retrieved,
            {d.doc_id: d for d in docs},
            self.generator,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            on_text=on_text,
            recheck=cfg.recheck,
            on_restart=on_restart,
            entail_claims=self.entail_claims(),
            entail_threshold=self.entail_threshold(),
        ), retrieval

    def _answer_lc(
        self,
        question: str,
        docs: Sequence[Document],
        on_text: Callable[[str], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> ModeResult:
        cfg = self.settings.llm
        chunks = [c for d in docs for c in self.store.chunks_of(d.doc_id)]
        return answer_lc(
            question,
            docs,
            chunks,
            self.generator,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            overflow=cfg.lc_overflow,
            notes_tokens=cfg.notes_tokens,
            on_text=on_text,
            recheck=cfg.recheck,
            on_restart=on_restart,
            entail_claims=self.entail_claims("lc"),
        )

    def with_settings(self, settings: Settings, generator: Generator | None = None) -> QAService:
        """This service answering with other per-query settings (LLM, top-k, budget, chunking of
        files ingested through it) while sharing its store, index, retriever and embedder: one
        consistent library for many app sessions, each with its own settings."""
        mine, theirs = self.settings, settings
        if (theirs.resolved_database_url, theirs.index_path, theirs.embedding) != (
            mine.resolved_database_url,
            mine.index_path,
            mine.embedding,
        ):
            raise ValueError("with_settings cannot change the store, the index or the embedding model")
        _ = self.retriever  # build the shared parts first, so the copy shares them
        view = copy.copy(self)
        view.settings = settings
        view._generator = generator if generator is not None else self._generator
        return view

    def close(self) -> None:
        if self._cache is not None:
            self._cache.save()
        self.store.close()
