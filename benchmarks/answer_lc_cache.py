"""Read a document once: cold LC prefill of a LaRA 32k document, then time to first token of
follow-up questions on it (live KV cache, and after a restart from the saved state on disk).

    .venv/bin/python -m benchmarks.answer_lc_cache                      # default 1.5B, whole document
    .venv/bin/python -m benchmarks.answer_lc_cache --max-doc-tokens 8000 --model smollm2-135m

Writes a JSON record (``--out``) and prints a summary; progress of the cold prefill is
logged every 2,048 tokens. See docs/answering.md for figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from app.answering.modes import middle_cut
from app.answering.prompts import lc_messages
from app.catalog import load_catalog, resolve_generator
from app.llm.kvcache import PrefixStateCache
from app.llm.llamacpp import LlamaCppGenerator
from app.settings import Settings
from eval.lara import load_questions
from pipeline.loaders import load_document

ROOT = Path(__file__).resolve().parents[1]
LARA = Path(os.environ.get("LONGQA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lara"
DEFAULT_DOC = "financial/2024-Cepton, Inc.-j.txt"


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--doc", default=DEFAULT_DOC, help="LaRA 32k document, kind/file")
    ap.add_argument("--max-doc-tokens", type=int, default=0, help="cut the document to this many tokens")
    ap.add_argument("--window", type=int, default=0, help="context window; default: the catalog's")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--kv-dir", default="", help="saved states go here; default: a fresh temp dir")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    settings = Settings()
    spec = load_catalog().generators[args.model]
    path = resolve_generator(spec, settings.model_cache)
    window = args.window or spec.context_window
    kv_dir = Path(args.kv_dir or tempfile.mkdtemp(prefix="longqa-kv-"))
    kind, name = args.doc.split("/", 1)
    doc = load_document(LARA / "32k" / kind / name)
    questions = [q.question for q in load_questions(LARA, kinds=(kind,)) if q.file == name][:3]
    if len(questions) < 3:
        raise SystemExit(f"'{args.doc}' has fewer than 3 LaRA questions")

    def make() -> LlamaCppGenerator:
        cache = PrefixStateCache(kv_dir, ram_bytes=4 << 30, disk_bytes=16 << 30)
        return LlamaCppGenerator(
            path, name=args.model, context_window=window, threads=args.threads or None, kv_cache=cache
        )

    gen = make()
    full_tokens = gen.count_tokens(doc.text)
    budget = args.max_doc_tokens or (window - args.max_tokens - 400)
    text, kept = middle_cut(doc, budget, gen)
    material = [(doc.title, text)]
    log(f"{args.doc}: {full_tokens:,} tokens; reading {gen.count_tokens(text):,} (window {window:,})")

    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        log(f"  prefill {done:,}/{total:,} tokens ({2048 / max(now - last[0], 1e-9):.1f} tok/s lately)")
        last[0] = now

    t0 = time.perf_counter()
    pre = gen.prefill(lc_messages(questions[0], material), progress)
    cold = time.perf_counter() - t0
    rate = pre.evaluated_tokens / cold
    log(f"cold prefill: {pre.evaluated_tokens:,} tokens in {cold:.1f} s ({rate:.1f} tok/s)")
    runs = []
    for label, q in [("first question", questions[0]), ("follow-up", questions[1])]:
        out = gen.generate(lc_messages(q, material), max_tokens=args.max_tokens)
        new = out.prompt_tokens - out.cached_tokens
        log(f"{label}: TTFT {out.first_token_s:.2f} s, {new} new prompt tokens; {out.text[:80]!r}")
        runs.append({"label": label, "ttft_s": out.first_token_s, "new_tokens": new, "total_s": out.seconds})
    state_mb = gen.kv_cache.disk_usage() / 1e6 if gen.kv_cache else 0.0
    del gen
    gc.collect()
    gen = make()  # a restart: empty memory, the saved state on disk
    out = gen.generate(lc_messages(questions[2], material), max_tokens=args.max_tokens)
    new = out.prompt_tokens - out.cached_tokens
    log(f"after restart (state from disk): TTFT {out.first_token_s:.2f} s, {new} new prompt tokens")
    runs.append({"label": "follow-up after restart", "ttft_s": out.first_token_s, "new_tokens": new})
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "model": args.model,
        "document": args.doc,
        "doc_tokens": full_tokens,
        "prefix_tokens": pre.prefix_tokens,
        "cold_prefill_s": round(cold, 2),
        "cold_prefill_tok_s": round(pre.evaluated_tokens / cold, 2),
        "state_mb_on_disk": round(state_mb, 1),
        "runs": runs,
        "followup_over_cold": round(runs[1]["ttft_s"] / cold, 4),
    }
    log(json.dumps(record, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
