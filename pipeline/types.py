"""Core data types that flow through the pipeline (see docs/design.md).

All types are frozen dataclasses: they are values, passed between stages, never
mutated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MediaType = Literal["pdf", "text", "markdown", "html", "docx", "transcript"]


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character range ``[start, end)`` in ``Document.text``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid span [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class PageSpan:
    """Page ``page`` (1-based) occupies ``Document.text[span.start:span.end]``."""

    page: int
    span: Span


@dataclass(frozen=True, slots=True)
class TimedSegment:
    """One transcript cue: ``Document.text[span]`` was said from ``start`` to ``end`` seconds."""

    index: int
    start: float
    end: float
    span: Span


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str
    source_path: str
    media_type: MediaType
    text: str
    content_hash: str
    pages: tuple[PageSpan, ...] | None = None
    segments: tuple[TimedSegment, ...] | None = None
    title: str = ""
    warnings: tuple[str, ...] = ()

    def pages_for(self, span: Span) -> tuple[int, int] | None:
        """First and last page that ``span`` touches, or None for page-less documents."""
        if not self.pages:
            return None
        touched = [p.page for p in self.pages if p.span.overlaps(span)]
        if not touched:
            # An empty span sits on the page whose range contains its start.
            touched = [p.page for p in self.pages if p.span.start <= span.start <= p.span.end]
        if not touched:
            return None
        return (min(touched), max(touched))

    def time_for(self, span: Span) -> tuple[float, float] | None:
        """Start and end time of the cues that ``span`` touches, for transcripts."""
        if not self.segments:
            return None
        cues = [s for s in self.segments if s.span.overlaps(span)]
        if not cues:
            return None
        return (min(c.start for c in cues), max(c.end for c in cues))


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: str
    doc_id: str
    text: str
    span: Span
    ordinal: int
    n_tokens: int
    pages: tuple[int, int] | None = None
    time: tuple[float, float] | None = None


HitVia = Literal["dense", "bm25", "fused", "rerank"]


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    score: float
    rank: int
    via: HitVia


RouteMode = Literal["rag", "lc"]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    mode: RouteMode
    reason: str
    features: dict[str, float] = field(default_factory=dict)
    forced: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached_tokens: int = 0
    engine: str = ""  # what ran the model, e.g. "xllamacpp 2026.10.11549 (prebuilt, AVX2)"
    prefill_tokens_per_s: float = 0.0  # the engine's speeds as measured on this machine
    decode_tokens_per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Citation:
    number: int
    doc_id: str
    source_path: str
    chunk_id: str | None
    span: Span
    pages: tuple[int, int] | None
    time: tuple[float, float] | None
    quote: str
    verified: bool
    support: float = 0.0
    # "model": the model's own [n]; "repaired": the model's [n] did not support the claim and
    # the source that does replaced it; "matched": the model gave no marker, the claim was
    # matched to a source; "quote": the model's quote was located in the document.
    origin: str = "model"


@dataclass(frozen=True, slots=True)
class FirstDraft:
    """An answer before its re-check: a shown citation failed verification, so the model was
    asked once more; ``kept`` says whether this draft was kept after all."""

    text: str
    citations: tuple[Citation, ...]
    kept: bool


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    mode: RouteMode
    route: RouteDecision
    citations: tuple[Citation, ...]
    usage: Usage
    model: str = ""
    retrieval: str = ""
    first_draft: FirstDraft | None = None
