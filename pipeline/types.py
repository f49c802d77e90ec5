"""Core data types that flow through the pipeline (see docs/design.md).

All types are frozen dataclasses: they are values, passed between stages, never
mutated in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

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


# What a caller asks for: the router's pick ("auto") or one answering mode forced.
Mode = Literal["auto", "rag", "lc"]
MODES: tuple[Mode, ...] = get_args(Mode)
# What answered: retrieved passages (RAG) or the whole documents in the window (LC).
RouteMode = Literal["rag", "lc"]


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What the router measured and scored for one decision, typed: the values code acts on
    (the service, ``cache_could_flip``, the Self-Route fallback, eval). Shown to people through
    :attr:`RouteDecision.features`, which is derived from these and never read back.

    Values are kept exactly as the decision used them: ``predicted_lc_seconds`` rounded to
    0.01 s, the policy's inputs, ``p_lc_better`` and ``fallback_score`` to 4 places.
    """

    doc_tokens: int
    window: int
    capacity: int  # most document tokens long context can read (window or GPU memory, less reserved)
    cached_tokens: int
    predicted_lc_seconds: float
    latency_budget_s: float
    # The accelerator's limit on document tokens (None: no such limit known).
    memory_tokens: int | None = None
    memory_bound: bool = False  # GPU memory, not the window, sets ``capacity``
    # The learned score, when it ran (a question was given and the hard limits passed): its
    # inputs by name (``app.routing.router.policy_features``), P(LC answers better) and the threshold.
    policy_inputs: Mapping[str, float] = field(default_factory=dict)
    p_lc_better: float | None = None
    threshold: float | None = None
    # Set when the Self-Route fallback answered again: the second score.
    fallback_score: float | None = None

    @property
    def fill(self) -> float:
        """Document tokens as a share of ``capacity`` (over 1: long context cannot read them whole)."""
        return self.doc_tokens / max(self.capacity, 1)

    @property
    def lc_fits(self) -> bool:
        """The documents fit long context's capacity and reading them fits the latency budget."""
        return self.fill <= 1.0 and self.predicted_lc_seconds <= self.latency_budget_s

    @property
    def p_unanswerable(self) -> float | None:
        """The question-type classifier's P(the text cannot answer it), when the policy ran."""
        return self.policy_inputs.get("q_hallu")

    def explanation(self) -> dict[str, float]:
        """The facts as a flat name -> number mapping, for people: the CLI's ``--json``
        ``features``, eval's ``route_features``. Display only: code reads the fields."""
        shown: dict[str, float] = {
            "doc_tokens": float(self.doc_tokens),
            "window": float(self.window),
            "capacity": float(self.capacity),
            "fill": self.fill,
            "cached_tokens": float(self.cached_tokens),
            "predicted_lc_seconds": self.predicted_lc_seconds,
            "latency_budget_s": self.latency_budget_s,
        }
        if self.memory_tokens is not None:
            shown["memory_tokens"] = float(self.memory_tokens)
            shown["memory_bound"] = float(self.memory_bound)
        shown.update(self.policy_inputs)
        if self.p_lc_better is not None:
            shown["p_lc_better"] = self.p_lc_better
        if self.threshold is not None:
            shown["threshold"] = self.threshold
        if self.fallback_score is not None:
            shown["fallback_score"] = self.fallback_score
        return shown


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The answering mode, why in words, and the facts behind it (None: made without routing)."""

    mode: RouteMode
    reason: str
    facts: RouteFacts | None = None
    forced: bool = False

    @property
    def features(self) -> dict[str, float]:
        """The facts for display (:meth:`RouteFacts.explanation`); empty without facts."""
        return self.facts.explanation() if self.facts is not None else {}


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached_tokens: int = 0
    engine: str = ""  # what ran the model, e.g. "xllamacpp 2026.10.11549 (prebuilt, AVX2)"
    prefill_tokens_per_s: float = 0.0  # the engine's speeds as measured on this machine
    decode_tokens_per_s: float = 0.0


# How a citation was found. "model": the model's own [n]; "repaired": the model's [n] did not
# support the claim and the source that does replaced it; "matched": the model gave no marker,
# the claim was matched to a source; "quote": the model's quote was located in the document.
CitationOrigin = Literal["model", "repaired", "matched", "quote"]


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
    origin: CitationOrigin = "model"
    # Why it is verified or not (app/answering/verify.py): "verified", "unsupported",
    # "contradicted", "not_an_answer" or "not_stated", a reason in words, and the claim checked.
    verdict: str = ""
    reason: str = ""
    claim: str = ""
    # The model's own check of the claim (app/answering/entail.py): "" when it was not asked,
    # else its reply ("supported", "not_stated" or "contradicted").
    model_check: str = ""


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
    # The model stopped at llm.max_tokens mid-sentence: the text ends with that sentence and "…",
    # and it was neither cited nor checked.
    cut_off: bool = False

    @property
    def cut_off_note(self) -> str:
        """What a reader is told about a cut-off answer ("" when it was not cut off)."""
        if not self.cut_off:
            return ""
        return (
            "Cut off: the answer reached its length limit (llm.max_tokens; in the app, Longest "
            "answer) in the middle of a sentence; that last sentence, ending in …, was not checked. "
            "Raise the limit to read the whole answer."
        )
