"""The one Settings object, built at the entry point and passed down.

Sources, strongest first: explicit arguments, ``LONGQA_*`` environment variables
(nested with ``__``, e.g. ``LONGQA_LLM__MODEL``), a TOML file (``LONGQA_CONFIG``
or ``./longqa.toml``), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMSettings(_Section):
    backend: Literal["llamacpp", "openai"] = Field(
        "llamacpp",
        description="'llamacpp' runs a GGUF model in-process; 'openai' calls an "
        "OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs).",
    )
    model: str = Field(
        "qwen2.5-coder-1.5b",
        description="Catalog name (see 'longqa models'), a path to a .gguf file, or the "
        "model name the OpenAI-compatible server expects.",
    )
    context_window: int | None = Field(
        None, description="Tokens the model may attend to; default: the catalog's value."
    )
    max_tokens: int = Field(256, description="Most tokens generated per answer.", ge=1)
    temperature: float = Field(0.0, description="Sampling temperature; 0 is greedy.", ge=0)
    threads: int | None = Field(None, description="CPU threads for llama.cpp; default: all cores.")
    gpu_layers: int = Field(0, description="Layers offloaded to the GPU by llama.cpp (-1: all).")
    seed: int = Field(0, description="Sampling seed, for reproducible answers.")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible server.")
    api_key: str = Field("", description="API key for the OpenAI-compatible server, if any.")
    timeout_s: float = Field(120.0, description="HTTP timeout per request, in seconds.", gt=0)
    retries: int = Field(2, description="Retries with backoff on connection errors and 5xx.", ge=0)
    prefill_tokens_per_s: float | None = Field(
        None,
        description="Prompt-processing speed used to predict LC latency; default: the "
        "catalog's estimate for local models, 2000 for remote servers.",
    )


class EmbeddingSettings(_Section):
    model: str = Field(
        "all-minilm-l6-v2",
        description="Catalog name or a local sentence-transformers model directory.",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    batch_size: int = Field(32, description="Texts per encoder batch.", ge=1)


class ChunkingSettings(_Section):
    max_tokens: int = Field(
        240,
        description="Most encoder tokens per chunk; must not exceed the encoder's window.",
        ge=8,
    )
    overlap_tokens: int = Field(40, description="Tokens shared by neighbouring chunks.", ge=0)


class RetrievalSettings(_Section):
    method: Literal["dense", "bm25", "hybrid"] = Field(
        "hybrid", description="Dense (FAISS), BM25, or both fused with reciprocal-rank fusion."
    )
    top_k: int = Field(6, description="Chunks given to the model in RAG mode.", ge=1)
    candidates: int = Field(50, description="Candidates per retriever before fusion.", ge=1)
    index_factory: str = Field("Flat", description="FAISS factory string for the vector index.")


class RouterSettings(_Section):
    latency_budget_s: float = Field(
        90.0,
        description="Longest acceptable time to read the whole document (LC prefill); "
        "longer predicted reads go to RAG.",
        gt=0,
    )
    window_fraction: float = Field(
        0.9, description="Share of the context window the document may fill in LC mode.", gt=0, le=1
    )


class IngestSettings(_Section):
    max_file_mb: float = Field(200.0, description="Files larger than this are refused.", gt=0)
    include: list[str] = Field(
        default_factory=list,
        description="Glob patterns (relative to an ingested folder) a file must match; empty: all.",
    )
    exclude: list[str] = Field(
        default_factory=lambda: [".*", "__pycache__", "node_modules", "*~", "~$*"],
        description="Glob patterns on any path component (or the relative path) to skip in folders.",
    )
    asr_model: str = Field("whisper-base", description="Speech-to-text model (catalog name or directory).")
    asr_threads: int = Field(2, description="CPU threads for speech-to-text.", ge=1)
    asr_language: str | None = Field(None, description="Spoken language code; default: detected.")


def _default_data_dir() -> Path:
    return Path(os.environ.get("LONGQA_HOME", ".longqa"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LONGQA_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the metadata database and the vector index live.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata store; default: SQLite in data_dir. "
        "Use postgresql+psycopg://user:pass@host/db for shared deployments.",
    )
    model_cache: Path = Field(
        default_factory=lambda: (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "longqa" / "models"
        ),
        description="Where multi-part model weights are assembled once.",
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = Path(os.environ.get("LONGQA_CONFIG", "longqa.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        elif "LONGQA_CONFIG" in os.environ:
            raise FileNotFoundError(f"LONGQA_CONFIG points at '{config}', which does not exist")
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'longqa.db').resolve()}"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.faiss"
