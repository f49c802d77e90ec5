"""The offline router study on LaRA's published predictions: folds by document, no leakage,
thresholds within the token budget, and the routed policy against the fixed modes."""

from __future__ import annotations

from eval.judge import DeterministicJudge
from eval.lara import load_predictions, load_questions
from eval.router_study import (
    HALLU_GRID,
    PolicyResult,
    build_cases,
    choose_policy,
    choose_thresholds,
    decide,
    doc_info,
    document_folds,
    fit_fold,
    pick,
    rule_inputs,
    score_cases,
)
from eval.validate import judge_answers
from tests.conftest import shared

MODEL = "qwen2.5-7b-instruct"


def _cases(step: int):  # type: ignore[no-untyped-def]
    """Every ``step``-th LaRA 32k question with MODEL's published answers, judged (quick)."""
    root = shared("lara")
    questions = load_questions(root)[::step]
    answers = load_predictions(root, models=[MODEL], questions=questions)
    verdicts = judge_answers(DeterministicJudge(), questions, answers)
    docs = {
        q.doc_key: doc_info((root / "32k" / q.doc_key).read_text(encoding="utf-8"), lambda t: len(t) // 4)
        for q in questions
    }
    return questions, build_cases(questions, verdicts, {k: a.prediction for k, a in answers.items()}, docs)


def test_study_on_one_model() -> None:
    questions, cases = _cases(2)  # half the questions keep the test quick
    folds = document_folds(questions, 3)
    assert set().union(*folds) == {q.doc_key for q in questions} and not folds[0] & folds[1]

    test_docs = folds[0]
    train = [c for c in cases if c.q.doc_key not in test_docs]
    test = [c for c in cases if c.q.doc_key in test_docs]
    fm = fit_fold(questions, train)
    assert {c.q.qid for c in train}.isdisjoint(c.q.qid for c in test)
    assert set(fm.profiles) == {MODEL} and fm.profiles[MODEL].lc_advantage is not None

    s1, s2, rules = score_cases(fm, train)
    t1, t2 = choose_thresholds(train, s1, s2, rules, 0.4)
    spent = sum(decide(c, a, b, r, t1, t2).tokens for c, a, b, r in zip(train, s1, s2, rules))
    assert spent <= 0.4 * sum(c.lc_tokens for c in train)

    te1, te2, te_rule = score_cases(fm, test)
    routed, lc, rag = PolicyResult("routed"), PolicyResult("lc"), PolicyResult("rag")
    for c, a, b, r in zip(test, te1, te2, te_rule):
        routed.add(c, decide(c, a, b, r, t1, t2))
        lc.add(c, pick(c, "lc"))
        rag.add(c, pick(c, "rag"))
    assert routed.token_ratio(MODEL) < 0.6  # held-out documents: near the budget, far below always-LC
    assert routed.accuracy(MODEL) > rag.accuracy(MODEL) - 1.0
    assert lc.token_ratio(MODEL) == 1.0 and 0 < rag.token_ratio(MODEL) < 0.3


def test_thresholds_and_the_rule_limit_are_chosen_within_the_budget() -> None:
    questions, cases = _cases(4)
    fm = fit_fold(questions, cases)
    s1, s2, _ = score_cases(fm, cases)
    refused, hallu = rule_inputs(fm, cases)
    folds = document_folds(questions, 3)
    fold_of = {d: j for j, f in enumerate(folds) for d in f}
    groups = [fold_of[c.q.doc_key] for c in cases]
    for grp in (None, groups):
        t1, t2, mh = choose_policy(cases, s1, s2, refused, hallu, 0.4, groups=grp)
        assert mh in HALLU_GRID
        rules = [r and h < mh for r, h in zip(refused, hallu)]
        cost = [decide(c, a, b, r, t1, t2).tokens for c, a, b, r in zip(cases, s1, s2, rules)]
        assert sum(cost) <= 0.4 * sum(c.lc_tokens for c in cases)
        if grp is not None:  # the budget holds on every group of documents
            for j in range(3):
                mine = [i for i, g in enumerate(groups) if g == j]
                assert sum(cost[i] for i in mine) <= 0.4 * sum(cases[i].lc_tokens for i in mine)
    # The rule limit fixed at 0.5 gives choose_thresholds' answer.
    rules = [r and h < 0.5 for r, h in zip(refused, hallu)]
    assert (
        choose_thresholds(cases, s1, s2, rules, 0.4)
        == choose_policy(cases, s1, s2, refused, hallu, 0.4, hallu_grid=(0.5,))[:2]
    )
