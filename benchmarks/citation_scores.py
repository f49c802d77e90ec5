"""The model's confidence that a passage states a claim, for every pair of a labelled set, and
what verification rules built on it would score (docs/citations.md, "A scored check").

The one-word check reads the greedy reply. Here the first token's probabilities are read
instead (``first_token_probs`` of the backend): P(supported) among the three answers of the
standalone form, or P(Yes) for the yes/no form (``yesno``: the app's ``entail.scored_messages``;
``*_evidence``: the same with only the passage's sentences nearest the claim). Every pair is
scored, also those the lexical screen rejects, so rules that let the model vouch for a paraphrase
can be measured too. Pairs are asked in passage order, so the engine reuses the passage's tokens.

    .venv/bin/python -m benchmarks.citation_scores score --data benchmarks/data/citation_fresh.jsonl \\
        --prompt standalone --out /tmp/longqa-cite/scores_fresh_standalone.jsonl
    .venv/bin/python -m benchmarks.citation_scores rules --data benchmarks/data/citation_fresh.jsonl \\
        --scores /tmp/longqa-cite/scores_fresh_standalone.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from app.answering.citations import _MARKER, claim_of
from app.answering.entail import scored_messages, standalone_messages, support_probability
from app.answering.verify import check, verbatim
from app.llm.base import Message


def evidence(claim: str, passage: str, keep: int = 2) -> str:
    """The passage's ``keep`` sentences sharing most words with the claim, in passage order."""
    from pipeline.textspan import sentence_spans, terms

    words = set(terms(claim))
    spans = sentence_spans(passage) or [(0, len(passage))]
    ranked = sorted(range(len(spans)), key=lambda i: -len(words & set(terms(passage[slice(*spans[i])]))))
    return " ".join(" ".join(passage[slice(*spans[i])].split()) for i in sorted(ranked[:keep]))


def evidence_messages(passage: str, claim: str, question: str = "") -> list[Message]:
    return standalone_messages(evidence(claim, passage), claim, question)


def yesno_evidence_messages(passage: str, claim: str, question: str = "") -> list[Message]:
    return scored_messages(evidence(claim, passage, keep=3), claim, question)


def yesno_answer_messages(passage: str, claim: str, question: str = "") -> list[Message]:
    """The claim as a proposed answer to the question (a short answer such as "At ICLR 2021."
    leans on the question's subject, which the statement form leaves the model to supply)."""
    from app.answering.entail import SCORE_SYSTEM

    user = (
        f"Passage:\n{passage}\n\nQuestion: {question}\nProposed answer: {claim}\n\n"
        "Does the passage state this answer to the question, with the same names, numbers, units, "
        "dates, negations, comparisons and roles (who did what to whom), and nothing the passage "
        "does not say? Answer Yes or No."
    )
    return [Message("system", SCORE_SYSTEM), Message("user", user)]


# Worked examples for ``yesno_fewshot`` (a passage of our own, not from any labelled set): what a
# paraphrase, a short answer, a restated question, an added fact, a scale, a role and a quantifier
# come to under the labelling rule.
SHOT_PASSAGE = (
    "In March 2019 the town council of Elmbridge voted 7 to 2 to close the old Mill Street bridge to "
    "cars. Repairs were estimated at £4.2 million, and the council said it could not raise the money "
    "before 2022. Cyclists and pedestrians may still cross the bridge. Mayor Helen Ashby, who had "
    "opposed the closure, asked the county to share the cost."
)
SHOT_QUESTION = "Why did Elmbridge close the Mill Street bridge to cars?"
SHOTS = (
    ("The council could not find the money for the repairs, put at £4.2 million, before 2022.", "Yes"),
    ("Elmbridge closed the Mill Street bridge to cars because of the council's decision.", "No"),
    ("Because it could not pay for the repairs in time.", "Yes"),
    ("The repairs were estimated at £4.2 million and the bridge had been damaged by floods.", "No"),
    ("The council voted unanimously to close it, as repairs would cost £4.2 million.", "No"),
    (
        "The council voted 7 to 2 to close it to cars, since it could not raise the £4.2 million for "
        "repairs before 2022.",
        "Yes",
    ),
    ("Repairs were estimated at £4.2 billion, which the council could not raise before 2022.", "No"),
    ("Mayor Helen Ashby, who proposed the closure, said the town could not pay for repairs.", "No"),
)


def yesno_fewshot_messages(passage: str, claim: str, question: str = "") -> list[Message]:
    """The app's yes/no form after eight worked examples on a passage of our own (a fixed prefix,
    so a backend with a prompt cache reads it once)."""
    msgs = scored_messages(SHOT_PASSAGE, SHOTS[0][0], SHOT_QUESTION)[:1]
    for text, verdict in SHOTS:
        msgs += [scored_messages(SHOT_PASSAGE, text, SHOT_QUESTION)[1], Message("assistant", verdict)]
    return msgs + scored_messages(passage, claim, question)[1:]


PROMPTS = {
    "standalone": standalone_messages,
    "yesno": scored_messages,
    "evidence": evidence_messages,
    "yesno_evidence": yesno_evidence_messages,
    "yesno_answer": yesno_answer_messages,
    "yesno_fewshot": yesno_fewshot_messages,
}


def cmd_score(args: argparse.Namespace) -> None:
    from app.catalog import load_catalog, resolve_generator
    from app.llm.llamacpp import LlamaCppGenerator
    from app.settings import Settings

    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()]
    out = Path(args.out)
    done = {json.loads(x)["id"] for x in out.read_text().splitlines()} if out.exists() else set()
    spec = load_catalog().generators[args.model]
    gen = LlamaCppGenerator(
        resolve_generator(spec, Settings().model_cache),
        name=args.model,
        context_window=4096 if args.prompt == "yesno_fewshot" else 2048,  # the examples: ~1,300 tokens
        decode_threads=1,
    )
    build = PROMPTS[args.prompt]
    rows.sort(key=lambda r: (r["passage"], r["question"], r["id"]))  # shared prefix stays cached
    t_all = time.perf_counter()
    for r in rows:
        if r["id"] in done:
            continue
        claim = claim_of(r["claim"])
        t0 = time.perf_counter()
        choices = gen.first_token_probs(build(r["passage"], claim, r["question"]))
        rec = {
            "id": r["id"],
            "claim": claim,
            "p": round(support_probability(choices.candidates), 4),
            "first": choices.candidates[0][0] if choices.candidates else "",
            "seconds": round(time.perf_counter() - t0, 2),
            "read": choices.generation.prompt_tokens - choices.generation.cached_tokens,
        }
        with out.open("a") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"scored -> {out} in {time.perf_counter() - t_all:.0f} s")


def _pr(rows: list[dict], ver: list[bool]) -> tuple[float, float, int]:
    tp = sum(1 for r, v in zip(rows, ver, strict=True) if v and r["label"] == 1)
    fp = sum(1 for r, v in zip(rows, ver, strict=True) if v and r["label"] == 0)
    pos = sum(r["label"] for r in rows)
    return (tp / (tp + fp) if tp + fp else float("nan"), tp / pos if pos else float("nan"), tp + fp)


def _wordy(reason: str) -> bool:
    """The screen said no only for want of the passage's words (not a number, name or negation)."""
    return reason.startswith(("the passage lacks", "the passage holds only"))


def _scores(path: str) -> dict[str, float]:
    """Pair id -> P(supported), from a ``score`` output file."""
    return {e["id"]: e["p"] for e in map(json.loads, Path(path).read_text().splitlines())}


def cmd_rules(args: argparse.Namespace) -> None:
    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()]
    sc = _scores(args.scores)
    if args.scores2:  # two wordings: the mean of the two forms' probabilities
        other = _scores(args.scores2)
        sc = {k: (v + other[k]) / 2 for k, v in sc.items() if k in other}
    rows = [r for r in rows if r["id"] in sc]
    screen = [check(_MARKER.sub("", r["claim"]), r["passage"], r["question"]) for r in rows]
    copy = [verbatim(claim_of(r["claim"]), r["passage"]) for r in rows]
    p = [sc[r["id"]] for r in rows]
    print(f"{len(rows)} pairs, {sum(r['label'] for r in rows)} true")
    yes = [q for r, q in zip(rows, p, strict=True) if r["label"] == 1]
    no = [q for r, q in zip(rows, p, strict=True) if r["label"] == 0]
    auc = sum((a > b) + 0.5 * (a == b) for a in yes for b in no) / (len(yes) * len(no))
    print(
        f"separates true from false: AUC {auc:.3f}; median P of true claims "
        f"{statistics.median(yes):.2f}, of false ones {statistics.median(no):.2f}"
    )
    print(f"{'rule':48s} {'prec':>6s} {'recall':>6s} {'shown':>5s}")

    def show(name: str, ver: list[bool]) -> None:
        pr, rc, n = _pr(rows, ver)
        print(f"{name:48s} {100 * pr:6.1f} {100 * rc:6.1f} {n:5d}")

    show("screen", [s.verified for s in screen])
    for t in args.thresholds:
        show(
            f"screen and (copy or p>={t})",
            [s.verified and (c or q >= t) for s, c, q in zip(screen, copy, p, strict=True)],
        )
    for t in args.thresholds:
        show(f"model alone p>={t}", [q >= t for q in p])
    for t in args.thresholds:
        # The screen's hard checks (numbers, negation, restated question) still apply; only its
        # demand for the passage's words is left to the model.
        soft = [s.verified or _wordy(s.reason) for s in screen]
        show(
            f"hard checks and (copy or p>={t})",
            [h and (c or q >= t) for h, c, q in zip(soft, copy, p, strict=True)],
        )
    if args.kinds:
        t = args.kinds
        soft = [s.verified or _wordy(s.reason) for s in screen]
        kinds: dict[str, list[int]] = {}
        for r, h, c, q in zip(rows, soft, copy, p, strict=True):
            v = h and (c or q >= t)
            k = kinds.setdefault(r["kind"], [0, 0])
            k[0] += v == (r["label"] == 1)
            k[1] += 1
        print(
            f"per kind, hard checks and p>={t}: "
            + ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(kinds.items()))
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--data", required=True)
    s.add_argument("--prompt", choices=sorted(PROMPTS), default="standalone")
    s.add_argument("--model", default="qwen2.5-coder-1.5b")
    s.add_argument("--out", required=True)
    r = sub.add_parser("rules")
    r.add_argument("--data", required=True)
    r.add_argument("--scores", required=True)
    r.add_argument("--scores2", default="", help="a second form's scores: rules on the mean of the two")
    r.add_argument("--thresholds", type=float, nargs="*", default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    r.add_argument("--kinds", type=float, default=0.0, help="per-kind table at this threshold")
    args = ap.parse_args()
    {"score": cmd_score, "rules": cmd_rules}[args.cmd](args)


if __name__ == "__main__":
    main()
