"""Judges: a deterministic one (no LLM) and an LLM judge with LaRA's True/False criterion.

Both answer the same question: is ``prediction`` a correct answer to ``question``
given the ``gold`` answer? For ``hallu`` questions (the text does not contain the
answer) the correct answer is one that says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from app.llm.base import Generator, LLMError, Message
from eval.textnorm import (
    content_words,
    is_pure_refusal,
    is_refusal,
    key_quantities,
    normalize_answer,
    number_recall,
    quantities,
)

UNANSWERABLE_TASKS = frozenset({"hallu", "hallucination", "unanswerable"})
# Gold answers that mean "the text cannot answer this" (SQuAD 2.0, Qasper, L-Eval style sets).
UNANSWERABLE_GOLD = frozenset({"unanswerable", "not answerable", "no answer", "cannot be answered"})


def unanswerable(gold: str, task: str) -> bool:
    """Whether the right answer is to say the text does not contain it."""
    return task in UNANSWERABLE_TASKS or gold.strip().rstrip(".").lower() in UNANSWERABLE_GOLD


@dataclass(frozen=True)
class Verdict:
    correct: bool
    score: float  # 0..1, the judge's confidence or overlap score
    judge: str
    reason: str


class Judge(Protocol):
    name: str

    def judge(self, question: str, prediction: str, gold: str, task: str) -> Verdict: ...


@dataclass(frozen=True)
class DeterministicConfig:
    """Thresholds of the deterministic judge; chosen on LaRA's published predictions against the
    paper's LLM judge (benchmarks/eval_judge_validation.py, docs/eval.md)."""

    short_words: int = 4  # a gold answer with at most this many new content words is "short"
    recall_weight: float = 0.4  # overlap = w * recall of the gold's words + (1 - w) * precision
    short_overlap: float = 0.55  # overlap a short gold answer (without numbers) needs
    long_overlap: float = 0.25  # overlap a long, free-text gold answer needs
    long_overlap_with_numbers: float = 0.1  # ... once enough of its numbers are stated
    numbers_needed_long: float = 0.5  # share of a long gold answer's numbers the prediction must state
    verbose_ratio: float = 3.0  # a prediction with this many times the gold's content words ...
    verbose_penalty: float = 0.05  # ... loses this much overlap
    refusal_recall: float = 0.6  # a refusing prediction still counts if it covers this much of the gold


INITIAL_CONFIG = DeterministicConfig(
    short_words=6,
    recall_weight=1.0,
    short_overlap=0.5,
    long_overlap=0.4,
    long_overlap_with_numbers=0.25,
    numbers_needed_long=0.5,
    verbose_penalty=0.0,
)
"""The hand-set thresholds before they were fitted, kept to show how much fitting changed."""


@dataclass(frozen=True)
class AnswerFeatures:
    """What the deterministic judge measures of one answer, before any threshold."""

    empty: bool
    unanswerable: bool  # the right answer is "the text does not say"
    pure_refusal: bool  # the answer only says the text does not say
    refusal: bool  # the answer says so somewhere (maybe then guesses)
    contains_gold: bool  # normalised containment of the gold answer
    recall: float  # share of the gold's content words (question words removed) in the answer
    precision: float  # share of the answer's content words found in the gold
    numbers: float | None  # share of the gold's key numbers the answer states (None: none to state)
    gold_words: int
    pred_words: int


def answer_features(question: str, prediction: str, gold: str, task: str) -> AnswerFeatures:
    pred = prediction.strip()
    if not pred:
        return AnswerFeatures(True, False, False, False, False, 0.0, 0.0, None, 0, 0)
    if unanswerable(gold, task) or (not task and is_pure_refusal(gold, head_chars=60)):
        pure = is_pure_refusal(pred)
        return AnswerFeatures(False, True, pure, pure or is_refusal(pred), False, 0.0, 0.0, None, 0, 0)
    asked = set(content_words(question))
    gold_all = set(content_words(gold))
    gold_words = gold_all - asked or gold_all
    pred_words = set(content_words(pred)) - asked
    recall = len(gold_words & pred_words) / len(gold_words) if gold_words else 0.0
    precision = len(pred_words & gold_all) / len(pred_words) if pred_words else 0.0
    nums = number_recall(key_quantities(gold, question), quantities(pred))
    ng, npred = normalize_answer(gold), normalize_answer(pred)
    return AnswerFeatures(
        empty=False,
        unanswerable=False,
        pure_refusal=is_pure_refusal(pred),
        refusal=False,
        contains_gold=bool(ng) and f" {ng} " in f" {npred} ",
        recall=recall,
        precision=precision,
        numbers=nums,
        gold_words=len(gold_words),
        pred_words=len(pred_words),
    )


def decide(f: AnswerFeatures, c: DeterministicConfig, name: str = "deterministic") -> Verdict:
    """The deterministic judge's verdict from an answer's features and the thresholds."""
    if f.empty:
        return Verdict(False, 0.0, name, "empty answer")
    if f.unanswerable:
        if f.pure_refusal:
            return Verdict(True, 1.0, name, "says the text does not contain the answer")
        if f.refusal:
            return Verdict(False, 0.0, name, "says the text does not say, then guesses anyway")
        return Verdict(False, 0.0, name, "answers a question the text cannot answer")
    if f.pure_refusal and f.recall < c.refusal_recall:
        return Verdict(False, round(f.recall, 3), name, "says the text does not say")
    if f.contains_gold:
        return Verdict(True, 1.0, name, "contains the gold answer")
    overlap = c.recall_weight * f.recall + (1 - c.recall_weight) * f.precision
    if f.pred_words > c.verbose_ratio * max(f.gold_words, 1):
        overlap -= c.verbose_penalty
    words = f"word overlap {overlap:.2f} (recall {f.recall:.0%}, precision {f.precision:.0%})"
    nums = f.numbers
    if f.gold_words <= c.short_words:
        if nums is not None:
            return Verdict(nums >= 1.0, round(nums, 3), name, f"states {nums:.0%} of the gold numbers")
        return Verdict(overlap >= c.short_overlap, round(overlap, 3), name, f"short answer, {words}")
    if nums is not None:
        ok = nums >= c.numbers_needed_long and overlap >= c.long_overlap_with_numbers
        return Verdict(
            ok, round(0.5 * nums + 0.5 * overlap, 3), name, f"states {nums:.0%} of the gold numbers, {words}"
        )
    return Verdict(overlap >= c.long_overlap, round(overlap, 3), name, f"long answer, {words}")


class DeterministicJudge:
    """Normalised containment, content-word recall, number matching with units and rounding,
    and refusal detection for questions the text cannot answer. Needs no model."""

    name = "deterministic"

    def __init__(self, config: DeterministicConfig | None = None) -> None:
        self.config = config or DeterministicConfig()

    def judge(self, question: str, prediction: str, gold: str, task: str) -> Verdict:
        return decide(answer_features(question, prediction, gold, task), self.config, self.name)


# -- LLM judge ---------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You grade answers to questions about a document. You see the question, the reference "
    "answer and a candidate answer. Reply with one word: True or False."
)
ANSWERABLE_RULE = (
    "Reply True when the candidate answer conveys the key facts of the reference answer: the "
    "same entities, numbers (rounding and units may differ) and conclusion, possibly in other "
    "words or with extra correct detail. Reply False when it contradicts the reference, misses "
    "its main point, gives a different number, or says the information is not available."
)
UNANSWERABLE_RULE = (
    "The document does not contain the answer to this question, as the reference answer says. "
    "Reply True when the candidate answer says the information is not given or cannot be "
    "determined from the document (it may explain what the document does say). Reply False "
    "when it presents a specific answer as fact."
)
_VERDICT = re.compile(r"\b(true|false|yes|no|correct|incorrect)\b", re.IGNORECASE)


def judge_messages(question: str, prediction: str, gold: str, task: str) -> list[Message]:
    rule = UNANSWERABLE_RULE if unanswerable(gold, task) else ANSWERABLE_RULE
    user = (
        f"{rule}\n\nQuestion: {question}\nReference answer: {gold}\n"
        f"Candidate answer: {prediction[:3000]}\n\nIs the candidate answer correct? True or False:"
    )
    return [Message("system", JUDGE_SYSTEM), Message("user", user)]


def parse_verdict(text: str) -> bool | None:
    """True/False from the judge's reply (its first verdict word); None when there is none."""
    m = _VERDICT.search(text)
    if m is None:
        return None
    return m.group(1).lower() in ("true", "yes", "correct")


class LLMJudge:
    """LaRA's criterion through any Generator (local llama.cpp or an OpenAI-compatible server).

    When the model's reply holds no verdict word, the deterministic judge decides and the
    reason says so.
    """

    def __init__(self, generator: Generator, *, max_tokens: int = 4) -> None:
        self.generator = generator
        self.max_tokens = max_tokens
        self.name = f"llm:{generator.name}"
        self._fallback = DeterministicJudge()

    def judge(self, question: str, prediction: str, gold: str, task: str) -> Verdict:
        if not prediction.strip():
            return Verdict(False, 0.0, self.name, "empty answer")
        msgs = judge_messages(question, prediction, gold, task)
        try:
            out = self.generator.generate(msgs, max_tokens=self.max_tokens, temperature=0.0)
        except LLMError as exc:
            v = self._fallback.judge(question, prediction, gold, task)
            return Verdict(v.correct, v.score, self.name, f"judge model failed ({exc}); {v.reason}")
        verdict = parse_verdict(out.text)
        if verdict is None:
            v = self._fallback.judge(question, prediction, gold, task)
            return Verdict(v.correct, v.score, self.name, f"no verdict in {out.text[:40]!r}; {v.reason}")
        return Verdict(
            verdict, 1.0 if verdict else 0.0, self.name, f"judge replied {out.text.strip()[:40]!r}"
        )


@dataclass(frozen=True)
class Agreement:
    n: int
    agree: float  # share of items where both judges say the same
    kappa: float  # Cohen's kappa (agreement beyond chance)


def agreement(a: Sequence[bool], b: Sequence[bool]) -> Agreement:
    """How often two judges agree, raw and beyond chance."""
    if len(a) != len(b):
        raise ValueError(f"judges rated different numbers of items ({len(a)} vs {len(b)})")
    n = len(a)
    if n == 0:
        return Agreement(0, float("nan"), float("nan"))
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    kappa = (po - pe) / (1 - pe) if pe < 1 else 1.0
    return Agreement(n, round(po, 4), round(kappa, 4))
