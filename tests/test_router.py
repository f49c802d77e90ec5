from __future__ import annotations

from app.router import RouteInputs, route


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


def test_slow_prefill_goes_to_rag_unless_cached() -> None:
    slow = route(_inputs(doc_tokens=20000, prefill_tokens_per_s=58.0))
    assert slow.mode == "rag" and "budget" in slow.reason
    cached = route(_inputs(doc_tokens=20000, prefill_tokens_per_s=58.0, cached_tokens=19900))
    assert cached.mode == "lc" and "cached" in cached.reason
