"""The experiment runner: every item in every mode, judged, stored as it comes.

Results go to ``results.jsonl`` in the output folder, one row per (item, mode), flushed
after each answer, so an interrupted run resumes where it stopped: rows already there
are skipped, except backend failures, which are tried again. Bad input (a line without
a question, a missing document, a backend that times out) becomes an error row with
the reason, and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from app.answer_json import citation_json
from app.ingest import stored_file
from app.llm.base import LLMError
from eval.choices import extract_letters, score
from eval.datasets import EvalItem
from eval.evidence import SentenceIndex, locate_evidence, retrieval_hit
from eval.judge import DeterministicJudge, Judge, Verdict
from pipeline.types import Citation, Mode

log = logging.getLogger(__name__)

# Every mode, in the order runs and reports list them.
MODES: tuple[Mode, ...] = ("rag", "lc", "auto")
RESULTS = "results.jsonl"


@dataclass(frozen=True)
class ResultRow:
    item_id: str
    mode_requested: str  # rag, lc or auto
    task: str
    kind: str = ""
    doc: str = ""
    question: str = ""
    gold: str = ""
    answer: str = ""
    mode: str = ""  # the mode that produced the answer (auto: the router's choice)
    correct: bool | None = None  # deterministic judge
    judge_reason: str = ""
    llm_correct: bool | None = None  # LLM judge, when run
    llm_reason: str = ""
    route_reason: str = ""
    route_features: dict[str, float] = field(default_factory=dict)
    fallback: bool = False  # the router fell back to reading the whole document after RAG
    rechecked: bool = False  # a shown citation failed its check and the model answered once more
    cut_off: bool = False  # stopped at llm.max_tokens mid-sentence (that sentence is not checked)
    citations: int = 0
    verified: int = 0
    # The same two counts for the answer before its re-check (equal to the above when there was
    # none; None in results written before they were recorded).
    first_citations: int | None = None
    first_verified: int | None = None
    # Each shown citation's verdict: number, verified, verdict, reason, claim (the API's fields;
    # empty in results written before they were recorded), so a run's misses can be read.
    verdicts: list[dict] = field(default_factory=list)
    retrieval_hit: bool | None = None  # None: the gold evidence could not be located
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    error: str = ""
    error_kind: str = ""  # "data" (bad input: kept on resume) or "backend" (tried again on resume)
    mc: bool = False  # a multiple-choice question: ``gold`` holds the correct letters
    choice: str = ""  # MC: the letters the answer chose ("" when none could be read)
    alt_answers: list[str] = field(default_factory=list)
    doc_tokens: int = 0  # the document's length in the generator's tokens
    extra: dict = field(default_factory=dict)  # the dataset record's own extra fields

    @property
    def key(self) -> tuple[str, str]:
        return (self.item_id, self.mode_requested)

    @property
    def ok(self) -> bool:
        return not self.error


class ResultStore:
    """results.jsonl: read on open (last row per key wins), appended and flushed row by row."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: dict[tuple[str, str], ResultRow] = {}
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = ResultRow(**json.loads(line))
                    except (json.JSONDecodeError, TypeError) as exc:
                        log.warning("%s line %d is unreadable and is skipped: %s", self.path, n, exc)
                        continue
                    self.rows[row.key] = row

    def done(self, key: tuple[str, str]) -> bool:
        row = self.rows.get(key)
        return row is not None and row.error_kind != "backend"

    def add(self, row: ResultRow) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            fh.flush()
        self.rows[row.key] = row

    def all(self) -> list[ResultRow]:
        return list(self.rows.values())


@dataclass(frozen=True)
class RunOptions:
    modes: tuple[str, ...] = MODES
    retrieval_recall: bool = True


@dataclass
class RunSummary:
    answered: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


Progress = Callable[[int, int, str], None]  # (done, total, what)


def _error_rows(item: EvalItem, modes: Sequence[str], reason: str, kind: str) -> list[ResultRow]:
    return [
        ResultRow(
            item.item_id,
            m,
            item.task,
            item.kind,
            item.doc,
            item.question,
            item.answer,
            error=reason,
            error_kind=kind,
            mc=item.is_mc,
            alt_answers=list(item.alt_answers),
            extra=dict(item.extra),
        )
        for m in modes
    ]


CONTEXTS = "contexts"


def materialize_contexts(items: Sequence[EvalItem], folder: Path) -> list[EvalItem]:
    """Items whose document text is inline (``context``) get a file named by the text's content
    hash under ``folder``, written once per distinct text: the library then ingests each text
    once, and a rerun finds it unchanged."""
    out = []
    for it in items:
        if it.error or not it.context or it.doc:
            out.append(it)
            continue
        digest = hashlib.sha256(it.context.encode("utf-8")).hexdigest()[:20]
        path = folder / f"context-{digest}.txt"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".part")
            tmp.write_text(it.context, encoding="utf-8")
            tmp.replace(path)
        out.append(replace(it, doc=str(path.resolve()), context=""))
    return out


def judge_answer(
    it: EvalItem, text: str, det: Judge, llm: Judge | None
) -> tuple[str, Verdict, Verdict | None]:
    """The chosen letters (MC) and the verdicts of the deterministic and the LLM judge.

    MC: exact set match of the letters read from the answer (no LLM judge: the letters decide).
    Open questions: right when any gold answer (``answer`` or one of ``alt_answers``) matches."""
    if it.is_mc:
        chosen = extract_letters(text, it.options)
        ok = score(chosen, it.answer)
        why = f"chose {chosen or 'no option'}; correct {it.answer}"
        return chosen, Verdict(ok, float(ok), "choices", why), None
    golds = it.golds or ("",)

    def best(judge: Judge) -> Verdict:
        first = None
        for i, gold in enumerate(golds):
            v = judge.judge(it.question, text, gold, it.task)
            if i:
                v = replace(v, reason=f"{v.reason} (alternative answer {i})")
            if v.correct:
                return v
            first = first or v
        assert first is not None
        return first

    return "", best(det), best(llm) if llm is not None else None


def resolve_documents(svc, items: Sequence[EvalItem]) -> tuple[dict[str, str], dict[str, str]]:
    """Ingest every document file the items name (unchanged files are skipped); returns
    doc -> document id, and doc -> why it cannot be used."""
    ids: dict[str, str] = {}
    failed: dict[str, str] = {}
    files = sorted({it.doc for it in items if not it.error and Path(it.doc).is_file()})
    if files:
        report = svc.ingest([Path(f) for f in files])
        for path, why in report.failed:
            failed[str(path)] = f"document could not be ingested: {why}"
    known = {d.doc_id: d for d in svc.documents()}
    by_path = {str(Path(d.source_path).resolve()): d for d in known.values()}
    for it in items:
        if it.error or it.doc in ids or it.doc in failed:
            continue
        p = Path(it.doc)
        if p.is_file():
            info = stored_file(svc.store, p, by_path)  # by path, else by its bytes (a copy, a move)
            if info is None:
                failed[it.doc] = f"document '{it.doc}' was not ingested"
            else:
                ids[it.doc] = info.doc_id
        elif it.doc in known:
            ids[it.doc] = it.doc
        else:
            failed[it.doc] = (
                f"document '{it.doc}' not found: it is neither a file nor the id of an ingested document"
            )
    return ids, failed


_VERDICT_KEYS = ("number", "verified", "verdict", "reason", "claim")


def _verdict(c: Citation) -> dict:
    full = citation_json(c)
    return {k: full[k] for k in _VERDICT_KEYS}


def run_eval(
    svc,
    items: Sequence[EvalItem],
    store: ResultStore,
    options: RunOptions = RunOptions(),
    *,
    llm_judge: Judge | None = None,
    progress: Progress | None = None,
    budget_s: float | None = None,
) -> RunSummary:
    """Ask every item in every mode through ``svc`` (an ``app.service.QAService``). With
    ``budget_s``, no answer is started that would, at the mean time per answer so far, end past
    the budget (the rest stays for a rerun)."""
    t0 = time.perf_counter()
    summary = RunSummary()
    det = DeterministicJudge()
    modes = tuple(options.modes)
    items = materialize_contexts(items, store.path.parent / CONTEXTS)
    todo = [(it, m) for it in items for m in modes if not store.done((it.item_id, m))]
    # One document at a time, one mode at a time: consecutive long-context prompts then share the
    # document prefix, which llama.cpp's KV cache (and vLLM's prefix cache) reuse.
    doc_order: dict[str, int] = {}
    for it in items:
        doc_order.setdefault(it.doc, len(doc_order))
    todo.sort(key=lambda im: (doc_order[im[0].doc], modes.index(im[1])))
    summary.skipped = len(items) * len(modes) - len(todo)
    total = len(todo)
    if progress:
        progress(0, total, "ingesting documents")
    pending = {it.item_id for it, _ in todo}
    need = [it for it in items if it.item_id in pending]
    doc_ids, doc_errors = resolve_documents(svc, need)
    sentence_index: dict[str, SentenceIndex] = {}
    recall: dict[str, bool | None] = {}
    lengths: dict[str, int] = {}
    done = 0
    asked_s: list[float] = []
    for it, mode in todo:
        if budget_s is not None and asked_s:
            spent = time.perf_counter() - t0
            if spent + sum(asked_s) / len(asked_s) > budget_s:
                summary.notes.append(
                    f"stopped by the time budget ({budget_s / 60:.0f} min) after {done} of {total} "
                    "answers; rerun the same command to go on"
                )
                break
        if progress:
            progress(done, total, f"{mode:>4} {it.item_id}")
        done += 1
        started = time.perf_counter()
        if it.error or it.doc in doc_errors:
            row = _error_rows(it, [mode], it.error or doc_errors[it.doc], "data")[0]
            store.add(row)
            summary.errors += 1
            continue
        doc_id = doc_ids[it.doc]
        if options.retrieval_recall and it.item_id not in recall:
            recall[it.item_id] = _retrieval_recall(svc, it, doc_id, sentence_index)
        if doc_id not in lengths:
            lengths[doc_id] = _doc_tokens(svc, doc_id)
        try:
            ans = svc.ask(it.prompt_question(), mode=mode, doc_ids=[doc_id])
        except LLMError as exc:
            row = _error_rows(it, [mode], f"the model failed: {exc}", "backend")[0]
        except (ValueError, LookupError) as exc:
            row = _error_rows(it, [mode], str(exc).strip("'\""), "data")[0]
        except Exception as exc:  # noqa: BLE001 - one bad item must not end the run
            log.exception("item %s (%s) failed", it.item_id, mode)
            row = _error_rows(it, [mode], f"{type(exc).__name__}: {exc}", "backend")[0]
        else:
            chosen, v, lv = judge_answer(it, ans.text, det, llm_judge)
            first = ans.first_draft or ans
            row = ResultRow(
                item_id=it.item_id,
                mode_requested=mode,
                task=it.task,
                kind=it.kind,
                doc=it.doc,
                question=it.question,
                gold=it.answer,
                answer=ans.text,
                mode=ans.mode,
                correct=v.correct,
                judge_reason=v.reason,
                llm_correct=lv.correct if lv else None,
                llm_reason=lv.reason if lv else "",
                route_reason=ans.route.reason,
                route_features={k: float(x) for k, x in ans.route.features.items()},
                fallback=ans.route.facts is not None and ans.route.facts.fallback_score is not None,
                rechecked=ans.first_draft is not None,
                cut_off=ans.cut_off,
                citations=len(ans.citations),
                verified=sum(c.verified for c in ans.citations),
                first_citations=len(first.citations),
                first_verified=sum(c.verified for c in first.citations),
                verdicts=[_verdict(c) for c in ans.citations],
                retrieval_hit=recall.get(it.item_id),
                prompt_tokens=ans.usage.prompt_tokens,
                completion_tokens=ans.usage.completion_tokens,
                cached_tokens=ans.usage.cached_tokens,
                seconds=ans.usage.seconds,
                mc=it.is_mc,
                choice=chosen,
                alt_answers=list(it.alt_answers),
                doc_tokens=lengths[doc_id],
                extra=dict(it.extra),
            )
        store.add(row)
        if row.error:
            summary.errors += 1
        else:
            summary.answered += 1
            asked_s.append(time.perf_counter() - started)
    if progress:
        progress(done, total, "done")
    summary.seconds = round(time.perf_counter() - t0, 1)
    return summary


def _doc_tokens(svc, doc_id: str) -> int:
    """The document's length in the generator's tokens (the length buckets of the report)."""
    try:
        return int(svc.generator.count_tokens(svc.store.get_document(doc_id).text))
    except Exception as exc:  # noqa: BLE001 - a diagnostic; never fail the row for it
        log.warning("counting the tokens of %s failed: %s", doc_id, exc)
        return 0


def _retrieval_recall(svc, it: EvalItem, doc_id: str, cache: dict[str, SentenceIndex]) -> bool | None:
    """Whether the retriever's top passages hold the gold answer's evidence (None: not locatable)."""
    if not it.gold_text:
        return None
    try:
        doc = svc.store.get_document(doc_id)
        if doc_id not in cache:
            cache[doc_id] = SentenceIndex(doc.text)
        evidence = locate_evidence(cache[doc_id], it.gold_text, it.question, it.evidence, it.task)
        if not evidence:
            return None
        hits = svc.retriever.retrieve(it.prompt_question(), k=svc.settings.retrieval.top_k, doc_ids=[doc_id])
    except Exception as exc:  # noqa: BLE001 - recall is a diagnostic; never fail the row for it
        log.warning("retrieval recall for %s failed: %s", it.item_id, exc)
        return None
    return retrieval_hit(evidence, [(h.chunk.span.start, h.chunk.span.end) for h in hits])
