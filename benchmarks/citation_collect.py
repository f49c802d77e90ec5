"""Collect real answers of the embedded model with the passages they could cite, for the labelled
citation set (docs/citations.md, "Measuring verification"; ``benchmarks/citation_pairs.py``
turns them into pairs).

    # RAG: LaRA 32k questions spread over kinds and tasks, 3 passages each (short prompts)
    flock /work/cpu.lock .venv/bin/python -m benchmarks.citation_collect rag --n 12 \\
        --out /tmp/longqa-cite/raw_rag.jsonl
    # LC: questions of ours on a short real PDF, the whole document in the window
    flock /work/cpu.lock .venv/bin/python -m benchmarks.citation_collect lc \\
        --out /tmp/longqa-cite/raw_lc.jsonl

Each line holds the question, the model's raw answer (markers and all), and the sources it was
shown ([n], document, span, text) or, for LC, the whole document's path. Lines are appended as
they come, and a question already in ``--out`` is skipped, so a run can go in pieces.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.answering.citations import Source
from app.answering.modes import answer_lc, answer_rag, confirm, prompt_location
from app.answering.prompts import rag_messages, source_label
from app.service import QAService
from app.settings import Settings
from benchmarks.answer_quality import LARA, spread
from eval.lara import load_questions

ROOT = Path(__file__).resolve().parents[1]
SHARED = LARA.parent

# Questions of ours for LC mode on a short real document (5 pages, about 2,300 tokens).
LC_DOC = "pdf/docling_multi_page.pdf"
LC_QUESTIONS = [
    "When was the typewriter patented, and by whom?",
    "When was the IBM MT/ST introduced?",
    "What did the IBM MT/ST combine?",
    "When did IBM introduce the electric typewriter?",
    "What did Wang Laboratories introduce in the 1970s?",
    "When was WordPerfect released?",
    "What was the first word processing software for personal computers?",
    "When did Microsoft launch Word?",
    "How did cloud-based word processors change collaboration?",
    "What does the document say about artificial intelligence in word processing?",
    "Which company made the Wang 1200?",
    "What is the population of France?",
]


def _done(out: Path) -> set[str]:
    if not out.exists():
        return set()
    return {json.loads(line)["qid"] for line in out.read_text().splitlines() if line.strip()}


def _svc(args: argparse.Namespace) -> QAService:
    llm = {"model": args.model, "max_tokens": args.max_tokens, "recheck": False}
    return QAService(Settings(data_dir=Path(args.data_dir), llm=llm, embedding={"device": "cpu"}))


def run_rag(args: argparse.Namespace) -> None:
    qs = [q for q in spread(load_questions(LARA), args.skip + args.n)[args.skip :]]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(out)
    svc = _svc(args)
    paths = sorted({LARA / "32k" / q.kind / q.file for q in qs})
    svc.ingest(paths)
    by_path = {d.source_path: d.doc_id for d in svc.documents()}
    for q in qs:
        if q.qid in done:
            continue
        doc_id = by_path[str((LARA / "32k" / q.kind / q.file).resolve())]
        doc = svc.store.get_document(doc_id)
        hits = svc.retriever.retrieve(q.question, k=args.k, doc_ids=[doc_id])
        t0 = time.perf_counter()
        res = answer_rag(q.question, hits, {doc_id: doc}, svc.generator, max_tokens=args.max_tokens)
        ordered = sorted(hits, key=lambda r: (r.chunk.doc_id, r.chunk.span.start))
        sources = [Source(i, doc, r.chunk.span) for i, r in enumerate(ordered, start=1)]
        seconds = time.perf_counter() - t0
        entail: dict = {}
        if args.entail_claims:
            # The model's check as the app makes it in RAG (llm.entail_claims): each cited passage
            # and its claim in a prompt of their own; timed on its own.
            blocks = [
                (source_label(s.number, doc.title, prompt_location(doc, s.span)), s.text) for s in sources
            ]
            passages = {r.chunk.chunk_id: r.chunk.text for r in ordered}
            t1 = time.perf_counter()
            msgs = rag_messages(q.question, blocks)
            checked = confirm(res, msgs, svc.generator, args.entail_claims, "rag", passages, q.question)
            entail = {
                "seconds": round(time.perf_counter() - t1, 2),
                "calls": checked.calls - res.calls,
                "verdicts": [[c.number, c.verdict, c.claim] for c in checked.citations],
            }
        row = {
            "qid": q.qid,
            "mode": "rag",
            "task": q.task,
            "doc": f"lara/32k/{q.kind}/{q.file}",
            "question": q.question,
            "gold": q.answer,
            "raw": res.generation.text,
            "sources": [{"n": s.number, "span": [s.span.start, s.span.end], "text": s.text} for s in sources],
            "seconds": round(seconds, 2),
            "prompt_tokens": res.generation.prompt_tokens,
            "lexical": [[c.number, c.verdict, c.claim] for c in res.citations],
            "entail": entail,
        }
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(
            f"{q.qid}: {row['seconds']} s, check {entail.get('seconds')} s; {res.generation.text[:90]!r}",
            flush=True,
        )


def run_lc(args: argparse.Namespace) -> None:
    """LC on our PDF (``LC_QUESTIONS``), or with ``--doc`` on a LaRA document and its questions,
    cut in the middle to ``--max-doc-tokens`` (LaRA's LC baseline) so a 2-core machine reads it
    in minutes."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(out)
    rel = f"lara/32k/{args.doc}" if args.doc else LC_DOC
    svc = _svc(args)
    svc.ingest([SHARED / rel])
    (info,) = [d for d in svc.documents() if d.source_path.endswith(Path(rel).name)]
    doc = svc.store.get_document(info.doc_id)
    chunks = svc.store.chunks_of(doc.doc_id)
    questions = [(f"lc/{Path(LC_DOC).stem}/{i}", q, "ours", "") for i, q in enumerate(LC_QUESTIONS)]
    gen = svc.generator
    if args.doc:
        from app.answering.modes import PROMPT_OVERHEAD, QUESTION_ALLOWANCE
        from app.answering.prompts import LC_SYSTEM
        from app.catalog import load_catalog, resolve_generator
        from app.llm.llamacpp import LlamaCppGenerator

        kind, name = args.doc.split("/", 1)
        questions = [
            (f"lc:{q.qid}", q.question, q.task, q.answer)
            for q in load_questions(LARA, kinds=(kind,))
            if q.file == name
        ][: args.n]
        spec = load_catalog().generators[args.model]
        path = resolve_generator(spec, svc.settings.model_cache)
        window = args.max_doc_tokens + args.max_tokens + QUESTION_ALLOWANCE + PROMPT_OVERHEAD + 32
        window += gen.count_tokens(LC_SYSTEM)
        gen = LlamaCppGenerator(path, name=args.model, context_window=window)
    for qid, question, task, gold in questions:
        if qid in done:
            continue
        t0 = time.perf_counter()
        res = answer_lc(question, [doc], chunks, gen, max_tokens=args.max_tokens, overflow="middle_cut")
        row = {
            "qid": qid,
            "mode": "lc",
            "task": task,
            "doc": rel,
            "question": question,
            "gold": gold,
            "raw": res.generation.text,
            "sources": [],
            "seconds": round(time.perf_counter() - t0, 2),
            "prompt_tokens": res.generation.prompt_tokens,
        }
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{qid}: {row['seconds']} s; {res.generation.text[:90]!r}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["rag", "lc"])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--k", type=int, default=3, help="passages per RAG prompt")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--entail-claims", type=int, default=3, help="time the model's check (0: off)")
    ap.add_argument("--skip", type=int, default=0, help="start after this many spread questions")
    ap.add_argument("--data-dir", default="/tmp/longqa-cite/data")
    ap.add_argument("--doc", default="", help="lc: a LaRA document, e.g. 'book/The Pearl.txt'")
    ap.add_argument("--max-doc-tokens", type=int, default=3000, help="lc --doc: middle cut to this")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    (run_rag if args.cmd == "rag" else run_lc)(args)


if __name__ == "__main__":
    main()
