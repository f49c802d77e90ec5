"""Length-aware pieces of the router study: model profiles by document length, fitted from judged
cases, and thresholds that keep the token budget on new data (set on the score distribution).

Used by benchmarks/router_crosslength.py (train on one LaRA split, test on the other, folds by
document, leave-one-model-out for the profiles) and benchmarks/router_train.py (the shipped
profiles)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

import numpy as np

from app.routing.profiles import Measurement, ModelProfile, fit_profiles, size_class
from eval.router_study import GRID, PARAMS_B, Case

# Bucket edges in document tokens (the embedded model's tokenizer): LaRA 32k documents are 12k-56k
# tokens, 128k ones 48k-133k.
BUCKET_EDGES = (24_000, 48_000, 96_000)


def bucket_of(tokens: int) -> int:
    return sum(tokens >= e for e in BUCKET_EDGES)


def model_class(model: str) -> str:
    """Open models by size; API models (no parameter count) form their own class."""
    p = PARAMS_B.get(model)
    return "closed" if p is None and model in KNOWN_CLOSED else size_class(p)


KNOWN_CLOSED = frozenset(
    {
        "claude-3-5-haiku-20241022",
        "claude-3-5-sonnet-20241022",
        "gemini-1.5-pro",
        "gpt-4o",
        "gpt-4o-0806",
        "gpt-4o-mini",
    }
)


def measurements(cases: Sequence[Case]) -> dict[str, list[Measurement]]:
    """Per model, paired verdicts grouped by (length bucket, task); a bucket's length is the median
    length of its documents (the same for every model: they answered the same questions)."""
    docs_by_bucket: dict[int, set[tuple[str, int]]] = {}
    for c in cases:
        docs_by_bucket.setdefault(bucket_of(c.doc.tokens), set()).add((c.q.doc_key, c.doc.tokens))
    rep = {b: int(statistics.median(t for _, t in v)) for b, v in docs_by_bucket.items()}
    groups: dict[tuple[str, int, str], list[int]] = {}
    for c in cases:
        groups.setdefault((c.model, bucket_of(c.doc.tokens), c.q.task), []).append(
            int(c.lc_ok) - int(c.rag_ok)
        )
    out: dict[str, list[Measurement]] = {}
    for (m, b, t), diffs in sorted(groups.items()):
        out.setdefault(m, []).append(Measurement(rep[b], t, tuple(diffs)))
    return out


def length_profiles(cases: Sequence[Case]) -> tuple[dict[str, ModelProfile], dict[str, ModelProfile]]:
    """(profiles by model, priors by class) from judged cases."""
    ms = measurements(cases)
    return fit_profiles(ms, {m: PARAMS_B.get(m) for m in ms}, class_of=model_class)


def prior_for(model: str, priors: Mapping[str, ModelProfile]) -> ModelProfile:
    """What an unmeasured model gets: its class's prior (all models pooled when the class is empty)."""
    p = priors.get(model_class(model)) or priors["unknown"]
    return ModelProfile(model, PARAMS_B.get(model), None, p.points, p.source)


def spend(
    cases: Sequence[Case], s1: np.ndarray, s2: np.ndarray, rule: np.ndarray, t1: float, t2: float
) -> float:
    """Prompt tokens of the two-stage policy on these cases, as a share of always-LC."""
    lc_tok = np.array([c.lc_tokens for c in cases], dtype=np.float64)
    rag_tok = np.array([c.rag_tokens for c in cases], dtype=np.float64)
    lc = s1 >= t1
    fb = ~lc & (rule | (s2 >= t2))
    cost = np.where(lc, lc_tok, np.where(fb, lc_tok + rag_tok, rag_tok))
    return float(cost.sum() / lc_tok.sum())


def budget_threshold(
    cases: Sequence[Case], s1: np.ndarray, s2: np.ndarray, rule: np.ndarray, t2: float, target: float
) -> tuple[float, float]:
    """(before, after) thresholds set on the score distribution of new data (no verdicts needed,
    only the scores and whether the RAG answers refused), so a policy moved to longer documents
    keeps spending its budget instead of a fixed cut-off's share: the lowest before-threshold (most
    LC) whose spend stays within ``target`` x always-LC, starting from the after-threshold ``t2``
    and raising it (fewer fallbacks) while nothing fits. Spend is not monotone in the before
    threshold (a question moved out of LC may fall back and pay both), hence the full scan."""
    cands = sorted({round(float(v), 4) for v in s1} | set(GRID))
    lc_tok = np.array([c.lc_tokens for c in cases], dtype=np.float64)
    rag_tok = np.array([c.rag_tokens for c in cases], dtype=np.float64)
    total = lc_tok.sum()
    for t2x in [t2, *(g for g in GRID if g > t2)]:
        fb_any = rule | (s2 >= t2x)
        for t1 in cands:
            lc = s1 >= t1
            cost = np.where(lc, lc_tok, np.where(fb_any, lc_tok + rag_tok, rag_tok))
            if cost.sum() / total <= target:
                return t1, t2x
    return 1.01, 1.01
