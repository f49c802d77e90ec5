"""Retrieval evidence for every LaRA 32k question (top score, score gap, scatter of the top
passages), with longqa's own ingest and hybrid retriever, cached as JSON for the router study.

    .venv/bin/python benchmarks/router_retrieval.py --home ~/.cache/longqa/bench/lara-home \
        --out ~/.cache/longqa/bench/lara_retrieval.json

The first run ingests the 64 documents into --home (about 8,300 chunks; minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.service import QAService  # noqa: E402
from app.settings import Settings  # noqa: E402
from eval.lara import document_path, load_questions  # noqa: E402
from pipeline.types import Document  # noqa: E402

CACHE = Path.home() / ".cache" / "longqa" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument("--home", type=Path, default=CACHE / "lara-home")
    ap.add_argument("--out", type=Path, default=CACHE / "lara_retrieval.json")
    ap.add_argument("--k", type=int, default=6)
    args = ap.parse_args()
    t0 = time.perf_counter()
    svc = QAService(Settings(data_dir=args.home, embedding={"device": "cpu"}))
    questions = load_questions(args.lara)
    paths = sorted({document_path(args.lara, q) for q in questions})
    report = svc.ingest(paths)
    print(f"ingest: {report.summary()} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    ids = {str(Path(d.source_path).resolve()): d.doc_id for d in svc.documents()}
    docs: dict[str, Document] = {}
    evidence = {}
    t1 = time.perf_counter()
    for i, q in enumerate(questions):
        doc_id = ids[str(document_path(args.lara, q).resolve())]
        if doc_id not in docs:
            docs[doc_id] = svc.store.get_document(doc_id)
        # The service's own code, so that the study learns from what the router sees at question time.
        _hits, ev = svc.retrieve_for_router(q.question, [docs[doc_id]], k=args.k)
        if ev is not None:
            evidence[q.qid] = asdict(ev)
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(questions)} questions", file=sys.stderr)
    per_q = (time.perf_counter() - t1) / len(questions)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "retrieval": f"{svc.settings.retrieval.method} top-{args.k}, {svc.settings.embedding.model}",
                "seconds_per_question": round(per_q, 4),
                "evidence": evidence,
            }
        )
        + "\n"
    )
    print(f"wrote {len(evidence)} questions to {args.out} ({per_q * 1000:.0f} ms per retrieval)")
    svc.close()


if __name__ == "__main__":
    main()
