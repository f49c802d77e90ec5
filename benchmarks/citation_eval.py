"""Precision and recall of "verified" against the hand-labelled citation pairs
(``benchmarks/data/citation_pairs.jsonl``; docs/citations.md, "Measuring verification").

    .venv/bin/python -m benchmarks.citation_eval                   # old and new rule, every split
    .venv/bin/python -m benchmarks.citation_eval --split dev --show-errors new
    flock /work/cpu.lock .venv/bin/python -m benchmarks.citation_eval --entail qwen2.5-coder-1.5b \\
        --entail-limit 60 --entail-out /tmp/longqa-cite/entail.jsonl

Rules:

- ``old``: the rule on main before issue 19 (half of the claim's content words and all its
  numbers in the passage; the claim without markers and "on page N");
- ``new``: ``app.answering.verify.check`` (the lexical screen, with the question);
- ``new+entail``: the screen, then the model's own check (``app.answering.entail``) on the pairs
  that pass it; the model's verdicts are cached in ``--entail-out`` so a run can go in pieces.
  ``--entail-threshold T`` asks the app's RAG form (``entail_scored``: a yes/no question, the
  claim confirmed when P(Yes) >= T; docs/citations.md, "A scored check").
  ``--entail-form standalone`` (the RAG form: passage, question and claim in a prompt of their
  own) or ``followup`` (the LC form: the passage as the document in the LC prompt, the claim and
  its evidence sentence as the answer, then the check about that sentence, as ``confirm`` asks;
  the passage's sentence sharing most words with the claim stands for the located evidence).

Precision = labelled-true among those marked verified; recall = marked verified among the
labelled-true. Per kind of pair: the share judged right (an edit caught, a true claim verified).
"No verified citation" = the share of real answers (with at least one citation) left without one.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from app.answering.citations import _MARKER, _WHERE, claim_of, supports_lexical
from app.answering.verify import check, verbatim

DATA = Path(__file__).resolve().parent / "data" / "citation_pairs.jsonl"


def old_rule(r: dict) -> bool:
    claim = re.sub(r"\s{2,}", " ", _WHERE.sub("", _MARKER.sub("", r["claim"]))).strip()
    return supports_lexical(claim, r["passage"])


def new_rule(r: dict) -> bool:
    return check(_MARKER.sub("", r["claim"]), r["passage"], r["question"]).verified


def scores(rows: list[dict], verdict: Callable[[dict], bool]) -> dict:
    pred = [(r, verdict(r)) for r in rows]
    tp = sum(1 for r, v in pred if v and r["label"] == 1)
    fp = sum(1 for r, v in pred if v and r["label"] == 0)
    pos = sum(1 for r in rows if r["label"] == 1)
    kinds: dict[str, list[int]] = {}
    for r, v in pred:
        right = v == (r["label"] == 1)
        kinds.setdefault(r["kind"], [0, 0])
        kinds[r["kind"]][0] += right
        kinds[r["kind"]][1] += 1
    answers: dict[str, bool] = {}
    for r, v in pred:
        if r["kind"].startswith("real"):
            qid = r["id"].split("#")[0]
            answers[qid] = answers.get(qid, False) or v
    return {
        "pairs": len(rows),
        "verified": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / pos if pos else None,
        "kinds": kinds,
        "no_verified_share": (sum(1 for v in answers.values() if not v) / len(answers)) if answers else None,
        "answers": len(answers),
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _evidence(claim: str, passage: str) -> str:
    """The passage's sentence that shares most words with the claim (the LC answer's evidence)."""
    from pipeline.textspan import sentence_spans, terms

    words = set(terms(claim))
    sents = [" ".join(passage[a:b].split()) for a, b in sentence_spans(passage)] or [passage]
    return max(sents, key=lambda x: len(words & set(terms(x))))


def entail_rule(args: argparse.Namespace) -> Callable[[dict], bool]:
    """The screen, then the model's check on the pairs that pass, cached by pair id."""
    from app.answering.entail import entail_followup, entail_scored, entail_standalone
    from app.answering.prompts import lc_messages
    from app.catalog import load_catalog, resolve_generator
    from app.llm.llamacpp import LlamaCppGenerator
    from app.settings import Settings

    cache_path = Path(args.entail_out)
    cache = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            e = json.loads(line)
            cache[e["id"]] = e
    state: dict = {"gen": None, "calls": 0}

    def gen():  # type: ignore[no-untyped-def]
        if state["gen"] is None:
            spec = load_catalog().generators[args.entail]
            path = resolve_generator(spec, Settings().model_cache)
            state["gen"] = LlamaCppGenerator(path, name=args.entail, context_window=2048, decode_threads=1)
        return state["gen"]

    def verdict(r: dict) -> bool:
        if not new_rule(r):
            return False
        # The claim as the app asks about it: without markers and without the model's talk about
        # sources ("as verified on page 99"), which the answer never shows (``claim_of``).
        claim = claim_of(r["claim"])
        if verbatim(claim, r["passage"]):
            return True  # as the app: a word-for-word copy is not asked about
        if r["id"] not in cache or cache[r["id"]].get("claim") != claim:
            if state["calls"] >= args.entail_limit:
                return True  # not checked in this run: counted as the screen says
            t0 = time.perf_counter()
            p = None
            if args.entail_threshold > 0:  # the app's RAG form: P(Yes) against the threshold
                t = args.entail_threshold
                label, p, out = entail_scored(gen(), r["passage"], claim, r["question"], t)
            elif args.entail_form == "followup":
                quote = _evidence(claim, r["passage"])
                msgs = lc_messages(r["question"], [(Path(r["doc"]).stem, r["passage"])])
                where = f"the document's sentence “{quote}”"
                answer = f"{claim}\nEvidence: {quote}"
                label, out = entail_followup(gen(), msgs, answer, where, claim)
            else:
                label, out = entail_standalone(gen(), r["passage"], claim, r["question"])
            e = {
                "id": r["id"],
                "claim": claim,
                "label": label,
                "p": p,
                "seconds": round(time.perf_counter() - t0, 2),
                "prompt_tokens": out.prompt_tokens,
                "completion_tokens": out.completion_tokens,
            }
            cache[r["id"]] = e
            state["calls"] += 1
            with cache_path.open("a") as fh:
                fh.write(json.dumps(e) + "\n")
        e = cache[r["id"]]
        if args.entail_threshold > 0:
            return e.get("p") is not None and e["p"] >= args.entail_threshold
        return e["label"] == "supported"

    verdict.cache = cache  # type: ignore[attr-defined]
    return verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    splits = ["dev", "heldout", "fresh", "fresh2", "fresh3", "fresh4", "fresh5", "fresh6", "all"]
    ap.add_argument("--split", choices=splits, default="all")
    ap.add_argument("--show-errors", choices=["old", "new"], default=None, help="print the misjudged pairs")
    ap.add_argument("--entail", default="", help="catalog model for the new+entail rule")
    ap.add_argument("--entail-limit", type=int, default=0, help="most new model calls in this run")
    ap.add_argument("--entail-out", default="/tmp/longqa-cite/entail.jsonl")
    ap.add_argument("--entail-form", choices=["standalone", "followup"], default="standalone")
    ap.add_argument(
        "--entail-threshold",
        type=float,
        default=0.0,
        help="the scored RAG check (llm.entail_threshold): P(Yes) >= this confirms; 0: the one-word form",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["label"] is not None]
    splits = ["dev", "heldout", "all"] if args.split == "all" else [args.split]
    rules: dict[str, Callable[[dict], bool]] = {"old": old_rule, "new": new_rule}
    if args.entail:
        rules["new+entail"] = entail_rule(args)
        # Which pairs to ask first: every false pair the screen lets through, then true ones in a
        # fixed random order (the model's check is slow on 2 cores: --entail-limit per run).
        import random

        passing = [r for r in rows if args.split in ("all", r["split"]) and new_rule(r)]
        false = [r for r in passing if r["label"] == 0]
        true = [r for r in passing if r["label"] == 1]
        random.Random(19).shuffle(true)
        order = false + true
        if args.entail_limit >= len(order):  # all of them: by passage, so the engine reuses it
            order.sort(key=lambda r: r["passage"])
        for r in order:
            rules["new+entail"](r)
    t0 = time.perf_counter()
    for r in rows:
        new_rule(r)
    lexical_ms = 1000 * (time.perf_counter() - t0) / max(1, len(rows))
    results = {}
    for split in splits:
        part = [r for r in rows if split == "all" or r["split"] == split]
        results[split] = {name: scores(part, fn) for name, fn in rules.items()}
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(
            "| split | rule | pairs | verified | precision | recall (true claims) | answers, none verified |"
        )
        print("|---|---|---|---|---|---|---|")
        for split, by_rule in results.items():
            for name, s in by_rule.items():
                nv = f"{_pct(s['no_verified_share'])} of {s['answers']}"
                cells = [split, name, s["pairs"], s["verified"], _pct(s["precision"]), _pct(s["recall"]), nv]
                print("| " + " | ".join(str(x) for x in cells) + " |")
        print()
        split = splits[-1]
        kinds = sorted({k for s in results[split].values() for k in s["kinds"]})
        print(f"Per kind ({split}): share judged right (false kinds: caught; true kinds: verified)")
        print()
        print("| kind | pairs | " + " | ".join(results[split]) + " |")
        print("|---|---|" + "---|" * len(results[split]))
        for k in kinds:
            cells = []
            for s in results[split].values():
                right, n = s["kinds"].get(k, [0, 0])
                cells.append(f"{right}/{n}")
            n = next(iter(results[split].values()))["kinds"].get(k, [0, 0])[1]
            print(f"| {k} | {n} | " + " | ".join(cells) + " |")
        print(f"\nlexical screen: {lexical_ms:.2f} ms per pair")
        if args.entail:
            cache = rules["new+entail"].cache  # type: ignore[attr-defined]
            secs = [e["seconds"] for e in cache.values()]
            if secs:
                print(f"model check: {len(secs)} calls, {sum(secs) / len(secs):.1f} s per claim on average")
            by_id = {r["id"]: r for r in rows}
            for split in splits:
                got = [(by_id[i], e["label"]) for i, e in cache.items() if i in by_id]
                got = [(r, lab) for r, lab in got if split == "all" or r["split"] == split]
                if args.entail_threshold > 0:  # the verdict at this threshold, from the cached P(Yes)
                    got = [(r, "supported" if rules["new+entail"](r) else "not") for r, _ in got]
                t_ok = sum(1 for r, lab in got if r["label"] == 1 and lab == "supported")
                t_n = sum(1 for r, _ in got if r["label"] == 1)
                f_ok = sum(1 for r, lab in got if r["label"] == 0 and lab != "supported")
                f_n = sum(1 for r, _ in got if r["label"] == 0)
                print(
                    f"model check on the {len(got)} {split} pairs asked about (all passed the screen): "
                    f"true claims confirmed {t_ok}/{t_n}, false claims caught {f_ok}/{f_n}"
                )
    if args.show_errors:
        fn = rules[args.show_errors]
        for r in rows:
            if (args.split in ("all", r["split"])) and fn(r) != (r["label"] == 1):
                why = check(_MARKER.sub("", r["claim"]), r["passage"], r["question"])
                print(f"\n[{r['kind']} label={r['label']}] {r['id']}\n  Q: {r['question']}")
                print(f"  C: {r['claim']}\n  -> {why.verdict}: {why.reason}")


if __name__ == "__main__":
    main()
