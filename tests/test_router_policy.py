"""The learned router: question types, the shipped policy, reasons, Self-Route fallback, speed."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.llm.base import Generation, Message
from app.refusals import is_refusal
from app.routing.qtype import QuestionTypeClassifier, featurize, train_qtype
from app.routing.router import (
    RetrievalEvidence,
    RouteInputs,
    RouterPolicy,
    answer_features,
    load_policy,
    model_profile,
    retrieval_evidence,
    route,
    should_fall_back,
)

SAMPLES = Path(__file__).resolve().parents[1] / "app" / "samples"


def inputs(question: str, model: str = "gpt-4o", **kw) -> RouteInputs:  # type: ignore[no-untyped-def]
    base = dict(
        doc_tokens=25000,
        window=131072,
        reserved_tokens=456,
        prefill_tokens_per_s=5000.0,
        cached_tokens=0,
        latency_budget_s=60.0,
        question=question,
        model=model_profile(model),
    )
    base.update(kw)
    return RouteInputs(**base)  # type: ignore[arg-type]


def test_question_types_of_typical_questions() -> None:
    clf = QuestionTypeClassifier.load()
    assert (
        clf.predict("How do papers 0 and 1 differ in their approach to training stability?").label == "comp"
    )
    assert (
        clf.predict("What was the company's total stockholders' equity as of March 31, 2024?").label
        == "location"
    )
    p = clf.predict("What was the name of the horse that Hartman rode during his morning commute?")
    assert p.label == "hallu" and abs(sum(p.probs.values()) - 1) < 1e-3
    assert "cue:two_parts" in featurize("Compare papers 1 and 2.")


def test_classifier_trains_and_round_trips(tmp_path: Path) -> None:
    qs = [
        "How do papers 0 and 1 differ?",
        "How do parts 1 and 2 compare?",
        "What was the revenue?",
        "Who wrote it?",
    ]
    clf = train_qtype(qs * 3, ["comp", "comp", "location", "location"] * 3)
    clf.save(tmp_path / "q.json")
    again = QuestionTypeClassifier.load(tmp_path / "q.json")
    assert again.predict("How do papers 3 and 4 differ?").label == "comp"
    assert again.predict("How do papers 3 and 4 differ?").probs["hallu"] < 0.01  # never seen in training
    with pytest.raises(ValueError, match="unknown question types"):
        train_qtype(["q"], ["nonsense"])
    with pytest.raises(FileNotFoundError, match="router_train.py"):
        QuestionTypeClassifier.load(tmp_path / "missing.json")


def test_comparison_goes_to_lc_for_a_strong_model_and_trick_questions_to_rag() -> None:
    comp = route(inputs("How do papers 0 and 1 differ in their approach to training stability?"))
    assert comp.mode == "lc" and "comparison" in comp.reason and comp.features["q_comp"] > 0.5
    trick = route(inputs("What was the name of the horse that Hartman rode?", "qwen2.5-7b-instruct"))
    assert trick.mode == "rag" and "unanswerable" in trick.reason
    weak = route(
        inputs("How do papers 0 and 1 differ in their approach to training stability?", "mistral-nemo")
    )
    assert weak.mode == "rag"  # LaRA: Mistral-Nemo reads long context badly
    for d in (comp, trick, weak):
        assert {"p_lc_better", "threshold", "model_lc_adv", "doc_tokens"} <= set(d.features)


def test_a_cached_document_lowers_the_bar_for_lc() -> None:
    q = "What was the company's total stockholders' equity as of March 31, 2024?"
    cold = route(inputs(q))
    warm = route(inputs(q, cached_tokens=24900))
    assert warm.features["threshold"] < cold.features["threshold"]
    assert warm.mode == "lc" and "cached" in warm.reason and "costs little" in warm.reason


def test_hard_limits_still_come_first() -> None:
    too_long = route(inputs("How do papers 0 and 1 differ?", doc_tokens=200_000))
    assert too_long.mode == "rag" and "window" in too_long.reason
    slow = route(inputs("How do papers 0 and 1 differ?", prefill_tokens_per_s=50.0))
    assert slow.mode == "rag" and "budget" in slow.reason


def test_self_route_fallback() -> None:
    q = "What was the company's total stockholders' equity as of March 31, 2024?"
    refusal = "The provided excerpts do not mention the stockholders' equity."
    model = "qwen2.5-7b-instruct"
    before = route(inputs(q, model))
    assert before.mode == "rag" and before.features["q_hallu"] < load_policy().max_hallu_for(model)
    assert before.facts is not None and before.facts.p_unanswerable == before.features["q_hallu"]
    fb = should_fall_back(q, refusal, before, model=model)
    assert fb.rerun and fb.rule and fb.target == "lc" and "Self-Route" in fb.reason
    answered = should_fall_back(q, "It was $2,576,340 [1].", before, model=model)
    assert not answered.rerun
    # Where training turned the rule off (max_hallu 0), the learned score still weighs the refusal.
    gpt = route(inputs(q))
    off = RouterPolicy.from_json(
        {
            **load_policy().to_json(),
            "per_model": {"gpt-4o": {"lc": 0.7, "fallback": 0.65, "fallback_max_hallu": 0.0}},
        }
    )
    assert (
        off.max_hallu_for("gpt-4o") == 0.0
        and off.max_hallu_for("other") == off.thresholds_for("other").fallback_max_hallu
    )
    learned = should_fall_back(q, refusal, gpt, model="gpt-4o", policy=off)
    assert learned.rerun and not learned.rule and "unsure" in learned.reason
    plain = should_fall_back(q, "It was $2,576,340 [1].", gpt, model="gpt-4o", policy=off)
    assert not plain.rerun and plain.score < learned.score
    trick_q = "What was the name of the horse that Hartman rode?"
    trick = should_fall_back(
        trick_q, "The text does not mention a horse.", route(inputs(trick_q)), model="gpt-4o"
    )
    assert not trick.rerun and "unanswerable" in trick.reason
    # A document that does not fit: the fallback reads more passages instead.
    big = route(inputs(q, doc_tokens=200_000))
    assert should_fall_back(q, "The sources do not say.", big).target == "rag-wide"


def test_answer_features_and_refusals() -> None:
    f = answer_features("However, the provided chunks do not explicitly state it; it may be 2019.")
    assert (
        f["ans_refused"] == 1 and f["ans_hedged"] == 1 and f["ans_excerpts"] == 1 and f["ans_has_number"] == 1
    )
    assert f["ans_pure_refusal"] == 0  # it goes on to guess
    # How much of what the question asks about the answer covers: its words, years and papers.
    q = "How did revenue change from 2022 to 2023 in paper 1 and paper 2?"
    half = answer_features("Paper 1 reports revenue of $5M in 2023.", q)
    assert half["ans_year_cover"] == 0.5 and half["ans_paper_cover"] == 0.5 and 0 < half["ans_q_cover"] < 1
    full = answer_features("The revenue change: $4M in 2022 to $5M in 2023 (paper 1 and paper 2).", q)
    assert full["ans_year_cover"] == 1 and full["ans_paper_cover"] == 1 and full["ans_q_cover"] == 1
    assert not is_refusal("Net loss was $1,093,095.")


def test_retrieval_evidence() -> None:
    ev = retrieval_evidence([0.1, 0.12, 0.8], [0.71, 0.5, None])
    assert ev == RetrievalEvidence(top_score=0.71, score_gap=0.21, scatter=0.7, n_hits=3)
    assert retrieval_evidence([], []) is None


def test_retrieval_evidence_weighs_in_and_missing_evidence_is_neutral() -> None:
    policy = load_policy()
    assert policy.uses_retrieval and policy.retrieval_defaults is not None
    q = "What did the narrator find buried under the tree?"
    found = route(
        inputs(q, retrieval=RetrievalEvidence(top_score=0.78, score_gap=0.2, scatter=0.02, n_hits=6))
    )
    lost = route(inputs(q, retrieval=RetrievalEvidence(top_score=0.3, score_gap=0.01, scatter=0.9, n_hits=6)))
    # Retrieval that finds one strong, local passage favours RAG; weak, scattered hits favour LC.
    assert lost.features["p_lc_better"] > found.features["p_lc_better"] + 0.1
    assert found.features["ret_missing"] == 0.0 and found.features["ret_top"] == 0.78
    # Without evidence the training means stand in, flagged as missing: the score sits in between.
    none = route(inputs(q))
    assert none.features["ret_missing"] == 1.0
    assert none.features["ret_top"] == policy.retrieval_defaults.top_score
    assert found.features["p_lc_better"] < none.features["p_lc_better"] < lost.features["p_lc_better"]


def test_policy_file_round_trips_and_is_data(tmp_path: Path) -> None:
    policy = load_policy()
    data = policy.to_json()
    assert data["kind"] == "longqa-router-policy" and len(data["before"]["features"]) == len(
        data["before"]["coef"]
    )
    assert RouterPolicy.from_json(json.loads(json.dumps(data))) == policy
    assert policy.thresholds_for("an unknown model") == policy.thresholds
    with pytest.raises(ValueError, match="not a router policy"):
        RouterPolicy.from_json({"kind": "other"})


def test_decision_is_fast() -> None:
    route(inputs("warm-up question?"))
    qs = ["How did the net loss change from 2023 to 2024, and why?", "Who is the narrator's friend?"] * 25
    t0 = time.perf_counter()
    for q in qs:
        route(inputs(q))
    per = (time.perf_counter() - t0) / len(qs)
    assert per < 0.05, f"{per * 1000:.1f} ms per decision"


class Scripted:
    """A generator that cannot find the answer in excerpts but finds it in the whole document.
    It counts a token a character, so the sample reads as a ~26k-token document."""

    name = "scripted"
    context_window = 131072

    def __init__(self, prefill_tokens_per_s: float = 1e6) -> None:
        self.prefill_tokens_per_s = prefill_tokens_per_s
        self.calls: list[str] = []

    def count_tokens(self, text: str) -> int:
        return 3 * len(text)

    def generate(self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0, stop=None):  # type: ignore[no-untyped-def]
        user = messages[-1].content
        rag = user.startswith("Sources:")
        self.calls.append("rag" if rag else "lc")
        text = "The document does not say." if rag else "He lived on Sullivan's Island."
        return Generation(text, len(user) // 4, 8, 0.01)


def test_service_falls_back_to_the_whole_document(settings, embedder) -> None:  # type: ignore[no-untyped-def]
    from app.service import QAService

    gen = Scripted()
    svc = QAService(settings, embedder=embedder, generator=gen)
    try:
        svc.ingest([SAMPLES / "gold-bug-opening.txt"])
        # On topic, so retrieval is confident and the policy picks RAG; the scripted RAG answer
        # then says the excerpts do not have it (an off-topic question would go to LC directly).
        q = "Where did William Legrand live?"
        ans = svc.ask(q, mode="auto")
        assert gen.calls == ["rag", "lc"]
        assert (
            ans.mode == "lc" and "Self-Route" in ans.route.reason and "fallback_score" in ans.route.features
        )
        assert (
            ans.route.facts is not None
            and ans.route.facts.fallback_score == ans.route.features["fallback_score"]
        )
        assert ans.usage.prompt_tokens > 2000  # both prompts are counted
        gen.calls.clear()
        forced = svc.ask(q, mode="rag")
        assert gen.calls == ["rag"] and forced.mode == "rag" and forced.route.forced
    finally:
        svc.close()
    # Reading the whole document is over the latency budget: the fallback reads more passages.
    slow = Scripted(prefill_tokens_per_s=10.0)
    svc = QAService(settings, embedder=embedder, generator=slow)
    try:
        ans = svc.ask(q, mode="auto")
        assert slow.calls == ["rag", "rag"] and ans.mode == "rag" and "more passages" in ans.route.reason
    finally:
        svc.close()
