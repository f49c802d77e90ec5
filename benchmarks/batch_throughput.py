"""Batch throughput with the embedded model on this machine (figures in docs/batch.md).

    .venv/bin/python benchmarks/batch_throughput.py [--model qwen2.5-coder-1.5b] [--n 4]
        [--lc-questions 4] [--interleave] [--json out.json]

1. RAG-only and auto: ``--n`` LaRA 32k questions (location and reasoning) on each of two LaRA
   documents (a paper set and a financial statement), answered by ``run_batch`` in a fresh
   data directory; questions per minute = answered / wall time of the run. Ingest is timed
   apart (it is shared by every question on a document and paid once).
2. LC shared prefix: ``--lc-questions`` questions on one short real document (the bundled
   Gold-Bug opening, about 2k tokens) in LC mode. The batch runs them back to back, so the
   first reads the whole document and the follow-ups reuse its KV prefix; reported: first
   question's seconds, mean follow-up seconds, and the speed-up (first / follow-up).
   ``--interleave`` adds a control: the same questions asked directly, alternating with
   questions on a second short document, so no follow-up finds its prefix in the cache
   (unless a saved-KV cache serves it; the figures say what happened).

The machine is shared with other jobs; the figures are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LONGQA_SHARED_DATA", ROOT.parent / "shared" / "data"))
LARA_DOCS = (("paper", "32k_paper_1.md"), ("financial", "2024-Blue Star Foods Corp.-j.txt"))
SHORT_DOC = ROOT / "app" / "samples" / "gold-bug-opening.txt"
SECOND_DOC = SHARED / "pdf" / "docling_multi_page.pdf"
LC_QUESTIONS = (
    "Who is William Legrand?",
    "Where did Legrand live after leaving New Orleans?",
    "What is Sullivan's Island like?",
    "Who is Jupiter?",
    "What did Legrand collect on the island?",
    "Why did Legrand leave New Orleans?",
)
SECOND_QUESTIONS = (
    "When was the typewriter patented?",
    "What was the IBM MT/ST?",
    "What did Wang Laboratories introduce?",
    "When was Microsoft Word launched?",
    "What is WordPerfect?",
    "What are cloud-based word processors?",
)


def lara_questions(n: int) -> list[dict[str, str]]:
    out = []
    for kind, file in LARA_DOCS:
        picked: list[dict[str, str]] = []
        pools = []
        for task in ("location", "reasoning"):
            path = SHARED / "lara" / "query" / f"32k_{kind}_{task}.jsonl"
            rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            pools.append([r for r in rows if r["file"] == file])
        i = 0
        while len(picked) < n and any(i < len(p) for p in pools):
            for p in pools:
                if i < len(p) and len(picked) < n:
                    r = p[i]
                    picked.append({"question": r["question"], "doc": file, "level": r["level"]})
            i += 1
        out.extend(picked)
    return out


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--n", type=int, default=4, help="LaRA questions per document")
    ap.add_argument("--lc-questions", type=int, default=4)
    ap.add_argument("--interleave", action="store_true", help="also measure LC without shared prefixes")
    ap.add_argument("--skip-rag", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from app.batch.files import read_table
    from app.batch.run import BatchOptions, run_batch
    from app.service import QAService
    from app.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="longqa-batch-bench-"))
    settings = Settings(data_dir=work / "data")
    settings.llm.model = args.model
    settings.embedding.device = "cpu"
    svc = QAService(settings)
    t0 = time.perf_counter()
    _ = svc.generator
    load_s = time.perf_counter() - t0
    result: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "model": args.model,
        "max_tokens": settings.llm.max_tokens,
        "top_k": settings.retrieval.top_k,
        "model_load_s": round(load_s, 1),
    }
    print(json.dumps(result, indent=1), flush=True)

    if not args.skip_rag:
        docs = work / "lara"
        docs.mkdir()
        for kind, file in LARA_DOCS:
            (docs / file).write_bytes((SHARED / "lara" / "32k" / kind / file).read_bytes())
        t0 = time.perf_counter()
        report = svc.ingest([docs])
        result["ingest"] = {"documents": len(report.ingested), "chunks": report.chunks, "seconds": 0.0}
        result["ingest"]["seconds"] = round(time.perf_counter() - t0, 1)
        qfile = work / "lara.jsonl"
        write_jsonl(qfile, lara_questions(args.n))
        for mode in ("rag", "auto"):
            out = work / f"{mode}.csv"
            s = run_batch(svc, BatchOptions(qfile, out, docs, mode=mode))
            rows = read_table(out)
            secs = [float(r["seconds"]) for r in rows if r["status"] == "ok"]
            result[mode] = {
                "questions": s.answered,
                "failed": s.failed,
                "wall_s": s.seconds,
                "questions_per_minute": s.per_minute,
                "mean_s_per_question": round(statistics.mean(secs), 1) if secs else None,
                "modes": s.modes,
                "tokens": s.tokens,
                "reasons": sorted({r["reason"][:140] for r in rows if r["status"] == "ok"})[:3],
            }
            print(json.dumps({mode: result[mode]}, indent=1), flush=True)

    short = work / "short"
    short.mkdir()
    (short / SHORT_DOC.name).write_bytes(SHORT_DOC.read_bytes())
    qfile = work / "lc.jsonl"
    k = min(args.lc_questions, len(LC_QUESTIONS))
    write_jsonl(qfile, [{"question": q, "doc": SHORT_DOC.name} for q in LC_QUESTIONS[:k]])
    out = work / "lc.csv"
    s = run_batch(svc, BatchOptions(qfile, out, short, mode="lc"))
    rows = read_table(out)
    secs = [float(r["seconds"]) for r in rows]
    follow = secs[1:]
    result["lc_shared_prefix"] = {
        "document": SHORT_DOC.name,
        "doc_prompt_tokens": int(rows[0]["prompt_tokens"]),
        "questions": len(rows),
        "first_s": secs[0],
        "first_cached_tokens": int(rows[0]["cached_tokens"]),
        "follow_up_mean_s": round(statistics.mean(follow), 2) if follow else None,
        "follow_up_cached_tokens": [int(r["cached_tokens"]) for r in rows[1:]],
        "speedup_first_vs_follow_up": round(secs[0] / statistics.mean(follow), 1) if follow else None,
        "questions_per_minute": s.per_minute,
    }
    print(json.dumps({"lc_shared_prefix": result["lc_shared_prefix"]}, indent=1), flush=True)

    if args.interleave:
        svc.ingest([SECOND_DOC])
        by_path = {Path(d.source_path).name: d.doc_id for d in svc.documents()}
        a, b = by_path[SHORT_DOC.name], by_path[SECOND_DOC.name]
        times: list[float] = []
        cached: list[int] = []
        t0 = time.perf_counter()
        for qa, qb in zip(LC_QUESTIONS[:k], SECOND_QUESTIONS[:k]):
            for q, d in ((qa, a), (qb, b)):
                ans = svc.ask(q, mode="lc", doc_ids=[d])
                times.append(ans.usage.seconds)
                cached.append(ans.usage.cached_tokens)
        wall = time.perf_counter() - t0
        result["lc_interleaved"] = {
            "questions": len(times),
            "mean_s": round(statistics.mean(times), 2),
            "cached_tokens": cached,
            "questions_per_minute": round(len(times) / wall * 60, 2),
        }
        print(json.dumps({"lc_interleaved": result["lc_interleaved"]}, indent=1), flush=True)

    result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
