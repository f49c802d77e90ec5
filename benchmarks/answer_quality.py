"""Answer latency and citation verification on LaRA 32k questions, in RAG and LC mode.

    # RAG: N questions spread over kinds (book, financial, paper) and tasks
    .venv/bin/python -m benchmarks.answer_quality rag --n 100 --out /tmp/longqa-bench/rag.jsonl
    # LC: every question of one document, read once (middle cut to --max-doc-tokens when set)
    .venv/bin/python -m benchmarks.answer_quality lc --doc "book/The Old Man and The Sea.txt" \\
        --max-doc-tokens 8000 --kv-dir /tmp/longqa-kv-bench8k --out /tmp/longqa-bench/lc.jsonl

One JSON line per question is appended to ``--out`` as it is answered (a run can be stopped
and its lines still count); ``summary`` prints the figures of such a file:

    .venv/bin/python -m benchmarks.answer_quality summary /tmp/longqa-bench/rag.jsonl

Verification rate = verified citations / citations shown (answers that say "the document
does not say" show none). ``quote_supports_claim`` counts the citations whose quote alone
passes the same support rule for the answer sentences that cite it (a stricter check than
``verified``, which looks at the whole cited chunk). See docs/answering.md for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from app.answering.citations import strip_markers, supports
from app.answering.modes import PROMPT_OVERHEAD, QUESTION_ALLOWANCE, answer_lc
from app.answering.prompts import LC_SYSTEM
from app.refusals import is_not_found_reply
from app.service import QAService
from app.settings import Settings
from eval.judge import DeterministicJudge
from eval.lara import Question, load_questions
from pipeline.textspan import sentence_spans
from pipeline.types import Answer, FirstDraft

ROOT = Path(__file__).resolve().parents[1]
LARA = Path(os.environ.get("LONGQA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lara"


def spread(questions: list[Question], n: int) -> list[Question]:
    """``n`` questions taken in turn from each (kind, task) group, in file order."""
    groups: dict[tuple[str, str], list[Question]] = {}
    for q in questions:
        if q.file:
            groups.setdefault((q.kind, q.task), []).append(q)
    out: list[Question] = []
    i = 0
    while len(out) < n and any(i < len(g) for g in groups.values()):
        out.extend(g[i] for g in groups.values() if i < len(g))
        i += 1
    return out[:n]


JUDGE = DeterministicJudge()


def record(
    q: Question,
    mode: str,
    text: str,
    cites: list,  # type: ignore[type-arg]
    seconds: float,
    draft: FirstDraft | None = None,
    **extra: object,
) -> dict:  # type: ignore[type-arg]
    first = list(draft.citations) if draft is not None else cites
    return {
        "qid": q.qid,
        "mode": mode,
        "task": q.task,
        "question": q.question,
        "gold": q.answer,
        "answer": text,
        "seconds": round(seconds, 2),
        "shown": len(cites),
        "verified": sum(1 for c in cites if c.verified),
        "citations": [
            {"n": c.number, "verified": c.verified, "origin": c.origin, "quote": c.quote} for c in cites
        ],
        # The answer before its re-check (the app's llm.recheck), when there was one.
        "rechecked": draft is not None,
        "first_draft": draft.text if draft is not None else None,
        "first_shown": len(first),
        "first_verified": sum(1 for c in first if c.verified),
        "correct": JUDGE.judge(q.question, text, q.answer, q.task).correct,
        **extra,
    }


def settings_for(args: argparse.Namespace, data_dir: Path) -> Settings:
    llm = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "decode_threads": args.decode_threads or None,
        "recheck": not args.no_recheck,
    }
    return Settings(data_dir=data_dir, llm=llm, embedding={"device": "cpu"})


def run_rag(args: argparse.Namespace) -> None:
    qs = spread(load_questions(LARA), args.n)
    out = Path(args.out)
    done = {json.loads(line)["qid"] for line in out.read_text().splitlines()} if out.exists() else set()
    svc = QAService(settings_for(args, Path(args.data_dir)))
    paths = sorted({LARA / "32k" / q.kind / q.file for q in qs})
    svc.ingest(paths)
    by_path = {d.source_path: d.doc_id for d in svc.documents()}
    for q in qs:
        if q.qid in done:
            continue
        doc_id = by_path[str((LARA / "32k" / q.kind / q.file).resolve())]
        ans: Answer = svc.ask(q.question, mode="rag", doc_ids=[doc_id])
        row = record(
            q,
            "rag",
            ans.text,
            list(ans.citations),
            ans.usage.seconds,
            ans.first_draft,
            prompt_tokens=ans.usage.prompt_tokens,
        )
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        ok = f"{row['verified']}/{row['shown']} verified"
        print(f"{q.qid}: {ans.usage.seconds:.1f} s, {ok}; {ans.text[:70]!r}", flush=True)
    summary(out)


def run_lc(args: argparse.Namespace) -> None:
    from app.llm.kvcache import PrefixStateCache
    from app.llm.llamacpp import LlamaCppGenerator

    kind, name = args.doc.split("/", 1)
    qs = [q for q in load_questions(LARA, kinds=(kind,)) if q.file == name]
    svc = QAService(settings_for(args, Path(args.data_dir)))
    svc.ingest([LARA / "32k" / kind / name])
    (info,) = [d for d in svc.documents() if d.source_path.endswith(name)]
    doc = svc.store.get_document(info.doc_id)
    chunks = svc.store.chunks_of(doc.doc_id)
    from app.catalog import load_catalog, resolve_generator

    spec = load_catalog().generators[args.model]
    path = resolve_generator(spec, svc.settings.model_cache)
    window = spec.context_window
    if args.max_doc_tokens:  # a window whose LC capacity is exactly max_doc_tokens
        vocab = LlamaCppGenerator(path, context_window=512, threads=1)
        system = vocab.count_tokens(LC_SYSTEM)
        vocab.close()
        window = args.max_doc_tokens + args.max_tokens + system + QUESTION_ALLOWANCE + PROMPT_OVERHEAD + 32
    cache = PrefixStateCache(args.kv_dir, ram_bytes=4 << 30, disk_bytes=16 << 30)
    gen = LlamaCppGenerator(
        path,
        name=args.model,
        context_window=window,
        decode_threads=args.decode_threads or None,
        kv_cache=cache,
    )
    out = Path(args.out)
    done = {json.loads(line)["qid"] for line in out.read_text().splitlines()} if out.exists() else set()
    for q in qs:
        if q.qid in done:
            continue
        t0 = time.perf_counter()
        res = answer_lc(
            q.question,
            [doc],
            chunks,
            gen,
            max_tokens=args.max_tokens,
            overflow="middle_cut",
            recheck=not args.no_recheck,
        )
        g = res.generation
        row = record(
            q,
            "lc",
            res.text,
            res.citations,
            time.perf_counter() - t0,
            res.first_draft,
            ttft_s=round(g.first_token_s, 2),
            prompt_tokens=g.prompt_tokens,
            cached_tokens=g.cached_tokens,
            strategy=res.strategy,
        )
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        ok = f"{row['verified']}/{row['shown']} verified"
        print(f"{q.qid}: TTFT {g.first_token_s:.1f} s, {ok}; {res.text[:70]!r}", flush=True)
    summary(out)


def quote_supports(answer: str, n: int, quote: str) -> bool:
    """Stricter than ``verified`` (claim words found in the cited chunk): the quote shown,
    by itself, supports the sentences of the answer that cite it."""
    sentences = [answer[a:b] for a, b in sentence_spans(answer) if f"[{n}]" in answer[a:b]]
    return supports(strip_markers(" ".join(sentences)), quote)


def summary(path: Path) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        print("no answers yet")
        return
    secs = sorted(r["seconds"] for r in rows)
    shown = sum(r["shown"] for r in rows)
    verified = sum(r["verified"] for r in rows)
    p95 = secs[min(len(secs) - 1, round(0.95 * (len(secs) - 1)))]
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "mode": rows[0]["mode"],
        "questions": len(rows),
        "latency_p50_s": round(statistics.median(secs), 1),
        "latency_p95_s": round(p95, 1),
        "citations_shown": shown,
        "citations_verified": verified,
        "verification_rate": round(verified / shown, 3) if shown else None,
        "quote_supports_claim": sum(
            quote_supports(r["answer"], c["n"], c["quote"]) for r in rows for c in r["citations"]
        ),
        "answers_with_citations": sum(1 for r in rows if r["shown"]),
        "rechecked": sum(1 for r in rows if r.get("rechecked")),
        "first_try_shown": sum(r.get("first_shown", r["shown"]) for r in rows),
        "first_try_verified": sum(r.get("first_verified", r["verified"]) for r in rows),
        "judged_correct": sum(1 for r in rows if r.get("correct"))
        if all("correct" in r for r in rows)
        else None,
        # The same judge on the answers as they were before any re-check (the answer, when none).
        "first_try_judged_correct": sum(
            JUDGE.judge(r["question"], r.get("first_draft") or r["answer"], r["gold"], r["task"]).correct
            for r in rows
        ),
        "refusals": sum(1 for r in rows if is_not_found_reply(r["answer"])),
        "by_origin": {
            o: sum(1 for r in rows for c in r["citations"] if c["origin"] == o)
            for o in sorted({c["origin"] for r in rows for c in r["citations"]})
        },
    }
    if any("ttft_s" in r for r in rows):
        ttft = sorted(r["ttft_s"] for r in rows)
        out["ttft_p50_s"] = round(statistics.median(ttft), 2)
    print(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("rag", "lc"):
        p = sub.add_parser(cmd)
        p.add_argument("--model", default="qwen2.5-coder-1.5b")
        p.add_argument("--max-tokens", type=int, default=128)
        p.add_argument("--decode-threads", type=int, default=0, help="default: all cores")
        p.add_argument("--data-dir", default="/tmp/longqa-bench/data")
        p.add_argument("--out", required=True)
        p.add_argument("--no-recheck", action="store_true", help="answer once (llm.recheck off)")
    sub.choices["rag"].add_argument("--n", type=int, default=100)
    sub.choices["lc"].add_argument("--doc", default="book/The Old Man and The Sea.txt")
    sub.choices["lc"].add_argument("--max-doc-tokens", type=int, default=0)
    sub.choices["lc"].add_argument("--kv-dir", default="/tmp/longqa-kv-bench")
    p = sub.add_parser("summary")
    p.add_argument("path")
    args = ap.parse_args()
    if args.cmd == "rag":
        run_rag(args)
    elif args.cmd == "lc":
        run_lc(args)
    else:
        summary(Path(args.path))


if __name__ == "__main__":
    main()
