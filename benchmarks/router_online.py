"""Online router check with the embedded model on a sample of LaRA 32k documents:
routed vs always-RAG vs always-LC accuracy, and prompt tokens relative to always-LC.

    .venv/bin/python benchmarks/router_online.py --docs 2 --per-task 1 \
        [--model qwen2.5-coder-1.5b] [--max-doc-tokens 16000] [--out ~/.cache/longqa/bench/online]

The shortest documents (in the generator's tokens) are taken, so that the whole document fits
the model's window; questions are taken per task type. It runs through the eval harness
(results.jsonl, report.md in --out; rerun to resume). Answers are judged by the deterministic
judge. On 2 CPU cores a long-context answer needs minutes of prefill per document (the KV
cache is reused across the questions of one document), so keep the sample small.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.service import QAService  # noqa: E402
from app.settings import Settings  # noqa: E402
from eval.datasets import load_lara  # noqa: E402
from eval.lara import TASKS  # noqa: E402
from eval.metrics import compute  # noqa: E402
from eval.report import write_report  # noqa: E402
from eval.runner import RESULTS, ResultStore, RunOptions, run_eval  # noqa: E402

CACHE = Path.home() / ".cache" / "longqa" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--docs", type=int, default=2)
    ap.add_argument("--per-task", type=int, default=1)
    ap.add_argument("--max-doc-tokens", type=int, default=16000)
    ap.add_argument("--max-tokens", type=int, default=160, help="answer length")
    ap.add_argument("--out", type=Path, default=CACHE / "online")
    args = ap.parse_args()
    t0 = time.perf_counter()
    settings = Settings(data_dir=args.out / "library", embedding={"device": "cpu"})
    settings.llm.model = args.model
    settings.llm.max_tokens = args.max_tokens
    # The learned policy decides, not the latency rule: a cold 12k-token read is minutes here.
    settings.router.latency_budget_s = 1e6
    svc = QAService(settings)
    gen = svc.generator
    items = load_lara(args.lara)
    sizes: dict[str, int] = {}
    for it in items:
        if it.doc not in sizes:
            sizes[it.doc] = gen.count_tokens(Path(it.doc).read_text(encoding="utf-8"))
    limit = min(args.max_doc_tokens, int(gen.context_window * 0.85))
    kind_of = {it.doc: it.kind for it in items}
    # The shortest fitting document of each kind in turn (book, financial, paper, book, ...).
    by_kind: dict[str, list[str]] = {}
    for _n, d in sorted((n, d) for d, n in sizes.items() if n <= limit):
        by_kind.setdefault(kind_of[d], []).append(d)
    chosen: list[str] = []
    while len(chosen) < args.docs and any(by_kind.values()):
        for docs in by_kind.values():
            if docs and len(chosen) < args.docs:
                chosen.append(docs.pop(0))
    sample = []
    for d in chosen:
        for t in TASKS:
            sample += [it for it in items if it.doc == d and it.task == t][: args.per_task]
    print(
        f"{len(sample)} questions on {', '.join(f'{Path(d).name} ({sizes[d]:,} tokens)' for d in chosen)}",
        file=sys.stderr,
    )
    store = ResultStore(args.out / RESULTS)
    summary = run_eval(
        svc,
        sample,
        store,
        RunOptions(modes=("lc", "auto", "rag")),
        progress=lambda d, t, w: print(f"[{time.perf_counter() - t0:7.0f} s] {d}/{t} {w}", file=sys.stderr),
    )
    rows = [r for r in store.all() if r.item_id in {it.item_id for it in sample}]
    metrics = compute(rows)
    write_report(metrics, rows, args.out, title="longqa online router check", config={"model": args.model})
    lc = metrics.cell("lc")
    print(f"\n{summary.answered} answered, {summary.errors} errors, {summary.seconds:.0f} s\n")
    print("| mode | accuracy | answered | prompt tokens (mean) | x always-LC | latency mean (s) | LC share |")
    print("|---|---|---|---|---|---|---|")
    for m in ("rag", "lc", "auto"):
        c = metrics.cell(m)
        if c is None or not c.n:
            continue
        ratio = c.prompt_tokens / lc.prompt_tokens if lc and lc.prompt_tokens else float("nan")
        print(
            f"| {m} | {c.accuracy:.1f}% | {c.n} | {c.prompt_tokens:,.0f} | {ratio:.0%} | "
            f"{c.latency_mean:.1f} | {c.lc_share:.0f}% |"
        )
    auto = [r for r in rows if r.mode_requested == "auto" and r.ok]
    decisions = [r.route_features.get("p_lc_better") for r in auto]
    modes = [r.mode + ("+fallback" if r.fallback else "") for r in auto]
    print(f"\nrouted decisions: {modes}; scores {decisions}")
    (args.out / "online.json").write_text(json.dumps({"sample": [it.item_id for it in sample]}, indent=1))
    svc.close()


if __name__ == "__main__":
    main()
