"""Calibration: the configured model's own long-context advantage, measured, for the router.

``longqa calibrate`` answers a calibration set in RAG and in long-context mode with the
configured generator (``eval.runner.run_eval``: resumable, one row per question and mode),
judges both answers with the deterministic judge, and turns the paired verdicts into a
:class:`app.routing.profiles.ModelProfile`: at each document length measured (buckets by the
document's length in the generator's tokens), LC-minus-RAG accuracy overall and per task type,
shrunk toward the model's class prior (the same normal-normal shrinkage as the published
profiles, ``app.routing.profiles.shrink``), so a profile from a few questions stays near the prior
and says how unsure it is. The service then reads it from ``<data dir>/router_profile.json``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from app.routing.profiles import (
    LengthPoint,
    Measurement,
    ModelProfile,
    raw_point,
    shrink,
    shrink_tasks,
)
from eval.datasets import EvalItem
from eval.runner import ResultRow
from pipeline.textspan import STOPWORDS

# Bucket edges in tokens: each bucket is one point of the profile, at its documents' median length.
LENGTH_EDGES = (6_000, 12_000, 24_000, 48_000, 96_000)
# The smallest standard deviation of one paired difference (lc_ok - rag_ok in -1, 0, 1) assumed.
MIN_SE_PER_QUESTION = 0.5


@dataclass(frozen=True)
class Pair:
    """One question answered in both modes, both judged."""

    item_id: str
    task: str
    doc_tokens: int
    rag_ok: bool
    lc_ok: bool


def pairs(rows: Sequence[ResultRow]) -> list[Pair]:
    """Questions with a judged RAG and a judged LC answer (errors and unjudged rows left out)."""
    by: dict[str, dict[str, ResultRow]] = {}
    for r in rows:
        if r.ok and r.correct is not None and r.mode_requested in ("rag", "lc"):
            by.setdefault(r.item_id, {})[r.mode_requested] = r
    out = []
    for item, modes in sorted(by.items()):
        if "rag" in modes and "lc" in modes:
            lc = modes["lc"]
            out.append(
                Pair(item, lc.task or "location", lc.doc_tokens, bool(modes["rag"].correct), bool(lc.correct))
            )
    return out


def bucket_of(tokens: int, edges: Sequence[int] = LENGTH_EDGES) -> int:
    return sum(tokens >= e for e in edges)


def measurements(ps: Sequence[Pair], edges: Sequence[int] = LENGTH_EDGES) -> list[Measurement]:
    """Paired differences grouped by length bucket and task; each bucket at its median length."""
    buckets: dict[int, list[Pair]] = {}
    for p in ps:
        if p.doc_tokens > 0:
            buckets.setdefault(bucket_of(p.doc_tokens, edges), []).append(p)
    out = []
    for _, group in sorted(buckets.items()):
        length = int(statistics.median(p.doc_tokens for p in group))
        tasks: dict[str, list[int]] = {}
        for p in group:
            tasks.setdefault(p.task, []).append(int(p.lc_ok) - int(p.rag_ok))
        out.extend(Measurement(length, t, tuple(d)) for t, d in sorted(tasks.items()))
    return out


def calibrated_profile(
    name: str,
    params_b: float | None,
    ms: Sequence[Measurement],
    prior: ModelProfile | None,
    measured_at: str,
    pooled: ModelProfile | None = None,
) -> ModelProfile:
    """The model's profile from its measurements, each length point shrunk toward the prior at
    that length (no prior: the raw measurement with its standard error). The prior's spread is
    at least ``pooled``'s (the spread over every model LaRA measured): a class of three models
    that happen to agree says little about a model outside them, so it must not outweigh the
    model's own answers."""
    by_len: dict[int, list[Measurement]] = {}
    for m in ms:
        by_len.setdefault(m.tokens, []).append(m)
    points = []
    for length, group in sorted(by_len.items()):
        adv, se, n, by_task = raw_point(group)
        # A few questions that happen to agree have a sample variance of 0; they are not certain.
        se = max(se, MIN_SE_PER_QUESTION / math.sqrt(max(n, 1)))
        if prior is not None and prior.points:
            mu0 = prior.advantage_at(length)
            tau = prior.sd_at(length)
            if pooled is not None and pooled.points:
                tau = max(tau, pooled.sd_at(length))
            mean, sd = shrink(adv, se, mu0 if mu0 is not None else 0.0, tau)
        else:
            mean, sd = adv, se
        points.append(LengthPoint(length, mean, sd, n, shrink_tasks(by_task, mean, adv)))
    return ModelProfile(name, params_b, None, tuple(points), "calibrated", measured_at)


def describe(profile: ModelProfile, ps: Sequence[Pair]) -> list[str]:
    """One line per length point: what was measured and what the router now believes."""
    lines = []
    for pt in profile.points:
        lines.append(
            f"{pt.tokens:,} tokens: {pt.n} questions, LC - RAG = {pt.lc_adv * 100:+.1f} points "
            f"(uncertainty {pt.sd * 100:.1f})"
        )
    if ps:
        rag = sum(p.rag_ok for p in ps) / len(ps)
        lc = sum(p.lc_ok for p in ps) / len(ps)
        lines.append(f"raw accuracy over {len(ps)} questions: RAG {rag:.0%}, LC {lc:.0%}")
    return lines


# About four characters a token in English prose (the runner records the real token count).
CHARS_PER_TOKEN = 4
_WORD = re.compile(r"\d[\d,.]*\d|[A-Za-z0-9][A-Za-z0-9'-]{2,}")
TEXT_SUFFIXES = (".txt", ".md", ".markdown")


def _query_words(item: EvalItem) -> dict[str, float]:
    """The question's and the gold answer's words; the answer's count three times."""
    out: dict[str, float] = {}
    for text, weight in ((item.question, 1.0), (item.gold_text, 3.0)):
        for w in _WORD.findall(text):
            w = w.lower().rstrip(".,")
            if w not in STOPWORDS:
                out[w] = max(out.get(w, 0.0), weight)
    return out


def best_window(text: str, words: dict[str, float], size: int) -> str:
    """The ``size``-character window of ``text`` (cut at whitespace) holding the most of
    ``words``, each weighted by its rarity in the text; the opening when nothing matches."""
    if len(text) <= size:
        return text
    lower = text.lower()
    hits: list[tuple[int, str]] = []
    weight: dict[str, float] = {}
    for w, importance in words.items():
        positions = [m.start() for m in re.finditer(r"\b" + re.escape(w) + r"\b", lower)]
        if positions:
            weight[w] = importance / math.log(2 + len(positions))
            hits.extend((p, w) for p in positions)
    hits.sort()
    # Windows beginning at a hit, scored by the distinct words inside (two pointers).
    start, best, total = 0, 0.0, 0.0
    inside: dict[str, int] = {}
    j = 0
    for p, w in hits:
        while j < len(hits) and hits[j][0] < p + size:
            wj = hits[j][1]
            inside[wj] = inside.get(wj, 0) + 1
            if inside[wj] == 1:
                total += weight[wj]
            j += 1
        if total > best:
            best, start = total, p
        inside[w] -= 1
        if inside[w] == 0:
            total -= weight[w]
    # Centre the matched region: begin a quarter window before the first hit.
    start = max(0, min(start - size // 4, len(text) - size))
    end = start + size
    if start > 0 and not text[start - 1].isspace():
        # Begin at the next word (the window only shrinks, never passes ``size``).
        cut = text.find(" ", start, start + 200)
        start = cut + 1 if cut >= 0 else start
    if end < len(text):
        cut = text.rfind(" ", start, end)
        end = cut if cut > start else end
    return text[start:end]


def cut_items(items: Sequence[EvalItem], lengths: Sequence[int]) -> list[EvalItem]:
    """Each text document cut to one of ``lengths`` (in tokens, taking turns), the window placed
    where the question's and the gold answer's words are, given inline so both modes read the
    same text. Items whose document is not a text file, or already shorter, are kept as they are.
    The cut may lose a part the question needs; both modes then see the same loss, which is what a
    paired RAG-vs-LC measurement at that length needs."""
    if not lengths:
        return list(items)
    out = []
    for i, it in enumerate(items):
        path = Path(it.doc) if it.doc else None
        if it.error or path is None or path.suffix.lower() not in TEXT_SUFFIXES or not path.is_file():
            out.append(it)
            continue
        tokens = lengths[i % len(lengths)]
        text = path.read_text(encoding="utf-8", errors="replace")
        size = tokens * CHARS_PER_TOKEN
        if len(text) <= size:
            out.append(it)
            continue
        window = best_window(text, _query_words(it), size)
        out.append(
            replace(
                it,
                item_id=f"{it.item_id}@{tokens // 1000}k",
                doc="",
                context=window,
                extra={**it.extra, "cut_from": path.name, "cut_tokens": tokens},
            )
        )
    return out
