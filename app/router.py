"""A first router: document length vs the model's window, and predicted LC latency vs budget.

The decision is explained in words and carries the feature values it used.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.types import RouteDecision


@dataclass(frozen=True)
class RouteInputs:
    doc_tokens: int
    window: int
    reserved_tokens: int
    prefill_tokens_per_s: float
    cached_tokens: int
    latency_budget_s: float
    window_fraction: float = 0.9


def route(x: RouteInputs) -> RouteDecision:
    capacity = int(x.window * x.window_fraction) - x.reserved_tokens
    to_read = max(0, x.doc_tokens - x.cached_tokens)
    lc_seconds = to_read / max(x.prefill_tokens_per_s, 1e-6)
    features = {
        "doc_tokens": float(x.doc_tokens),
        "window": float(x.window),
        "capacity": float(capacity),
        "fill": x.doc_tokens / max(capacity, 1),
        "cached_tokens": float(x.cached_tokens),
        "predicted_lc_seconds": round(lc_seconds, 2),
        "latency_budget_s": x.latency_budget_s,
    }
    if x.doc_tokens > capacity:
        return RouteDecision(
            "rag",
            f"the documents have {x.doc_tokens:,} tokens, more than the {capacity:,} that fit "
            f"the model's {x.window:,}-token window; retrieving the relevant passages",
            features,
        )
    if lc_seconds > x.latency_budget_s:
        return RouteDecision(
            "rag",
            f"reading all {x.doc_tokens:,} tokens would take about {lc_seconds:,.0f} s at "
            f"{x.prefill_tokens_per_s:,.0f} tokens/s, over the {x.latency_budget_s:,.0f} s budget; "
            "retrieving the relevant passages",
            features,
        )
    cached = " and is already cached" if x.cached_tokens >= x.doc_tokens * 0.9 else ""
    return RouteDecision(
        "lc",
        f"the documents ({x.doc_tokens:,} tokens) fit the {x.window:,}-token window{cached}; "
        f"reading them whole takes about {lc_seconds:,.0f} s, within the "
        f"{x.latency_budget_s:,.0f} s budget",
        features,
    )
