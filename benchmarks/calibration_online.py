"""Does ``longqa calibrate``'s profile change routing, and is the change for the better?
An online before/after check with the configured (embedded) model on held-out LaRA questions.

    .venv/bin/python benchmarks/calibration_online.py --profile /tmp/calib/router_profile.json \\
        --offset 40 --limit 24 --lengths 4000,8000 [--out ~/.cache/longqa/bench/calib-online] \\
        [--budget-minutes 20]

Questions: LaRA 32k taken in turns over task types, skipping the first ``--offset`` (those
``longqa calibrate --limit 40`` measured), documents cut as calibrate cuts them
(``eval.calibrate.cut_items``). Each question is routed twice by the service's own ``decide``
(auto mode, the same retrieval evidence): *before* with the model's published or class-prior
profile, *after* with the calibrated profile file. Where the two routes differ, the question is
answered in both modes through the eval runner (resumable: results.jsonl in --out) and judged
by the deterministic judge; where they agree the answer would be the same, so the accuracy
difference over all questions is exact from the changed ones alone. The Self-Route fallback that
may follow a RAG answer is left out (it does not read the profile). Writes report.json in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.routing.profiles import CALIBRATED_FILE  # noqa: E402
from app.service import QAService  # noqa: E402
from eval.calibrate import cut_items  # noqa: E402
from eval.calibrate_cli import parse_lengths  # noqa: E402
from eval.datasets import load_lara  # noqa: E402
from eval.runner import (  # noqa: E402
    CONTEXTS,
    RESULTS,
    ResultStore,
    RunOptions,
    materialize_contexts,
    resolve_documents,
    run_eval,
)  # noqa: E402
from eval.terminal import settings_for  # noqa: E402

CACHE = Path.home() / ".cache" / "longqa" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument(
        "--profile", type=Path, required=True, help="router_profile.json written by longqa calibrate"
    )
    ap.add_argument("--offset", type=int, default=40)
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--lengths", default="4000,8000")
    ap.add_argument("--model", default=None)
    ap.add_argument("--budget-minutes", type=float, default=None)
    ap.add_argument("--out", type=Path, default=CACHE / "calib-online")
    args = ap.parse_args()
    t0 = time.perf_counter()
    items = load_lara(args.lara, limit=args.offset + args.limit)[args.offset :]
    items = cut_items(items, parse_lengths(args.lengths))
    args.out.mkdir(parents=True, exist_ok=True)
    settings = settings_for(args.out / "library", None, args.model, None, None)
    svc = QAService(settings)
    items = materialize_contexts(items, args.out / CONTEXTS)
    doc_ids, errors = resolve_documents(svc, items)
    target = Path(settings.data_dir) / CALIBRATED_FILE
    routes: dict[str, dict[str, str]] = {}
    for label in ("before", "after"):
        if label == "after":
            shutil.copyfile(args.profile, target)
        else:
            target.unlink(missing_ok=True)
        print(
            f"profile {label}: {svc.router_profile().source} {svc.router_profile().measured_at or ''}",
            flush=True,
        )
        for it in items:
            if it.doc in errors:
                continue
            docs = svc._scope([doc_ids[it.doc]])
            _, evidence = svc.retrieve_for_router(it.question, docs)
            d = svc.decide(it.question, docs, "auto", evidence)
            routes.setdefault(it.item_id, {})[label] = d.mode
    changed = [
        it
        for it in items
        if it.item_id in routes and routes[it.item_id]["before"] != routes[it.item_id]["after"]
    ]
    print(f"{len(changed)} of {len(routes)} routes changed; answering them in both modes", flush=True)
    store = ResultStore(args.out / RESULTS)
    summary = run_eval(
        svc,
        changed,
        store,
        RunOptions(modes=("rag", "lc"), retrieval_recall=False),
        budget_s=None if args.budget_minutes is None else args.budget_minutes * 60,
    )
    verdict: dict[tuple[str, str], bool | None] = {}
    for r in store.all():
        if r.ok:
            verdict[(r.item_id, r.mode_requested)] = r.correct
    per = []
    gained = lost = judged = 0
    for it in changed:
        b, a = routes[it.item_id]["before"], routes[it.item_id]["after"]
        vb, va = verdict.get((it.item_id, b)), verdict.get((it.item_id, a))
        if vb is not None and va is not None:
            judged += 1
            gained += int(va and not vb)
            lost += int(vb and not va)
        per.append(
            {"item": it.item_id, "task": it.task, "before": b, "after": a, "before_ok": vb, "after_ok": va}
        )
    n = len(routes)
    lc_before = sum(r["before"] == "lc" for r in routes.values())
    lc_after = sum(r["after"] == "lc" for r in routes.values())
    report = {
        "model": svc.generator.name,
        "questions": n,
        "lengths": args.lengths,
        "routes_changed": len(changed),
        "lc_share_before": lc_before / max(n, 1),
        "lc_share_after": lc_after / max(n, 1),
        "changed_judged": judged,
        "gained": gained,
        "lost": lost,
        "accuracy_change_points": 100 * (gained - lost) / max(n, 1),
        "answered_now": summary.answered,
        "seconds": round(time.perf_counter() - t0, 1),
        "per_question": per,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "per_question"}, indent=1))


if __name__ == "__main__":
    main()
