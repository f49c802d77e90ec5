"""Locating the gold answer's evidence in a document, for retrieval recall.

Evidence can be located for short, factual gold answers: the places (windows of three
sentences) that hold every number of the gold answer and most of its words. Long,
free-text answers and "the text does not say" answers have no locatable evidence, and
retrieval recall is not computed for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from eval.judge import UNANSWERABLE_TASKS
from eval.textnorm import content_words, key_quantities, quantities
from pipeline.textspan import sentence_spans

MAX_GOLD_WORDS = 12
MIN_WORD_SHARE = 0.6


def _region(doc_text: str, hint: str) -> tuple[int, int]:
    """Where the dataset says the question was written from (LaRA's 'context'), else the whole text."""
    if hint:
        head = hint.strip()[:200]
        i = doc_text.find(head) if head else -1
        if i >= 0:
            return i, min(len(doc_text), i + len(hint))
    return 0, len(doc_text)


class SentenceIndex:
    """A document's sentences with their content words and numbers, computed once."""

    def __init__(self, doc_text: str) -> None:
        self.text = doc_text
        self.spans = sentence_spans(doc_text)
        self.words = [frozenset(content_words(doc_text[a:b])) for a, b in self.spans]
        self.numbers = [quantities(doc_text[a:b]) for a, b in self.spans]


def locate_evidence(
    doc: SentenceIndex, gold: str, question: str = "", hint: str = "", task: str = "", window: int = 3
) -> list[tuple[int, int]]:
    """Character spans of the document that support ``gold``; [] when none can be located."""
    if task in UNANSWERABLE_TASKS:
        return []
    asked = set(content_words(question))
    words = set(content_words(gold)) - asked
    nums = key_quantities(gold, question)
    if (not words and not nums) or len(words) > MAX_GOLD_WORDS:
        return []
    start, end = _region(doc.text, hint)
    idx = [i for i, (a, b) in enumerate(doc.spans) if a >= start and b <= end]
    found: list[tuple[int, int]] = []
    for k in range(len(idx)):
        group = idx[k : k + window]
        a, b = doc.spans[group[0]][0], doc.spans[group[-1]][1]
        if nums:
            have = [q for j in group for q in doc.numbers[j]]
            if not all(any(g.matches(h) for h in have) for g in nums):
                continue
        if words:
            have_words = frozenset().union(*(doc.words[j] for j in group))
            if len(words & have_words) / len(words) < MIN_WORD_SHARE:
                continue
        if found and a < found[-1][1]:  # merge overlapping windows
            found[-1] = (found[-1][0], max(b, found[-1][1]))
        else:
            found.append((a, b))
    return found


def retrieval_hit(evidence: Sequence[tuple[int, int]], chunks: Sequence[tuple[int, int]]) -> bool | None:
    """Whether any retrieved chunk overlaps located evidence; None when there is no evidence."""
    if not evidence:
        return None
    return any(a < eb and ea < b for a, b in chunks for ea, eb in evidence)
