"""Does a claim's P(Yes) depend on what the engine read before it? (docs/citations.md, "Same
claim, same probability").

``ask``: the claims of a labelled set that the screen passes (verbatim copies aside: the app
does not ask about them) are asked in passage order, then in reverse; prints how many
probabilities are identical, the verdict flips at the threshold, the seconds per claim, and the
shipped rule's precision and recall on the set with the first pass's probabilities.
``compare``: the same counts for two ``citation_eval --entail-out`` files of one set.

    .venv/bin/python -m benchmarks.citation_stability ask --data benchmarks/data/citation_fresh4.jsonl
    .venv/bin/python -m benchmarks.citation_stability compare \\
        /tmp/longqa-cite/entail_fresh4_scored.jsonl /tmp/longqa-cite/entail_fresh4_scored_after.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.answering.citations import _MARKER, claim_of
from app.answering.entail import scored_messages, support_probability
from app.answering.verify import check, verbatim


def agreement(a: dict[str, float], b: dict[str, float], threshold: float) -> str:
    both = [k for k in a if k in b]
    diff = [abs(a[k] - b[k]) for k in both]
    flips = sum((a[k] >= threshold) != (b[k] >= threshold) for k in both)
    return (
        f"{len(both)} claims: {sum(d == 0 for d in diff)} identical, max |difference| "
        f"{max(diff, default=0.0):.4f}, verdict flips at {threshold}: {flips}"
    )


def cmd_ask(args: argparse.Namespace) -> None:
    from app.catalog import load_catalog, resolve_generator
    from app.llm.llamacpp import LlamaCppGenerator
    from app.settings import Settings

    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()]
    screen = {r["id"]: check(_MARKER.sub("", r["claim"]), r["passage"], r["question"]) for r in rows}
    copy = {r["id"]: verbatim(claim_of(r["claim"]), r["passage"]) for r in rows}
    ask = sorted(
        (r for r in rows if screen[r["id"]].verified and not copy[r["id"]]),
        key=lambda r: (r["passage"], r["id"]),
    )
    spec = load_catalog().generators[args.model]
    gen = LlamaCppGenerator(
        resolve_generator(spec, Settings().model_cache), name=args.model, context_window=2048
    )
    passes: list[dict[str, float]] = []
    for name, order in (("passage order", ask), ("reverse", ask[::-1])):
        t0, got, cached = time.perf_counter(), {}, 0
        for r in order:
            c = gen.first_token_probs(scored_messages(r["passage"], claim_of(r["claim"]), r["question"]))
            got[r["id"]] = support_probability(c.candidates)
            cached += c.generation.cached_tokens
        passes.append(got)
        each = (time.perf_counter() - t0) / max(1, len(order))
        print(f"{name}: {len(order)} claims, {each:.2f} s each, {cached} prompt tokens from the cache")
    print(agreement(passes[0], passes[1], args.threshold))
    shown = [
        r
        for r in rows
        if screen[r["id"]].verified and (copy[r["id"]] or passes[0].get(r["id"], 0) >= args.threshold)
    ]
    tp = sum(r["label"] for r in shown)
    print(
        f"shipped rule, first pass: {tp} true and {len(shown) - tp} false verified; precision "
        f"{100 * tp / max(1, len(shown)):.1f}%, recall {100 * tp / sum(r['label'] for r in rows):.1f}%"
    )


def cmd_compare(args: argparse.Namespace) -> None:
    a, b = ({e["id"]: e["p"] for e in map(json.loads, Path(f).read_text().splitlines())} for f in args.files)
    print(agreement(a, b, args.threshold))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=0.6)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ask")
    a.add_argument("--data", required=True)
    a.add_argument("--model", default="qwen2.5-coder-1.5b")
    c = sub.add_parser("compare")
    c.add_argument("files", nargs=2)
    args = ap.parse_args()
    {"ask": cmd_ask, "compare": cmd_compare}[args.cmd](args)


if __name__ == "__main__":
    main()
