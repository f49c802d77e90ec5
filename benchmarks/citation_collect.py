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
from app.answering.modes import answer_lc, answer_rag
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
        row = {
            "qid": q.qid,
            "mode": "rag",
            "task": q.task,
            "doc": f"lara/32k/{q.kind}/{q.file}",
            "question": q.question,
            "gold": q.answer,
            "raw": res.generation.text,
            "sources": [{"n": s.number, "span": [s.span.start, s.span.end], "text": s.text} for s in sources],
            "seconds": round(time.perf_counter() - t0, 2),
            "prompt_tokens": res.generation.prompt_tokens,
        }
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{q.qid}: {row['seconds']} s; {res.generation.text[:90]!r}", flush=True)


def run_lc(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(out)
    svc = _svc(args)
    path = SHARED / LC_DOC
    svc.ingest([path])
    (info,) = [d for d in svc.documents() if d.source_path.endswith(Path(LC_DOC).name)]
    doc = svc.store.get_document(info.doc_id)
    chunks = svc.store.chunks_of(doc.doc_id)
    for i, question in enumerate(LC_QUESTIONS):
        qid = f"lc/{Path(LC_DOC).stem}/{i}"
        if qid in done:
            continue
        t0 = time.perf_counter()
        res = answer_lc(question, [doc], chunks, svc.generator, max_tokens=args.max_tokens)
        row = {
            "qid": qid,
            "mode": "lc",
            "task": "ours",
            "doc": LC_DOC,
            "question": question,
            "gold": "",
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
    ap.add_argument("--skip", type=int, default=0, help="start after this many spread questions")
    ap.add_argument("--data-dir", default="/tmp/longqa-cite/data")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    (run_rag if args.cmd == "rag" else run_lc)(args)


if __name__ == "__main__":
    main()
