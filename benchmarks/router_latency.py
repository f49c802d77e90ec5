"""How long a routing decision takes: the router alone over every LaRA 32k question, and
QAService.decide (document tokens, the cached-prefix probe, the router) on a LaRA document, with
the retrieval that the shipped policy weighs timed on its own (its passages answer RAG questions).

    .venv/bin/python benchmarks/router_latency.py [--model qwen2.5-coder-1.5b] [--doc book/The Pearl.txt]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.routing.router import RouteInputs, load_policy, load_qtype, model_profile, route  # noqa: E402
from eval.lara import load_questions  # noqa: E402


def stats(ms: list[float]) -> str:
    s = sorted(ms)
    return (
        f"median {statistics.median(s):.2f} ms, p99 {s[int(0.99 * (len(s) - 1))]:.2f} ms, max {s[-1]:.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lara", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument(
        "--model",
        default="qwen2.5-coder-1.5b",
        help="generator for the service-level timing (its window must hold the document)",
    )
    ap.add_argument("--doc", default="book/The Pearl.txt")
    ap.add_argument("--service-questions", type=int, default=20)
    ap.add_argument(
        "--latency-budget",
        type=float,
        default=1e9,
        help="router.latency_budget_s for the service timing (default: none, so the learned policy decides)",
    )
    args = ap.parse_args()
    questions = load_questions(args.lara)
    load_policy(), load_qtype()  # loaded once per process, like the service does
    ms = []
    for q in questions:
        t0 = time.perf_counter()
        route(
            RouteInputs(
                doc_tokens=30000,
                window=131072,
                reserved_tokens=456,
                prefill_tokens_per_s=2000.0,
                cached_tokens=0,
                latency_budget_s=60.0,
                question=q.question,
                model=model_profile("qwen2.5-7b-instruct"),
                doc_digit_share=0.02,
            )
        )
        ms.append((time.perf_counter() - t0) * 1000)
    print(f"router alone, {len(ms)} LaRA questions: {stats(ms)}")

    from app.service import QAService
    from app.settings import Settings

    with tempfile.TemporaryDirectory() as home:
        s = Settings(data_dir=Path(home), embedding={"device": "cpu"})
        s.llm.model = args.model
        s.router.latency_budget_s = args.latency_budget
        svc = QAService(s)
        svc.ingest([args.lara / "32k" / args.doc])
        docs = [svc.store.get_document(d.doc_id) for d in svc.documents()]
        svc.decide("warm-up?", docs, "auto")  # counts the document's tokens once (cached after)
        ms, ret_ms, both_ms, policy_ran = [], [], [], 0
        for q in [q for q in questions if q.doc_key == args.doc][: args.service_questions]:
            t0 = time.perf_counter()
            _hits, evidence = svc.retrieve_for_router(q.question, docs)
            t1 = time.perf_counter()
            d = svc.decide(q.question, docs, "auto", evidence)
            ms.append((time.perf_counter() - t1) * 1000)
            ret_ms.append((t1 - t0) * 1000)
            both_ms.append(ms[-1] + ret_ms[-1])
            policy_ran += d.facts is not None and d.facts.p_lc_better is not None
        n = svc.doc_tokens(docs)
        print(
            f"QAService.decide on {args.doc} ({n:,} {args.model} tokens), {len(ms)} questions "
            f"(learned policy consulted for {policy_ran}): {stats(ms)}"
        )
        print(f"retrieval for the policy's evidence (reused by RAG answers): {stats(ret_ms)}")
        print(f"retrieval + decision: {stats(both_ms)}")
        svc.close()


if __name__ == "__main__":
    main()
