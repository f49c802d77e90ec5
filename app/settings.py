"""The one Settings object, built at the entry point and passed down.

Sources, strongest first: explicit arguments, ``LONGQA_*`` environment variables
(nested with ``__``, e.g. ``LONGQA_LLM__MODEL``), a TOML file (``LONGQA_CONFIG``
or ``./longqa.toml``), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.errors import BadSetting, ConfigNotFound

# Skipped in ingested folders unless the settings say otherwise: hidden files and folders,
# caches, editor backups and Office lock files (ingest.exclude, app.ingest.WalkOptions).
DEFAULT_EXCLUDE = (".*", "__pycache__", "node_modules", "*~", "~$*")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMSettings(_Section):
    backend: Literal["llamacpp", "openai", "transformers"] = Field(
        "llamacpp",
        description="'llamacpp' runs a GGUF model on the embedded llama.cpp engine (a child "
        "process; see llm.engine); 'openai' calls an "
        "OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs); "
        "'transformers' runs a local Hugging Face model directory (llm.model), on the GPU when present.",
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
    recheck: bool = Field(
        True,
        description="When a shown citation fails verification, ask the model once more (on the "
        "same cached prompt) to answer from what the material states or say it does not say; the "
        "first draft is kept on the answer (docs/citations.md).",
    )
    entail_claims: int | None = Field(
        None,
        description="After the lexical check, ask the model whether the cited passage states each "
        "verified claim (RAG: passage and claim in a short prompt; LC: on the answer's cached "
        "prompt), for at most this many claims per answer; 0 turns it off; unset: the model "
        "catalog's value in RAG (1 for the default 1.5B, 0 for the test model and models outside "
        "the catalog) and 0 in LC, whose form confirmed every claim on the fresh labelled set "
        "(docs/citations.md, 'Entailment').",
        ge=0,
    )
    entail_threshold: float | None = Field(
        None,
        description="The model's check in RAG confirms a claim when its probability of 'Yes' (is "
        "everything in the claim stated by the passage?) is at least this; 0: its one-word reply "
        "decides; unset: the model catalog's value (chosen on a labelled set, docs/citations.md, "
        "'A scored check'). Backends without token probabilities use the one-word reply.",
        ge=0,
        le=1,
    )
    engine: Literal["auto", "xllamacpp", "native"] = Field(
        "auto",
        description="The embedded llama.cpp engine: 'xllamacpp' (prebuilt from PyPI, AVX2, the "
        "default), 'native' (built by scripts/build-native-engine.sh, runtime CPU dispatch up to "
        "AVX-512/AMX), 'auto' (native when built and not recorded as crashing here). docs/engine.md.",
    )
    engine_safe: bool = Field(
        False,
        description="Run the engine without its risky fast paths (repacked weights and the AMX "
        "kernels behind them). Turned on by itself, per machine, after a crash.",
    )
    threads: int | None = Field(None, description="CPU threads for llama.cpp; default: all cores.")
    poll: int = Field(
        0,
        ge=0,
        le=100,
        description="How hard llama.cpp's idle threads spin waiting for work (0-100; llama.cpp's "
        "own default is 50). 0 lets them sleep: when another process shares the cores (the "
        "embedder, a test run, a second app) spinning threads wait on each other and decode fell "
        "from 17 to about 1 token/s here; docs/engine.md has the figures.",
    )
    gpu_layers: int = Field(0, description="Layers offloaded to the GPU by llama.cpp (-1: all).")
    seed: int = Field(0, description="Sampling seed, for reproducible answers.")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible server.")
    api_key: str = Field("", description="API key for the OpenAI-compatible server, if any.")
    timeout_s: float = Field(120.0, description="HTTP timeout per request, in seconds.", gt=0)
    retries: int = Field(2, description="Retries with backoff on connection errors and 5xx.", ge=0)
    prefill_tokens_per_s: float | None = Field(
        None,
        description="Prompt-processing speed used to predict LC latency; default: the "
        "catalog's estimate for local models, 2000 for remote servers. When set, it is used as "
        "is; when not, the speed measured on this machine replaces the estimate.",
    )
    decode_threads: int | None = Field(
        None,
        description="CPU threads llama.cpp decodes with; default: llm.threads. On a busy machine 1 "
        "decodes much faster than 2 (llama.cpp threads wait for each other).",
    )
    device: str = Field(
        "auto", description="Device of the transformers backend: auto, cpu, cuda, cuda:N or mps."
    )
    lc_engine: Literal["auto", "on", "off"] = Field(
        "auto",
        description="The transformers backend reads documents with gpu.lc.LongContextEngine "
        "(fused, chunked prefill; questions on the cached prefix): auto = on CUDA for Llama-family "
        "models, on = also on the CPU, off = the model's own forward.",
    )
    connect_timeout_s: float = Field(5.0, description="HTTP connect timeout, in seconds.", gt=0)
    kv_cache_ram_mb: int = Field(
        2048, description="Memory for saved KV states of documents already read (MB).", ge=0
    )
    kv_cache_disk_mb: int = Field(
        8192,
        description="Disk for saved llama.cpp KV states under data_dir/kvcache (MB); 0: no disk tier. "
        "A 32k-token document costs about 0.9 GB with the 1.5B model.",
        ge=0,
    )
    kv_cache_min_tokens: int = Field(
        512, description="Shortest prompt prefix (document) whose KV state is saved, in tokens.", ge=1
    )
    lc_overflow: Literal["refuse", "middle_cut", "map_reduce", "auto"] = Field(
        "auto",
        description="LC mode on documents longer than the window: refuse; middle_cut (LaRA: keep the "
        "beginning and the end); map_reduce (read in window-sized parts, keep notes, answer from "
        "them); auto (middle_cut when it drops at most 25% of the text, else map_reduce).",
    )
    notes_tokens: int = Field(
        256, description="Most tokens of notes kept between parts in map_reduce reading.", ge=16
    )


class EmbeddingSettings(_Section):
    model: str = Field(
        "all-minilm-l6-v2",
        description="Catalog name or a local sentence-transformers model directory.",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    batch_size: int = Field(32, description="Texts per encoder batch.", ge=1)
    long_text: Literal["windows", "truncate"] = Field(
        "windows",
        description="Texts longer than the encoder reads: 'windows' embeds them whole in overlapping "
        "windows (mean vector); 'truncate' lets the encoder cut them (logged as a warning).",
    )
    extend_to: int | None = Field(
        None,
        description="Stretch the encoder's window to this many tokens without training: position "
        "interpolation (absolute positions) or NTK rotary scaling (RoPE). Measured in docs/retrieval.md.",
        ge=16,
    )
    packed_gpu: bool = Field(
        True,
        description="On CUDA, embed documents with the packed half-precision encoder of gpu/embed.py "
        "(BERT-family models; falls back to sentence-transformers for others). docs/gpu.md.",
    )


class ChunkingSettings(_Section):
    max_tokens: int = Field(
        240,
        description="Most encoder tokens per chunk; must not exceed the encoder's window.",
        ge=8,
    )
    overlap_tokens: int = Field(40, description="Tokens shared by neighbouring chunks.", ge=0)
    boundary: Literal["sentence", "paragraph", "token"] = Field(
        "sentence",
        description="Where chunks may end: sentence ends, paragraph ends, or anywhere between words "
        "(fixed token windows). LaRA's baseline is 600 tokens, 100 overlap.",
    )
    max_chars_per_token: int = Field(
        8,
        description="A piece costs at least one token per this many non-space characters, whatever "
        "the tokenizer says (WordPiece counts a 200,000-character word as 1 token).",
        ge=1,
    )


class RetrievalSettings(_Section):
    method: Literal["dense", "bm25", "hybrid"] = Field(
        "hybrid", description="Dense (FAISS), BM25, or both fused (see 'fusion')."
    )
    top_k: int = Field(6, description="Chunks given to the model in RAG mode.", ge=1)
    candidates: int = Field(50, description="Candidates per retriever before fusion.", ge=1)
    index_factory: str = Field(
        "auto",
        description="FAISS factory string for the vector index; 'auto': exact (Flat) below 100k "
        "vectors, IVF above.",
    )
    nprobe: int = Field(32, description="Inverted lists visited per search in an IVF index.", ge=1)
    search_backend: Literal["auto", "faiss-cpu", "faiss-gpu", "torch"] = Field(
        "auto",
        description="Dense search: 'auto' uses faiss-gpu when installed with CUDA, else exact torch "
        "search on CUDA, else FAISS on the CPU.",
    )
    vector_search: Literal["auto", "faiss", "pgvector"] = Field(
        "auto",
        description="Where dense search runs: 'pgvector' in PostgreSQL (the vector extension; no "
        "per-process index), 'faiss' in a FAISS cache per process; 'auto': pgvector when the "
        "database is PostgreSQL with the extension, else FAISS.",
    )
    pgvector_index: Literal["auto", "hnsw", "ivfflat", "exact"] = Field(
        "auto",
        description="pgvector's index: 'auto' searches exactly below pgvector_exact_below vectors "
        "and builds HNSW above (docs/deploy.md); 'ivfflat' builds faster, 'exact' never indexes.",
    )
    pgvector_exact_below: int = Field(
        20_000, description="Vectors below which pgvector searches exactly (no index).", ge=0
    )
    pgvector_ef_search: int = Field(
        100, description="HNSW candidate list per pgvector search (hnsw.ef_search).", ge=1, le=1000
    )
    fusion: Literal["weighted", "rrf"] = Field(
        "weighted",
        description="'weighted': min-max scaled scores mixed by the weights below; 'rrf': "
        "reciprocal-rank fusion.",
    )
    dense_weight: float = Field(0.15, description="Weight of the dense score in fusion.", ge=0)
    bm25_weight: float = Field(0.85, description="Weight of the BM25 score in fusion.", ge=0)
    bm25_bigrams: bool = Field(True, description="Index word pairs as well as words in BM25.")
    bm25_backend: Literal["scoped", "bm25s"] = Field(
        "scoped",
        description="'scoped': BM25 statistics over the documents searched; 'bm25s': the bm25s "
        "library with statistics over the whole library.",
    )
    reranker: Literal["none", "bi-encoder", "cross-encoder"] = Field(
        "none",
        description="Rescore the top candidates: 'cross-encoder' (a local CrossEncoder at "
        "reranker_path; none ships with longqa) or 'bi-encoder' (the embedder on 126-token windows).",
    )
    reranker_path: str = Field("", description="Directory of a sentence-transformers CrossEncoder.")
    rerank_candidates: int = Field(20, description="Candidates the reranker rescores.", ge=1)
    rerank_weight: float = Field(
        1.0, description="Share of the reranker's score in the final order (1: its order alone).", ge=0, le=1
    )


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
    max_chars: int = Field(
        50_000_000, description="Documents with more characters of text than this are refused.", ge=1
    )
    max_pages: int = Field(20_000, description="PDFs with more pages than this are refused.", ge=1)
    max_media_minutes: float = Field(
        600.0, description="Audio and video longer than this are refused before transcription.", gt=0
    )
    max_seconds_per_file: float = Field(
        1800.0,
        description="Reading one file (parsing, transcribing) stops after this many seconds, "
        "failing that file alone.",
        gt=0,
    )
    include: list[str] = Field(
        default_factory=list,
        description="Glob patterns (relative to an ingested folder) a file must match; empty: all.",
    )
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE),
        description="Glob patterns on any path component (or the relative path) to skip in folders.",
    )
    follow_links: bool = Field(
        False,
        description="In folders, follow symbolic links that lead out of the folder (off: skipped, "
        "with a warning; links within the folder are read either way).",
    )
    asr_model: str = Field("whisper-base", description="Speech-to-text model (catalog name or directory).")
    asr_threads: int = Field(2, description="CPU threads for speech-to-text.", ge=1)
    asr_language: str | None = Field(None, description="Spoken language code; default: detected.")
    lease_s: float = Field(
        60.0,
        description="Seconds a writer's claim on a document it is ingesting lasts; renewed every quarter. "
        "Past it, another host may treat the writer as dead (on this host the process is checked).",
        gt=0,
    )


class AppSettings(_Section):
    safe_mode: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Safe mode of the Streamlit app (app/safe_mode.py): a token login, server paths "
        "limited to app.roots, the LLM backend fixed by the server. auto: on unless Streamlit is "
        "bound to a loopback address (.streamlit/config.toml binds 127.0.0.1).",
    )
    token: str | None = Field(
        None, description="The access token users type to open the app in safe mode (required then)."
    )
    roots: list[Path] = Field(
        default_factory=list,
        description="In safe mode, the only server folders that may be ingested or read as report "
        "folders; empty: none (uploads still work).",
    )
    users: dict[str, str] = Field(
        default_factory=dict,
        description="Accounts: user name -> scrypt password hash (make one with 'python -m "
        "app.accounts NAME'). When set, the app asks for a name and password, and each user has "
        "their own chats and collections (shared ones are seen by all).",
    )


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
    app: AppSettings = Field(default_factory=AppSettings)

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
            raise ConfigNotFound(str(config))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'longqa.db').resolve()}"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.faiss"


def settings_error(exc: ValidationError) -> BadSetting:
    """A pydantic error about settings as one BadSetting: the settings and what is wrong, and
    where to correct them (the config file or the ``LONGQA_*`` variable; the app's sidebar)."""
    errors = exc.errors()
    names = [".".join(str(p) for p in e.get("loc", ())) for e in errors[:3]]
    parts = [f"{n}: {e.get('msg', '')}" for n, e in zip(names, errors)]
    first = [str(p) for p in errors[0].get("loc", ()) if isinstance(p, str)] if errors else []
    env = "LONGQA_" + "__".join(first).upper() if first else "the LONGQA_* variable"
    return BadSetting(
        names[0] if names else "",
        "a setting is not valid (" + "; ".join(parts) + ")",
        f"correct it in longqa.toml or {env}",
        app_fix="Correct the value in the sidebar.",
    )


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and the config file; a bad value is a BadSetting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise settings_error(exc) from exc


def setting_device(name: str, value: str | None) -> str:
    """``gpu.device.resolve_device`` for the setting ``name``: a device that cannot be used is
    a BadSetting naming the setting."""
    from gpu.device import resolve_device

    try:
        return resolve_device(value)
    except ValueError as exc:
        reason, _, fix = str(exc).partition("; ")
        raise BadSetting(name, f"{name}: {reason}", fix or f"set {name} to auto or cpu") from exc
