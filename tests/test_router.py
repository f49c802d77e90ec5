from __future__ import annotations

from app.routing.router import RouteInputs, route


def _inputs(**kw):  # type: ignore[no-untyped-def]
    base = dict(
        doc_tokens=3000,
        window=32768,
        reserved_tokens=456,
        prefill_tokens_per_s=1000.0,
        cached_tokens=0,
        latency_budget_s=60.0,
    )
    base.update(kw)
    return RouteInputs(**base)


def test_small_fast_document_goes_to_lc() -> None:
    d = route(_inputs())
    assert d.mode == "lc" and "fit" in d.reason and d.features["doc_tokens"] == 3000


def test_document_over_the_window_goes_to_rag() -> None:
    d = route(_inputs(doc_tokens=40000))
    assert d.mode == "rag" and "window" in d.reason and d.features["fill"] > 1


def test_document_over_the_gpu_memory_goes_to_rag_and_says_so() -> None:
    d = route(_inputs(doc_tokens=20000, memory_tokens=12000))
    assert d.mode == "rag" and "GPU's free memory" in d.reason and d.features["memory_tokens"] == 12000
    assert d.features["capacity"] == 12000 - 456 and d.features["memory_bound"] == 1.0
    roomy = route(_inputs(doc_tokens=3000, memory_tokens=500_000))  # the window still decides
    assert roomy.mode == "lc" and roomy.features["capacity"] == int(32768 * 0.9) - 456
    assert roomy.features["memory_bound"] == 0.0
    assert d.facts is not None and d.facts.capacity == 12000 - 456 and d.facts.memory_bound
    assert roomy.facts is not None and not roomy.facts.memory_bound


def test_features_are_the_facts_shown() -> None:
    """The display mapping is derived from the typed facts: same names, values and order as
    before the facts were typed (the CLI's --json and eval's route_features show it)."""
    d = route(_inputs(doc_tokens=20000, memory_tokens=12000))
    assert d.facts is not None and d.facts.fill == 20000 / (12000 - 456) and not d.facts.lc_fits
    assert list(d.features) == [
        "doc_tokens",
        "window",
        "capacity",
        "fill",
        "cached_tokens",
        "predicted_lc_seconds",
        "latency_budget_s",
        "memory_tokens",
        "memory_bound",
    ]
    assert d.features["predicted_lc_seconds"] == 20.0 and d.features["fill"] == d.facts.fill
    plain = route(_inputs())
    assert plain.facts is not None and plain.facts.lc_fits and plain.facts.p_lc_better is None
    assert "memory_tokens" not in plain.features and "p_lc_better" not in plain.features


def test_slow_prefill_goes_to_rag_unless_cached() -> None:
    slow = route(_inputs(doc_tokens=20000, prefill_tokens_per_s=58.0))
    assert slow.mode == "rag" and "budget" in slow.reason
    cached = route(_inputs(doc_tokens=20000, prefill_tokens_per_s=58.0, cached_tokens=19900))
    assert cached.mode == "lc" and "cached" in cached.reason
