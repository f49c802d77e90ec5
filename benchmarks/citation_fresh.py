"""A fresh, untouched check of citation verification (docs/citations.md, "A fresh set").

The labelled set of ``citation_pairs.py`` was built from LaRA 32k documents and edits of our own
templates, and the verifier was tuned on its dev part; its held-out part was looked at more than
once. This set is made from documents the verifier never saw (LaRA **128k**: books, 10-K filings,
papers, disjoint from the 32k ones), and its claims were written by a reader who had not seen
the verifier's code or its errors (true paraphrases, and false claims of every kind in their own
words), plus real answers of the embedded model to that reader's questions, labelled by the same
reader by the rule of docs/citations.md. The figures are computed once, with the shipped setting.
Four sets were made so: ``citation_fresh.jsonl`` (seed 2026_12_07, now the dev set),
``citation_fresh2.jsonl`` (2026_12_08), ``citation_fresh3.jsonl`` (2026_12_09) and
``citation_fresh4.jsonl`` (2026_12_10, ``--per-kind 6``: no filings were left, so 6 novels and
6 papers) and ``citation_fresh5.jsonl`` (2026_12_11, ``--per-kind 6``), each with ``--exclude`` of
the sets before it and ``build --split fresh2`` … ``fresh5``.

    # 1. passages (fixed seed) from the unpacked 128k archive (../shared/data/README.md)
    .venv/bin/python -m benchmarks.citation_fresh passages --lara128 ~/.cache/longqa/lara128k \\
        --out /tmp/longqa-cite/fresh_passages.jsonl
    # 2. the reader writes a question and claims per passage: /tmp/longqa-cite/fresh_written.jsonl
    # 3. the embedded model answers each question from its passage (one source, the RAG prompt)
    .venv/bin/python -m benchmarks.citation_fresh answer --passages /tmp/longqa-cite/fresh_written.jsonl \\
        --out /tmp/longqa-cite/fresh_answers.jsonl
    # 4. the reader labels the answers' claims; then the set and the figures
    .venv/bin/python -m benchmarks.citation_fresh build --written /tmp/longqa-cite/fresh_written.jsonl \\
        --answers /tmp/longqa-cite/fresh_labelled_answers.jsonl
    .venv/bin/python -m benchmarks.citation_eval --data benchmarks/data/citation_fresh.jsonl \\
        --split fresh --entail qwen2.5-coder-1.5b --entail-limit 400 \\
        --entail-out /tmp/longqa-cite/entail_fresh.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from app.answering.citations import is_meta
from app.answering.prompts import rag_messages, source_label
from app.refusals import is_not_found_reply
from benchmarks.citation_pairs import passage_runs
from pipeline.loaders import load_document
from pipeline.textspan import sentence_spans

OUT = Path(__file__).resolve().parent / "data" / "citation_fresh.jsonl"
PER_KIND = 4  # documents of each kind (book, financial, paper)
PER_DOC = 3  # passages per document


def cmd_passages(args: argparse.Namespace) -> None:
    root = Path(args.lara128).expanduser() / "128k"
    rng = random.Random(args.seed)
    seen = set()
    for used in args.exclude:  # documents of an earlier set stay out of this one
        seen |= {json.loads(x)["doc"] for x in Path(used).read_text().splitlines() if x.strip()}
    rows = []
    if args.files:  # documents of other kinds (PDFs, transcripts), as the product reads them
        for f in map(Path, args.files):
            text = load_document(f).text
            runs = passage_runs(text, rng, PER_DOC, tries=6, min_chars=300, tidy=True, max_lines=24)
            name = f"{f.parent.name}/{f.name}"
            rows += [
                {"pid": f"{name}#{j}", "doc": f"shared/{name}", "passage": t} for j, t in enumerate(runs)
            ]
    kinds = () if args.files else ("book", "financial", "paper")
    for kind in kinds:
        files = [f for f in sorted((root / kind).iterdir()) if f"lara128k/128k/{kind}/{f.name}" not in seen]
        for f in rng.sample(files, min(args.per_kind, len(files))):  # a third set finds 3 filings left
            runs = passage_runs(load_document(f).text, rng, PER_DOC, tries=6, min_chars=300, tidy=True)
            for j, text in enumerate(runs):
                rows.append(
                    {"pid": f"{kind}/{f.stem}#{j}", "doc": f"lara128k/128k/{kind}/{f.name}", "passage": text}
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} passages from {len({r['doc'] for r in rows})} documents -> {args.out}")


def cmd_answer(args: argparse.Namespace) -> None:
    """The embedded model's answer to each written question, its passage as the one source [1]."""
    from app.catalog import load_catalog, resolve_generator
    from app.llm.llamacpp import LlamaCppGenerator
    from app.settings import Settings

    spec = load_catalog().generators[args.model]
    gen = LlamaCppGenerator(
        resolve_generator(spec, Settings().model_cache), name=args.model, context_window=2048
    )
    out = Path(args.out)
    done = {json.loads(x)["pid"] for x in out.read_text().splitlines()} if out.exists() else set()
    for line in Path(args.passages).read_text().splitlines():
        r = json.loads(line)
        if r["pid"] in done:
            continue
        title = Path(r["doc"]).stem
        msgs = rag_messages(r["question"], [(source_label(1, title, ""), r["passage"])])
        t0 = time.perf_counter()
        g = gen.generate(msgs, max_tokens=160, temperature=0.0)
        rec = {
            "pid": r["pid"],
            "question": r["question"],
            "answer": g.text,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        with out.open("a") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print(f"{r['pid']}: {rec['seconds']} s", flush=True)


def answer_claims(answer: str) -> list[str]:
    """The sentences of an answer that make a claim (not a refusal, not talk about sources)."""
    if is_not_found_reply(answer):
        return []
    out = []
    for a, b in sentence_spans(answer):
        s = " ".join(answer[a:b].split())
        if len(s) >= 15 and not is_meta(s) and not s.endswith("?"):
            out.append(s)
    return out


def cmd_build(args: argparse.Namespace) -> None:
    written = [json.loads(x) for x in Path(args.written).read_text().splitlines() if x.strip()]
    rows = []
    for r in written:
        for k, c in enumerate(r["claims"]):
            rows.append(
                {
                    "id": f"{r['pid']}#w{k}",
                    "kind": c["kind"],
                    "doc": r["doc"],
                    "split": args.split,
                    "question": r["question"],
                    "claim": c["claim"],
                    "passage": r["passage"],
                    "label": int(c["label"]),
                    "note": c.get("note", ""),
                }
            )
    by_pid = {r["pid"]: r for r in written}
    if args.answers:
        for line in Path(args.answers).read_text().splitlines():
            a = json.loads(line)
            src = by_pid[a["pid"]]
            for k, c in enumerate(a.get("claims", [])):
                if c.get("label") is None:
                    continue
                rows.append(
                    {
                        "id": f"{a['pid']}#a{k}",
                        "kind": "real_rag",
                        "doc": src["doc"],
                        "split": args.split,
                        "question": src["question"],
                        "claim": c["claim"],
                        "passage": src["passage"],
                        "label": int(c["label"]),
                        "note": c.get("note", ""),
                    }
                )
    Path(args.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"{len(rows)} pairs ({sum(r['label'] for r in rows)} true) -> {args.out}: {kinds}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("passages")
    p.add_argument("--lara128", default="~/.cache/longqa/lara128k")
    p.add_argument("--out", default="/tmp/longqa-cite/fresh_passages.jsonl")
    p.add_argument(
        "--seed",
        type=int,
        default=2026_12_07,
        help="2026_12_08 for fresh2, 2026_12_09 for fresh3, 2026_12_10 for fresh4, 2026_12_11 for fresh5, "
        "2026_12_12 for fresh6",
    )
    p.add_argument("--exclude", nargs="*", default=[], help="sets whose documents to leave out")
    p.add_argument("--per-kind", type=int, default=PER_KIND, help="documents per kind (6 for fresh4, fresh5)")
    p.add_argument("--files", nargs="*", default=[], help="these documents instead of LaRA's (fresh6)")
    a = sub.add_parser("answer")
    a.add_argument("--passages", default="/tmp/longqa-cite/fresh_written.jsonl")
    a.add_argument("--model", default="qwen2.5-coder-1.5b")
    a.add_argument("--out", default="/tmp/longqa-cite/fresh_answers.jsonl")
    b = sub.add_parser("build")
    b.add_argument("--written", default="/tmp/longqa-cite/fresh_written.jsonl")
    b.add_argument("--answers", default="")
    b.add_argument("--out", default=str(OUT))
    b.add_argument("--split", default="fresh")
    args = ap.parse_args()
    {"passages": cmd_passages, "answer": cmd_answer, "build": cmd_build}[args.cmd](args)


if __name__ == "__main__":
    main()
