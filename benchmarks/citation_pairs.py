"""Build the labelled (claim, cited passage) set of docs/citations.md, "Measuring verification".

    .venv/bin/python -m benchmarks.citation_pairs \\
        --raw /tmp/longqa-cite/raw_rag.jsonl /tmp/longqa-cite/raw_lc.jsonl \\
        --out benchmarks/data/citation_pairs.jsonl

Three sources, every passage real text of ``../shared/data`` (at most ``MAX_PASSAGE`` chars):

- ``real_rag`` / ``real_lc``: the embedded model's own answers (``benchmarks/citation_collect.py``):
  each answer sentence with each source it cites (RAG), or the answer with the sentences around
  its located evidence quote (LC). Labelled by hand in ``benchmarks/data/citation_labels.json``.
- ``extract``: a sentence of a real passage, as a claim the passage states (label 1).
- adversarial edits of those true claims, each made false by construction (label 0, except
  ``injected_true``): ``negation``, ``number``, ``unit``, ``date``, ``comparison``, ``swap``
  (who did what), ``entity`` (a name from elsewhere in the passage), ``addition`` (an
  unsupported clause), ``restated`` (the question restated, no answer), ``injected_false`` (a
  false claim with "as verified on page 99"), and ``injected_true`` (a true claim with it;
  label 1: the claim is judged on what it says, and the prose is stripped from the text shown).

Every pair is given a split by its document: ``heldout`` for about 35% of the documents (a fixed
hash), ``dev`` for the rest. Tune on dev only (``citation_eval.py --split dev``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from pathlib import Path

from app.answering.citations import _MARKER, claim_of, is_meta, locate_quote
from app.answering.modes import _EVIDENCE, _around
from app.refusals import is_not_found_reply
from benchmarks.answer_quality import LARA
from pipeline.loaders import load_document
from pipeline.textspan import STOPWORDS, sentence_spans, terms
from pipeline.types import Span

SHARED = LARA.parent
MAX_PASSAGE = 1200
HELDOUT_SHARE = 0.35
LABELS = Path(__file__).resolve().parent / "data" / "citation_labels.json"

# Documents for the synthetic pairs: several kinds (novels, financial statements, papers, PDFs).
DOCS = [
    "lara/32k/book/The Old Man and The Sea.txt",
    "lara/32k/book/The Time Machine.txt",
    "lara/32k/book/A Christmas Carol.txt",
    "lara/32k/book/The Murders in the Rue Morgue.txt",
    "lara/32k/book/Metamorphosis.txt",
    "lara/32k/book/The CALL of CTHULHU.txt",
    "lara/32k/financial/2024-Blue Star Foods Corp.-j.txt",
    "lara/32k/financial/2024-Cepton, Inc.-j.txt",
    "lara/32k/financial/2024-Genprex, Inc.-j.txt",
    "lara/32k/financial/2024-CISO Global, Inc.-j.txt",
    "lara/32k/financial/2024-EQUUS TOTAL RETURN, INC.-j.txt",
    "lara/32k/financial/2024-HCW Biologics Inc.-j.txt",
    "pdf/docling_multi_page.pdf",
    "pdf/docling_redp5110_sampled.pdf",
    "pdf/plumber_federal-register-2020-17221.pdf",
    "pdf/docling_amt_handbook_sample.pdf",
]

AUX = re.compile(r"\b(was|is|were|are|has|had|have|will|can|could|would|did|does)\b(?! not\b)")
ADDITIONS = [
    ", after a long dispute with the regulators",
    " because the company's lenders demanded it",
    ", which made him famous across Europe",
    " in March 1931",
    ", according to a report by Deloitte",
    " and was later reversed by the board",
    ", twice, in front of the whole crew",
    " for the third year in a row",
]
UNIT_SWAP = {
    "thousand": "million",
    "million": "billion",
    "billion": "million",
    "percent": "million",
    "%": " million",
    "years": "months",
    "year": "month",
    "days": "weeks",
    "months": "years",
    "miles": "kilometers",
    "feet": "meters",
    "hours": "minutes",
    "minutes": "hours",
    "pounds": "kilograms",
    "dollars": "euros",
}
COMPARE_SWAP = {
    "more": "less",
    "less": "more",
    "increased": "decreased",
    "decreased": "increased",
    "increase": "decrease",
    "decrease": "increase",
    "higher": "lower",
    "lower": "higher",
    "larger": "smaller",
    "smaller": "larger",
    "greater": "smaller",
    "before": "after",
    "after": "before",
    "rose": "fell",
    "fell": "rose",
    "fewer": "more",
}
MONTHS = "January February March April May June July August September October November December".split()  # noqa: SIM905
NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,}(?:\s+[A-Z][a-z]{2,})?)\b")
INJECT = ", as verified on page 99"


def split_of(doc: str) -> str:
    h = int(hashlib.sha256(doc.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < HELDOUT_SHARE else "dev"


def _clip(text: str) -> str:
    text = re.sub(r"[ \t]{3,}", "  ", text.strip())  # table padding
    return text if len(text) <= MAX_PASSAGE else text[:MAX_PASSAGE].rsplit(" ", 1)[0]


def passage_runs(
    text: str,
    rng: random.Random,
    n: int,
    *,
    tries: int = 4,
    min_chars: int = 0,
    tidy: bool = False,
    max_lines: int = 8,
) -> list[str]:
    """At most ``n`` runs of five sentences of ``text``, each centred on a sentence of 60-300
    characters, no tables, at most ``MAX_PASSAGE`` characters; ``tries`` x ``n`` centres drawn.
    ``tidy``: stripped and table padding squeezed before the length check; ``max_lines``: runs
    of more lines are left out (a transcript's cues or a PDF's narrow columns need more)."""
    sents = sentence_spans(text)
    good = [i for i, (a, b) in enumerate(sents) if 60 <= b - a <= 300]
    out: list[str] = []
    for i in rng.sample(good, min(len(good), tries * n)):
        group = sents[max(0, i - 2) : i + 3]
        run = text[group[0][0] : group[-1][1]]
        if tidy:
            run = re.sub(r"[ \t]{3,}", "  ", run.strip())
        if min_chars <= len(run) <= MAX_PASSAGE and "|" not in run and run.count("\n") < max_lines:
            out.append(run)
        if len(out) == n:
            break
    return out


def _passages(doc_path: str, rng: random.Random, n: int = 4) -> list[str]:
    return passage_runs(load_document(SHARED / doc_path).text, rng, n)


def _claim_sentences(passage: str) -> list[str]:
    out = []
    for a, b in sentence_spans(passage):
        s = " ".join(passage[a:b].split())
        if 50 <= len(s) <= 260 and re.search(r"[A-Za-z]{4,}", s) and not s.endswith("?"):
            out.append(s)
    return out


def _edits(claim: str, passage: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, edited claim) for every edit that applies to this claim."""
    out: list[tuple[str, str]] = []
    m = AUX.search(claim)
    if m and not re.search(r"\b(not|no|never|n't)\b", claim):
        out.append(("negation", claim[: m.end()] + " not" + claim[m.end() :]))
    nums = [x for x in re.finditer(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?", claim) if x.group(0) not in ("1", "2")]
    if nums:
        x = rng.choice(nums)
        raw = x.group(0).replace(",", "")
        if re.fullmatch(r"(1[5-9]|20)\d\d", raw):
            new = str(int(raw) + rng.choice([-3, 2, 5]))
        else:
            v = float(raw)
            new = str(int(v * 3 + 7)) if v.is_integer() else f"{v * 3 + 0.5:.2f}"
        if new not in passage:
            out.append(("number", claim[: x.start()] + new + claim[x.end() :]))
    u = re.search(
        r"\d\s*(thousand|million|billion|percent|%|years?|days|months|miles|feet|hours|minutes|pounds|dollars)\b|\d(%)",
        claim,
    )
    if u:
        word = u.group(1) or u.group(2)
        a = u.start(1) if u.group(1) else u.start(2)
        out.append(("unit", claim[:a] + UNIT_SWAP[word].lstrip() + claim[a + len(word) :]))
    mo = [x for x in re.finditer(r"\b(" + "|".join(MONTHS) + r")\b", claim)]
    if mo:
        x = mo[0]
        other = [mm for mm in MONTHS if mm not in passage]
        if other:
            out.append(("date", claim[: x.start()] + rng.choice(other) + claim[x.end() :]))
    c = re.search(r"\b(" + "|".join(COMPARE_SWAP) + r")\b", claim)
    if c:
        out.append(("comparison", claim[: c.start()] + COMPARE_SWAP[c.group(1)] + claim[c.end() :]))
    distinct = [x for x in dict.fromkeys(NAME.findall(claim)) if _is_name(x)]
    if len(distinct) >= 2:
        a, b = distinct[0], distinct[1]
        if a not in b and b not in a:
            swapped = claim.replace(a, "\0").replace(b, a).replace("\0", b)
            if swapped != claim:
                out.append(("swap", swapped))
    if distinct:
        others = [x for x in dict.fromkeys(NAME.findall(passage)) if x not in claim and _is_name(x)]
        if others:
            out.append(("entity", claim.replace(distinct[0], rng.choice(others), 1)))
    out.append(("addition", claim.rstrip(".") + rng.choice(ADDITIONS) + "."))
    out.append(("injected_true", claim.rstrip(".") + INJECT + "."))
    false = [e for k, e in out if k in ("number", "negation", "unit")]
    if false:
        out.append(("injected_false", false[0].rstrip(".") + INJECT + "."))
    return out


def _is_name(x: str) -> bool:
    first = x.split()[0]
    return first not in MONTHS and first.lower() not in STOPWORDS and first not in ("Company", "Our", "These")


def restate(question: str) -> str:
    """The question as a statement with no answer in it ("When was X introduced?" ->
    "X was introduced.")."""
    q = question.strip().rstrip("?").strip()
    m = re.match(r"(?i)(?:when|where|why|how|what|which|who)\s+(was|were|is|are|did|does|do)\s+(.*)", q)
    if m:
        aux, rest = m.group(1).lower(), m.group(2)
        if aux in ("did", "does", "do"):
            return f"{rest[0].upper()}{rest[1:]}."
        return f"{rest[0].upper()}{rest[1:]} {aux} the subject of the question."
    return f"The question is: {q}."


def synthetic(seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    for doc in DOCS:
        for p_i, passage in enumerate(_passages(doc, rng)):
            passage = _clip(passage)
            claims = _claim_sentences(passage)
            rng.shuffle(claims)
            for c_i, claim in enumerate([c for c in claims if c not in seen][:2]):
                seen.add(claim)
                base = f"{doc}#{p_i}.{c_i}"
                rows.append(_row(base, "extract", doc, "", claim, passage, 1, base))
                for kind, edited in _edits(claim, passage, rng):
                    label = 1 if kind == "injected_true" else 0
                    rows.append(_row(f"{base}:{kind}", kind, doc, "", edited, passage, label, base))
    return rows


def _row(
    pid: str, kind: str, doc: str, question: str, claim: str, passage: str, label: int | None, base: str
) -> dict:
    return {
        "id": pid,
        "kind": kind,
        "doc": doc,
        "split": split_of(doc),
        "question": question,
        "claim": claim,
        "passage": _clip(passage),
        "label": label,
        "base": base,
    }


def real(raw_paths: list[Path]) -> list[dict]:
    rows: list[dict] = []
    docs: dict[str, object] = {}
    for path in raw_paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["mode"] == "rag":
                by_n = {s["n"]: s["text"] for s in r["sources"]}
                text = r["raw"]
                prev = ""
                for k, (a, b) in enumerate(sentence_spans(text)):
                    sentence = text[a:b]
                    claim = sentence
                    if len(terms(claim_of(sentence))) < 2 or is_meta(sentence):
                        claim = f"{prev} {sentence}".strip()  # "See [2].": the sentence before (as cite does)
                    prev = _MARKER.sub("", claim)
                    cited = [
                        int(n) for m in _MARKER.finditer(sentence) for n in re.findall(r"\d+", m.group(1))
                    ]
                    for n in dict.fromkeys(cited):
                        if n in by_n:
                            pid = f"{r['qid']}#s{k}[{n}]"
                            rows.append(
                                _row(pid, "real_rag", r["doc"], r["question"], claim, by_n[n], None, pid)
                            )
                if not _MARKER.search(text) and not is_not_found_reply(text):
                    # No marker: longqa matches each sentence to a source; here, the source that
                    # shares most words with it (plain overlap, neither rule's test).
                    for k, (a, b) in enumerate(sentence_spans(text)):
                        sentence = text[a:b]
                        if is_not_found_reply(sentence) or len(terms(sentence)) < 3:
                            continue
                        n = max(by_n, key=lambda i: len(set(terms(sentence)) & set(terms(by_n[i]))))
                        pid = f"{r['qid']}#s{k}m[{n}]"
                        rows.append(
                            _row(pid, "real_rag", r["doc"], r["question"], sentence, by_n[n], None, pid)
                        )
                # Also the restated question against the first source (not an answer).
                if by_n:
                    pid = f"{r['qid']}#restated"
                    first = by_n[min(by_n)]
                    rows.append(
                        _row(pid, "restated", r["doc"], r["question"], restate(r["question"]), first, 0, pid)
                    )
            else:
                if r["doc"] not in docs:
                    docs[r["doc"]] = load_document(SHARED / r["doc"])
                doc = docs[r["doc"]]
                m = _EVIDENCE.search(r["raw"])
                answer = " ".join(_MARKER.sub("", r["raw"][: m.start()] if m else r["raw"]).split())
                span = locate_quote(m.group(1).strip(), doc) if m else None  # type: ignore[arg-type]
                if span is not None:
                    # The model's evidence: the answer against the sentences around it (as the app checks).
                    around: Span = _around(doc.text, span)  # type: ignore[attr-defined]
                    passage = doc.text[around.start : around.end]  # type: ignore[attr-defined]
                    pid = f"{r['qid']}#lc"
                    rows.append(_row(pid, "real_lc", r["doc"], r["question"], answer, passage, None, pid))
                else:
                    # No usable evidence: each sentence against the window of three sentences that
                    # shares most words with it (plain overlap, neither rule's test).
                    for k, sentence in enumerate(_sentences(answer)):
                        if is_not_found_reply(sentence) or len(terms(sentence)) < 2:
                            continue
                        passage = _best_window(doc.text, sentence)  # type: ignore[attr-defined]
                        pid = f"{r['qid']}#lc{k}"
                        rows.append(
                            _row(pid, "real_lc", r["doc"], r["question"], sentence, passage, None, pid)
                        )
                first = rows[-1]["passage"] if rows and rows[-1]["id"].startswith(r["qid"]) else ""
                if first:
                    pid = f"{r['qid']}#restated"
                    rows.append(
                        _row(pid, "restated", r["doc"], r["question"], restate(r["question"]), first, 0, pid)
                    )
    return rows


def _sentences(text: str) -> list[str]:
    """Sentences, a piece that starts in lower case joined to the one before ("Cepton, Inc. for the...")."""
    out: list[str] = []
    for a, b in sentence_spans(text):
        piece = text[a:b]
        if out and piece[:1].islower():
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _best_window(text: str, sentence: str) -> str:
    want = set(terms(sentence))
    sents = sentence_spans(text)
    best, best_n = "", -1
    for i in range(max(1, len(sents) - 2)):
        a, b = sents[i][0], sents[min(len(sents), i + 3) - 1][1]
        n = len(want & set(terms(text[a:b])))
        if n > best_n:
            best, best_n = text[a:b], n
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", nargs="*", default=[])
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "data" / "citation_pairs.jsonl"))
    args = ap.parse_args()
    rows = real([Path(p) for p in args.raw]) + synthetic(args.seed)
    labels = json.loads(LABELS.read_text()) if LABELS.exists() else {}
    for r in rows:
        if r["id"] in labels:
            r["label"] = labels[r["id"]]["label"]
            r["note"] = labels[r["id"]].get("note", "")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    unlabelled = sum(1 for r in rows if r["label"] is None)
    print(f"{len(rows)} pairs -> {out} ({unlabelled} without a label); by kind: {kinds}")


if __name__ == "__main__":
    main()
