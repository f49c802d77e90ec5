"""The judges: deterministic rules on real LaRA answers, the LLM judge's parsing, agreement,
and the deterministic judge against the LaRA paper's LLM judge on published predictions."""

from __future__ import annotations

import pytest

from eval.judge import DeterministicJudge, LLMJudge, agreement, judge_messages, parse_verdict
from eval.textnorm import is_pure_refusal, is_refusal, key_quantities, quantities
from tests.conftest import shared

J = DeterministicJudge()


def ok(question: str, prediction: str, gold: str, task: str = "location") -> bool:
    return J.judge(question, prediction, gold, task).correct


def test_containment_and_paraphrase() -> None:
    assert ok(
        "What animals did the narrator bring aboard?",
        "A cat and two pigeons.",
        "A pair of pigeons and a cat.",
    )
    assert ok("Where did they go first?", "They went to the Castle of Chillon.", "They went to Chillon.")
    assert not ok("Who is the 'Queen of courtesy'?", "The Queen of heaven.", "Miriam.")


def test_numbers_with_units_scale_and_rounding() -> None:
    q = "What was the total cash as of March 31, 2024?"
    assert ok(q, "As of March 31, 2024 the company had $4,084,076 in cash.", "$4.1 million.")
    assert ok(q, "Cash was $6.0 million.", "$6,000,000.")
    assert not ok(q, "The cash was $1,000.", "$234,051.")
    assert ok(q, "It was $(41,782) thousand.", "$(41,782,000)")
    # Dates and the question's own numbers are not answer numbers.
    assert key_quantities("The net loss on March 31, 2024 was $1,093,095.", q)[0].value == 1093095
    assert [x.value for x in quantities("45.7% and 2.5 BLEU in 2023")] == [45.7, 2.5]


def test_unanswerable_questions_need_a_refusal_without_a_guess() -> None:
    q = "What was the name of the horse Hartman rode?"
    gold = "The text does not mention any horse."
    assert J.judge(q, "There is no mention of a horse in the text.", gold, "hallu").correct
    assert J.judge(q, "No such horse is mentioned in the provided chunks.", gold, "hallu").correct
    assert not J.judge(q, "The horse was called Thunder.", gold, "hallu").correct
    guess = "The text does not say; however, it can be inferred that it was likely a grey mare."
    v = J.judge(q, guess, gold, "hallu")
    assert not v.correct and "guesses" in v.reason
    assert is_refusal(guess) and not is_pure_refusal(guess)


def test_refusing_an_answerable_question_is_wrong() -> None:
    v = J.judge(
        "What was the net loss?",
        "The provided text does not specify the net loss.",
        "$1,093,095.",
        "location",
    )
    assert not v.correct and "does not say" in v.reason


def test_long_answers_by_word_overlap() -> None:
    q = "Why did the Company's inventory change in the quarter?"
    gold = "Inventory increased from $282,071 to $407,357, up $125,286, tying up cash in unsold goods."
    good = "Inventory rose by $125,286 (from $282,071 to $407,357), which tied up cash in unsold goods."
    bad = "The company focused on marketing and hired a new chief executive officer during the quarter."
    assert J.judge(q, good, gold, "reasoning").correct
    assert not J.judge(q, bad, gold, "reasoning").correct
    assert not J.judge(q, "", gold, "reasoning").correct


def test_llm_judge_prompt_and_verdict_parsing() -> None:
    msgs = judge_messages("Q?", "pred", "gold", "hallu")
    assert "does not contain the answer" in msgs[1].content and "True or False" in msgs[1].content
    assert "key facts" in judge_messages("Q?", "pred", "gold", "location")[1].content
    assert parse_verdict("True.") is True and parse_verdict(" false, because") is False
    assert parse_verdict("I cannot tell") is None


def test_llm_judge_with_the_embedded_test_model(smol) -> None:  # type: ignore[no-untyped-def]
    judge = LLMJudge(smol, max_tokens=3)
    v = judge.judge(
        "On which island did Legrand live?", "Sullivan's Island.", "Sullivan's Island", "location"
    )
    assert v.judge == "llm:smollm2-135m" and isinstance(v.correct, bool) and v.reason


def test_agreement_and_kappa() -> None:
    a = agreement([True, True, False, False], [True, False, False, False])
    assert a.n == 4 and a.agree == 0.75 and 0 < a.kappa < 1
    assert agreement([True, False], [True, False]).kappa == 1.0
    with pytest.raises(ValueError, match="different numbers"):
        agreement([True], [])


def test_judge_tracks_the_paper_on_published_predictions() -> None:
    """Every third question, all paper models: our per-row accuracy must rank like the paper's."""
    from eval.lara import load_paper_table, load_predictions, load_questions
    from eval.validate import compare_with_paper, judge_answers, task_accuracy

    root = shared("lara")
    questions = load_questions(root)[::3]
    paper = load_paper_table(root / "paper_table_32k.csv")
    models = sorted({r.prediction_dir for r in paper})
    answers = load_predictions(root, models=models, questions=questions)
    verdicts = judge_answers(J, questions, answers)
    result = compare_with_paper(J.name, task_accuracy(verdicts, questions), paper, len(verdicts))
    assert len(result.rows) == 22
    assert result.spearman_cells > 0.85 and result.mae_cells < 6
    assert result.spearman_overall > 0.7 and result.mae_overall < 5
