"""Prefill and decode speed of the embedded engines, side by side on this machine.

Runs the same QA prompt (a LaRA document cut to about --prompt-tokens tokens, plus a question)
on each engine in turn, alternating A B A B ... so that load from other processes falls on both
alike, with the prompt cache cleared between runs (each run reads the whole prompt). Reports
the median prefill and decode tokens/s per engine, as the engine itself timed them, and the
ratio of the default engine to the fastest.

    .venv/bin/python benchmarks/engine_speed.py --engines xllamacpp,native --rounds 3
    .venv/bin/python benchmarks/engine_speed.py --engines xllamacpp,xllamacpp-safe --model smollm2-135m

Engines: xllamacpp (the default), native (scripts/build-native-engine.sh), and either with
"-safe" (fast paths off: no repacked weights, no AMX) and/or "-pollN" (idle threads spin at
level N, 0-100; the default is llm.poll = 0, llama.cpp's own default is 50).

    .venv/bin/python benchmarks/engine_speed.py --engines xllamacpp,xllamacpp-poll50,native,native-poll50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.catalog import load_catalog, resolve_generator  # noqa: E402
from app.llm.base import Message  # noqa: E402
from app.llm.engine import cpu_summary  # noqa: E402
from app.llm.llamacpp import LlamaCppGenerator  # noqa: E402
from app.settings import Settings  # noqa: E402

DOC = ROOT.parent / "shared" / "data" / "lara" / "32k" / "paper"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="xllamacpp,native")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--prompt-tokens", type=int, default=1200)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--competing",
        type=int,
        default=0,
        help="run this many busy processes alongside (a shared machine: an embedder, another job)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    spec = load_catalog().generators[args.model]
    path = resolve_generator(spec, Settings().model_cache)
    docs = sorted(DOC.glob("*.txt")) or sorted((ROOT / "app" / "samples").glob("*.txt"))
    text = docs[0].read_text(encoding="utf-8", errors="replace")
    gens: dict[str, LlamaCppGenerator] = {}
    for name in args.engines.split(","):
        kind, *flags = name.split("-")
        polls = [int(f[4:]) for f in flags if f.startswith("poll")]
        gens[name] = LlamaCppGenerator(
            path,
            name=args.model,
            context_window=4096,
            threads=args.threads,
            engine=kind,  # type: ignore[arg-type]
            safe="safe" in flags,
            poll=polls[0] if polls else 0,
            state_dir=Path(tempfile.mkdtemp()),
        )
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competing)]
    any_gen = next(iter(gens.values()))
    words = text.split()
    cut = " ".join(words[: int(args.prompt_tokens * 0.7)])
    while any_gen.count_tokens(cut) > args.prompt_tokens and len(cut) > 1000:
        cut = cut[: int(len(cut) * 0.95)]
    results: dict[str, dict[str, list[float]]] = {n: {"prefill": [], "decode": []} for n in gens}
    for r in range(args.rounds):
        for name, gen in gens.items():
            # A different first line each run: nothing of the prompt is cached anywhere.
            msgs = [
                Message("system", f"Run {r} {time.time_ns()}. Answer from the document.\n\n{cut}"),
                Message("user", "Summarise the main contribution of this document in three sentences."),
            ]
            out = gen.generate(msgs, max_tokens=args.max_tokens)
            results[name]["prefill"].append(gen._speed.last_prefill)
            results[name]["decode"].append(gen._speed.last_decode)
            print(
                f"round {r + 1} {name:16s} prompt {out.prompt_tokens} tokens: "
                f"prefill {gen._speed.last_prefill:6.1f} tok/s, decode {gen._speed.last_decode:5.1f} tok/s",
                flush=True,
            )
    table = {
        n: {k: round(statistics.median(v), 1) for k, v in res.items()}
        | {"engine": gens[n].engine_label + f", poll {gens[n]._config.poll}"}
        for n, res in results.items()
    }
    best_p = max(t["prefill"] for t in table.values())  # type: ignore[type-var]
    best_d = max(t["decode"] for t in table.values())  # type: ignore[type-var]
    for b in busy:
        b.kill()
    print(
        f"\nCPU: {cpu_summary()}, {args.threads} threads, model {args.model}, median of {args.rounds}, "
        f"{args.competing} competing busy processes"
    )
    print("| engine | prefill tok/s | decode tok/s | prefill vs fastest | decode vs fastest |")
    print("|---|---|---|---|---|")
    for t in table.values():
        rel_p = 100 * float(t["prefill"]) / float(best_p)
        rel_d = 100 * float(t["decode"]) / float(best_d)
        print(f"| {t['engine']} | {t['prefill']} | {t['decode']} | {rel_p:.0f}% | {rel_d:.0f}% |")
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu_summary(), "args": vars(args) | {"out": str(args.out)},
                                        "table": table}, indent=1))  # fmt: skip
    for g in gens.values():
        g.close()


if __name__ == "__main__":
    main()
