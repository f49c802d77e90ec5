"""The app's view of the library: one QAService per store and index, shared by every
browser session of the process, with per-session settings and a readers-writer lock
so that one session's ingest or delete never runs under another session's question.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.chats import ChatStore
from app.collections import CollectionStore
from app.ingest import SUPPORTED_SUFFIXES, IngestReport
from app.llm.base import Generator
from app.llm.control import Cancelled
from app.service import QAService
from app.settings import Settings
from app.ui.errors import Problem, explain
from app.ui.sources import AUDIO_SUFFIXES, VIDEO_SUFFIXES
from indexes.embedding import Embedder
from pipeline.types import Answer, Mode, RouteDecision

UPLOAD_TYPES = sorted(s.lstrip(".") for s in SUPPORTED_SUFFIXES)


class RWLock:
    """Many readers (questions) at once, or one writer (ingest, delete)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


# -- per-session settings -------------------------------------------------------------------
@dataclass(frozen=True)
class UIOptions:
    """The settings a user may change in the sidebar (everything else comes from the config)."""

    backend: str
    model: str
    base_url: str
    api_key: str
    max_tokens: int
    top_k: int
    chunk_tokens: int
    chunk_overlap: int
    latency_budget_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> UIOptions:
        return cls(
            backend=s.llm.backend,
            model=s.llm.model,
            base_url=s.llm.base_url,
            api_key=s.llm.api_key,
            max_tokens=s.llm.max_tokens,
            top_k=s.retrieval.top_k,
            chunk_tokens=s.chunking.max_tokens,
            chunk_overlap=s.chunking.overlap_tokens,
            latency_budget_s=s.router.latency_budget_s,
        )

    def apply(self, base: Settings) -> Settings:
        """``base`` with these values; raises pydantic's ValidationError for a bad value."""
        data = base.model_dump()
        data["llm"].update(
            backend=self.backend,
            model=self.model,
            base_url=self.base_url,
            api_key=self.api_key,
            max_tokens=self.max_tokens,
        )
        data["retrieval"]["top_k"] = self.top_k
        data["chunking"].update(max_tokens=self.chunk_tokens, overlap_tokens=self.chunk_overlap)
        data["router"]["latency_budget_s"] = self.latency_budget_s
        return Settings(**data)


def generator_key(s: Settings) -> str:
    """What identifies a loaded LLM: everything in ``llm`` except per-call sampling values."""
    llm = s.llm.model_dump(exclude={"max_tokens", "temperature"})
    return json.dumps({"llm": llm, "model_cache": str(s.model_cache)}, sort_keys=True, default=str)


def embedder_key(s: Settings) -> str:
    return json.dumps(
        {"embedding": s.embedding.model_dump(), "model_cache": str(s.model_cache)}, sort_keys=True
    )


def library_key(s: Settings) -> str:
    """What identifies a library: its store, its index and the embedder that built the index."""
    return json.dumps(
        {
            "db": s.resolved_database_url,
            "index": str(s.index_path.resolve()),
            "embedding": s.embedding.model_dump(),
            "model_cache": str(s.model_cache),
        },
        sort_keys=True,
    )


# -- the library ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DocRow:
    """One line of the library table."""

    doc_id: str
    name: str
    kind: str
    size: str
    status: str
    chunks: int
    warnings: str
    ingested_at: str
    source_path: str


@dataclass(frozen=True)
class IngestStep:
    path: str
    done: int
    total: int
    stage: str
    pages: int = 0  # pages and passages of the files finished so far
    chunks: int = 0
    part: float | None = None  # how far the current file's chunking or embedding is (0..1)

    @property
    def fraction(self) -> float:
        if not self.total:
            return 1.0
        return min(1.0, (self.done + (self.part or 0.0) * (self.stage in ("chunk", "embed"))) / self.total)

    def label(self) -> str:
        """'2/5 files · report.pdf: embedding its passages, 40% · 48 pages, 310 passages so far'."""
        name = Path(self.path).name if self.path else ""
        doing = {"load": "reading", "chunk": "cutting into passages", "embed": "embedding its passages"}
        head = f"{self.done}/{self.total} files"
        if name and self.stage in doing:
            head += f" · {name}: {doing[self.stage]}"
            if self.part is not None and self.stage in ("chunk", "embed"):
                head += f", {self.part:.0%}"
        elif self.stage == "finished":
            head = f"{self.total}/{self.total} files"
        if self.pages or self.chunks:
            head += f" · {self.pages:,} pages, {self.chunks:,} passages so far"
        return head


@dataclass(frozen=True)
class Outcome:
    """An answer, or the problem that stopped it, or neither when the user stopped it
    (``stopped``); ``seconds`` is the wall time either way."""

    answer: Answer | None
    problem: Problem | None
    seconds: float
    mode: Mode
    stopped: bool = False


@dataclass(frozen=True)
class Draft:
    """An answer the page showed before the system looked again (a re-check or a fallback):
    kept on screen with the reason in plain words, never erased."""

    text: str
    reason: str


def size_label(media_type: str, n_chars: int, n_pages: int | None, duration: float | None) -> str:
    tokens = f"≈{max(1, n_chars // 4):,} tokens"
    if n_pages:
        return f"{n_pages} page{'s' if n_pages != 1 else ''} · {tokens}"
    if duration:
        return f"{duration / 60:.1f} min · {tokens}"
    return tokens


def _progress_adapter(cb: Callable[[IngestStep], None]) -> Callable[..., None]:
    """The service's progress callback: a Progress event (or the older path, done, total)."""

    def progress(*args: Any) -> None:
        if len(args) == 1:
            ev = args[0]
            cb(
                IngestStep(
                    ev.path,
                    ev.files_done,
                    ev.files_total,
                    getattr(ev, "stage", ""),
                    getattr(ev, "pages", 0),
                    getattr(ev, "chunks", 0),
                    getattr(ev, "part", None),
                )
            )
        else:
            path, done, total = args[:3]
            cb(IngestStep(str(path), int(done), int(total), ""))

    return progress


@dataclass(frozen=True)
class Turn:
    """One question of a chat and what came back."""

    question: str
    mode: Mode
    scope: tuple[str, ...]
    outcome: Outcome
    drafts: tuple[Draft, ...] = ()  # shown while the answer was being checked
    partial: str = ""  # what had been streamed when the user stopped it
    route: RouteDecision | None = None  # the route, known before the answer (also when stopped)


class Library:
    def __init__(
        self, settings: Settings, service: QAService | None = None, embedder: Embedder | None = None
    ) -> None:
        self.settings = settings
        self.service = service or QAService(settings, embedder=embedder)
        self.lock = RWLock()
        self._chats: ChatStore | None = None
        self._collections: CollectionStore | None = None

    @property
    def chats(self) -> ChatStore:
        """Saved chats, in the same database as the documents (created on first use)."""
        if self._chats is None:
            self._chats = ChatStore(self.service.store)
        return self._chats

    @property
    def collections(self) -> CollectionStore:
        """Named sets of documents, in the same database (created on first use)."""
        if self._collections is None:
            self._collections = CollectionStore(self.service.store)
        return self._collections

    def view(self, settings: Settings, generator: Generator | None = None) -> QAService:
        return self.service.with_settings(settings, generator)

    # -- reading ------------------------------------------------------------------------
    def rows(self) -> list[DocRow]:
        out = []
        for d in self.service.store.list_documents():
            out.append(
                DocRow(
                    doc_id=d.doc_id,
                    name=Path(d.source_path).name,
                    kind=d.media_type,
                    size=size_label(d.media_type, d.n_chars, d.n_pages, d.duration),
                    status=d.status,
                    chunks=d.n_chunks,
                    warnings="; ".join(d.warnings),
                    ingested_at=d.ingested_at[:19].replace("T", " "),
                    source_path=d.source_path,
                )
            )
        return out

    def ready(self) -> list[DocRow]:
        return [r for r in self.rows() if r.status == "ready"]

    # -- writing ------------------------------------------------------------------------
    def ingest(
        self,
        settings: Settings,
        paths: Iterable[str | Path],
        on_progress: Callable[[IngestStep], None] | None = None,
    ) -> IngestReport:
        view = self.view(settings)
        with self.lock.write():
            return view.ingest(list(paths), _progress_adapter(on_progress) if on_progress else None)

    def delete(self, doc_ids: Sequence[str], files_under: Path | None = None) -> Deleted:
        """Delete documents (one store transaction under the write lock). With ``files_under``,
        also remove their files that lie inside that folder (the app's uploads and attached
        recordings); files anywhere else on the server are never touched."""
        wanted = set(doc_ids)
        paths = {d.doc_id: d.source_path for d in self.service.store.list_documents() if d.doc_id in wanted}
        with self.lock.write():
            n = self.service.delete(list(doc_ids))
        removed: list[Path] = []
        if files_under is not None:
            root = files_under.resolve()
            media = [m for d in doc_ids for m in attached_media(root, d)]
            for f in [Path(p) for p in paths.values()] + media:
                try:
                    f = f.resolve()
                    if f.is_file() and f.is_relative_to(root) and not self._still_used(f):
                        f.unlink()
                        removed.append(f)
                except OSError:
                    continue
        return Deleted(len(paths), n, tuple(removed))

    def _still_used(self, f: Path) -> bool:
        """Another document was ingested from the same file (kept until that one goes too)."""
        return bool(self.service.store.find_by_path(str(f)))

    # -- asking -------------------------------------------------------------------------
    def ask(
        self,
        view: QAService,
        question: str,
        mode: Mode,
        doc_ids: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        on_route: Callable[[RouteDecision], None] | None = None,
    ) -> Outcome:
        t0 = time.perf_counter()
        if doc_ids:
            ready = {r.doc_id for r in self.ready()}
            gone = [d for d in doc_ids if d not in ready]
            if gone:
                problem = Problem(
                    f"{len(gone)} of the chosen documents are no longer in the library",
                    "Choose the documents again (another session may have deleted them).",
                )
                return Outcome(None, problem, 0.0, mode)
        try:
            with self.lock.read():
                ans = view.ask(
                    question,
                    mode=mode,
                    doc_ids=list(doc_ids) if doc_ids else None,
                    on_text=on_text,
                    on_restart=on_restart,
                    on_route=on_route,
                )
        except Cancelled:
            return Outcome(None, None, time.perf_counter() - t0, mode, stopped=True)
        except Exception as exc:  # shown to the user as a message with the fix
            return Outcome(None, explain(exc, view.settings), time.perf_counter() - t0, mode)
        return Outcome(ans, None, time.perf_counter() - t0, mode)


@dataclass(frozen=True)
class Deleted:
    documents: int
    passages: int
    files: tuple[Path, ...]


MEDIA_DIR = "media"
MEDIA_SUFFIXES = (*VIDEO_SUFFIXES, *AUDIO_SUFFIXES)


def attached_media(data_dir: Path, doc_id: str) -> list[Path]:
    """Recordings attached to a transcript in the app (``<data dir>/media/<doc id>.<suffix>``)."""
    folder = data_dir / MEDIA_DIR
    return sorted(folder.glob(f"{doc_id}.*")) if folder.is_dir() else []


def attach_media(data_dir: Path, doc_id: str, filename: str, data: bytes) -> Path:
    """Keep an uploaded recording for a transcript, replacing one attached before."""
    suffix = Path(filename).suffix.lower()
    if suffix not in MEDIA_SUFFIXES:
        raise ValueError(
            f"'{filename}' is not an audio or video file this app can play; "
            f"use one of {', '.join(MEDIA_SUFFIXES)}"
        )
    for old in attached_media(data_dir, doc_id):
        old.unlink(missing_ok=True)
    folder = data_dir / MEDIA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{doc_id}{suffix}"
    tmp = target.with_suffix(suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def save_upload(folder: Path, filename: str, data: bytes) -> Path:
    """Write an uploaded file into ``folder`` (never outside it) and return its path."""
    from app.ingest import safe_destination

    folder.mkdir(parents=True, exist_ok=True)
    target = safe_destination(folder, filename, data)  # never overwrites a different file
    target.write_bytes(data)
    return target
