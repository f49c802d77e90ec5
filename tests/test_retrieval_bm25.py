"""BM25 with scope statistics and bigrams, and fusion."""

from __future__ import annotations

import pytest

from indexes.bm25 import Analyzer, BM25Config, BM25Index
from indexes.fusion import minmax, rrf_fuse, weighted_fuse

# Document A (ids 0-2) names its hero everywhere; document B (ids 10-15) is about graves.
TEXTS = {
    0: "Hartman walked home. Hartman counted coins. Hartman, Hartman, always Hartman at the desk.",
    1: "Hartman knelt by the gravestone and read his own name upon it.",
    2: "Hartman ate his supper alone and went to bed early.",
    10: "The gravestone was old.",
    11: "A gravestone stood by the gate.",
    12: "Every gravestone in the churchyard leaned.",
    13: "They cleaned the gravestone.",
    14: "The mason carved a gravestone.",
    15: "Flowers lay on a gravestone.",
}
DOC_A = [0, 1, 2]


@pytest.fixture(scope="module")
def bm25() -> BM25Index:
    return BM25Index(list(TEXTS), list(TEXTS.values()))


def test_scope_statistics_weigh_terms_by_the_documents_searched(bm25: BM25Index) -> None:
    query = "What did Hartman do at the gravestone?"
    # Over the whole library 'hartman' is rare (high idf) and 'gravestone' common: chunk 0 wins.
    library = BM25Index(list(TEXTS), list(TEXTS.values()), config=BM25Config(bigrams=False))
    assert library.search(query, 1)[0][0] == 0
    # Within document A 'hartman' is everywhere (no information): the gravestone chunk wins.
    assert bm25.search(query, 3, allowed=DOC_A)[0][0] == 1
    assert {i for i, _ in bm25.search(query, 10, allowed=DOC_A)} <= set(DOC_A)


def test_bigrams_reward_the_phrase() -> None:
    texts = [
        "Interest was paid in cash for the loan; the statement lists other items.",
        "Cash paid for interest was 234,051 for the quarter.",
    ]
    idx = BM25Index([1, 2], texts)
    assert idx.search("cash paid for interest", 2)[0][0] == 2
    assert "cash_paid" in Analyzer()("Cash paid for interest")
    assert "cash_paid" not in Analyzer(bigrams=False)("Cash paid for interest")


def test_scores_for_and_empty_cases(bm25: BM25Index) -> None:
    s = bm25.scores_for("gravestone", [1, 10, 999], allowed=DOC_A)
    assert s[0] > 0 and s[1] == 0.0 and s[2] == 0.0  # 10 is outside the scope
    assert bm25.search("the of and", 5) == []  # only stop words
    assert bm25.search("gravestone", 5, allowed=[]) == []
    assert BM25Index([], []).search("x", 3) == []


def test_bm25s_backend_is_the_library_path() -> None:
    idx = BM25Index(list(TEXTS), list(TEXTS.values()), config=BM25Config(backend="bm25s"))
    hits = idx.search("gravestone", 3, allowed=[10, 11, 1])
    assert {i for i, _ in hits} <= {10, 11, 1} and len(hits) == 3
    with pytest.raises(ValueError, match="unknown BM25 backend"):
        BM25Config(backend="lucene")  # type: ignore[arg-type]


def test_weighted_fusion_scales_each_list_and_floors_missing_scores() -> None:
    bm25 = {1: 10.0, 2: 5.0, 3: 0.0}
    dense = {1: 0.2, 2: 0.9}  # 3 missing: it gets the lowest dense score present
    fused = weighted_fuse([1, 2, 3], [bm25, dense], [0.85, 0.15])
    assert [i for i, _ in fused] == [1, 2, 3]
    assert fused[0][1] == pytest.approx(0.85)
    assert fused[1][1] == pytest.approx(0.85 * 0.5 + 0.15)
    # A heavy dense weight flips the order.
    assert weighted_fuse([1, 2], [bm25, dense], [0.1, 0.9])[0][0] == 2
    assert list(minmax([3.0, 3.0])) == [0.0, 0.0]
    assert rrf_fuse([[1, 2], [2, 1]], [1.0, 1.0])[0][1] == pytest.approx(1 / 61 + 1 / 62)
