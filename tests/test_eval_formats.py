"""Eval dataset formats beyond LaRA: multiple choice (options, gold letters, letter extraction,
exact-set scoring), several gold answers, "Unanswerable" gold, inline contexts ingested once
per distinct text, LongBench-v2-style JSON, extra fields kept, length buckets in the report,
the judge agreement table, and 'longqa eval' end to end on the sample files in
tests/eval_samples/ with the embedded test model (SmolLM2), killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval.choices import ChoiceError, extract_letters, parse_gold_letters, parse_options, score
from eval.datasets import load_dataset, load_jsonl, load_longbench
from eval.judge import DeterministicJudge
from eval.metrics import compute, length_bucket
from eval.report import write_report
from eval.runner import ResultRow, judge_answer, materialize_contexts

SAMPLES = Path(__file__).resolve().parent / "eval_samples"
LONGQA = Path(sys.executable).with_name("longqa")
OPTS = parse_options(["Paris", "London", "Berlin", "Paris, France"])


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("Answer: (B)", "B"),
        ("Answer: B\nEvidence: London is the capital.", "B"),
        ("B and D", "BD"),
        ("**C**", "C"),
        ("the answer is A.", "A"),
        ("The answer is B because the text says so [1].", "B"),
        ("A", "A"),
        ("B. London is where the treaty was signed [2].", "B"),
        ("(C) Berlin", "C"),
        ("The correct answers are A, B, and D.", "ABD"),
        ("Answers: A/C", "AC"),
        ("(A) and (C)", "AC"),
        ("Answer: B, not A.", "B"),
        ("A is correct", "A"),
        ("I choose C.", "C"),
        ("Option B is correct.", "B"),
        ("The correct option is **D**.", "D"),
        ("Final answer: d", ""),  # lower-case letters are words, not choices
        ("It is Berlin, as the text says.", "C"),  # option text restated without a letter
        ("Paris, France is where it happened", "D"),  # the longer option contains the shorter one
        ("It was in Paris.", "A"),
        ("London or Berlin", ""),  # two options restated: ambiguous
        ("Answer: A new law was passed", ""),  # "A" as an article, not a choice
        ("A lot of text about nothing", ""),
        ("Because the text says", ""),  # the B of "Because" is not a letter
        ("The document does not say.", ""),
        ("", ""),
    ],
)
def test_letter_extraction(answer: str, letters: str) -> None:
    assert extract_letters(answer, OPTS) == letters


def test_options_and_gold_letters() -> None:
    opts = parse_options({"a": "yes", "B": "no", "(C)": "maybe"})
    assert opts == (("A", "yes"), ("B", "no"), ("C", "maybe"))
    assert parse_gold_letters("ABD", parse_options(list("wxyz"))) == "ABD"
    assert parse_gold_letters("A, C", opts) == "AC"
    assert parse_gold_letters(["b", "A"], opts) == "AB"
    assert parse_gold_letters("(C)", opts) == "C"
    assert parse_gold_letters("maybe", opts) == "C"  # an option's exact text
    with pytest.raises(ChoiceError, match="gold letter\\(s\\) E name no option"):
        parse_gold_letters("AE", opts)
    with pytest.raises(ChoiceError, match="not option letters"):
        parse_gold_letters("42", opts)
    with pytest.raises(ChoiceError, match="at least two options"):
        parse_options(["only one"])
    with pytest.raises(ChoiceError, match="option key 'first' is not a letter"):
        parse_options({"first": "x", "second": "y"})
    assert score("AC", "CA") and not score("A", "AC") and not score("", "")


def test_generic_jsonl_fields_and_errors(tmp_path: Path) -> None:
    items = {it.item_id: it for it in load_jsonl(SAMPLES / "mc_inline.jsonl")}
    trade = items["mc_inline:harbor-trade"]
    assert trade.is_mc and trade.answer == "AC" and trade.options[2] == ("C", "Bristol")
    assert trade.context.startswith("The harbour town of Velmora") and trade.doc == ""
    assert trade.extra == {"source": "written for the tests"}
    assert trade.gold_text == "Lisbon Bristol"
    prompt = trade.prompt_question()
    assert "(A) Lisbon" in prompt and "(D) Hamburg" in prompt and "Answer:" in prompt
    assert items["mc_inline:orchard-trees"].answer == "A"  # gold given as a list

    open_items = {it.item_id: it for it in load_jsonl(SAMPLES / "open_alt.jsonl")}
    island = open_items["open_alt:island"]
    assert island.golds == ("Sullivan's Island", "Sullivan Island", "an island near Charleston")
    assert Path(island.doc).is_file()
    horse = open_items["open_alt:horse"]
    assert horse.task == "unanswerable" and horse.extra == {"grader_note": "the story never mentions a horse"}

    bad = tmp_path / "bad.jsonl"
    lines = [
        {"question": "Q?", "answer": "x"},
        {"context": "Some text.", "question": "Q?", "options": ["a", "b"], "answer": "C"},
        {"context": "Some text.", "question": "Q?", "options": "a or b", "answer": "A"},
        {"doc": "x.txt", "context": "Some text.", "question": "Q?", "answer": "x"},
        {"context": "Some text.", "question": "Q?", "answer": "x", "alt_answers": "y"},
        {"context": "Some text.", "question": "Q?"},
        {"id": "q1", "context": "Some text.", "question": "Q?", "answer": "x"},
        {"id": "q1", "context": "Some text.", "question": "Q2?", "answer": "x"},
    ]
    bad.write_text("\n".join(json.dumps(x) for x in lines) + "\n[1]\n", encoding="utf-8")
    errors = [it.error for it in load_jsonl(bad)]
    assert errors[0] == (
        "bad.jsonl:1: no 'doc' and no 'context'; give a file path or document id as 'doc', "
        "or the text as 'context'"
    )
    assert errors[1] == "bad.jsonl:2: gold letter(s) C name no option (options: AB)"
    assert errors[2].startswith("bad.jsonl:3: 'options' must be a list of texts")
    assert errors[3] == "bad.jsonl:4: both 'doc' and 'context'; keep one of them"
    assert errors[4].startswith("bad.jsonl:5: 'alt_answers' must be a list of texts")
    assert errors[5].startswith("bad.jsonl:6: no 'answer'")
    assert errors[6] == ""
    assert errors[7] == "bad.jsonl:8: id 'q1' repeats an earlier line; give each line its own id"
    assert errors[8] == 'bad.jsonl:9: not a JSON object; write {"question": ..., "answer": ...} per line'


def test_longbench_json(tmp_path: Path) -> None:
    items = load_dataset(SAMPLES / "longbench_v2_sample.json")
    assert [it.item_id for it in items] == [
        "longbench_v2_sample:lb-001",
        "longbench_v2_sample:lb-002",
        "longbench_v2_sample:lb-003",
    ]
    first = items[0]
    assert first.is_mc and first.answer == "C" and first.options[2] == ("C", "grey granite")
    assert first.task == "Single-Document QA" and first.kind == "short"
    assert first.extra == {"sub_domain": "Town history", "difficulty": "easy", "length": "short"}
    assert first.context.startswith("The harbour town")
    broken = tmp_path / "lb.json"
    broken.write_text(json.dumps([{"_id": "x", "question": "Q?", "choice_A": "a"}]), encoding="utf-8")
    err = load_longbench(broken)[0].error
    assert err.startswith("lb.json: record 1: no 'choice_B', 'choice_C', 'choice_D', 'answer', 'context'")
    (tmp_path / "obj.json").write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="obj.json: a JSON dict, not a list of records"):
        load_longbench(tmp_path / "obj.json")


def test_inline_contexts_are_written_once_per_distinct_text(tmp_path: Path) -> None:
    items = load_jsonl(SAMPLES / "mc_inline.jsonl") + load_dataset(SAMPLES / "longbench_v2_sample.json")
    out = materialize_contexts(items, tmp_path / "contexts")
    files = sorted((tmp_path / "contexts").iterdir())
    assert len(files) == 2  # the harbour text and the orchard text, whichever file gave them
    assert {it.doc for it in out} == {str(f.resolve()) for f in files}
    stamp = [f.stat().st_mtime_ns for f in files]
    materialize_contexts(items, tmp_path / "contexts")
    assert [f.stat().st_mtime_ns for f in files] == stamp  # a rerun writes nothing


def test_judging_alt_answers_unanswerable_and_mc() -> None:
    det = DeterministicJudge()
    items = {it.item_id: it for it in load_jsonl(SAMPLES / "open_alt.jsonl")}
    island = items["open_alt:island"]
    _, v, llm = judge_answer(island, "He lived on an island near Charleston.", det, None)
    assert v.correct and "alternative answer 2" in v.reason and llm is None
    _, v, _ = judge_answer(island, "He lived in New Orleans.", det, None)
    assert not v.correct and "alternative" not in v.reason  # the first gold's verdict is shown
    horse = items["open_alt:horse"]
    assert judge_answer(horse, "The document does not say.", det, None)[1].correct
    assert not judge_answer(horse, "His horse was called Jupiter.", det, None)[1].correct
    trade = next(it for it in load_jsonl(SAMPLES / "mc_inline.jsonl") if it.answer == "AC")
    chosen, v, _ = judge_answer(trade, "Answer: A and C. Lisbon and Bristol buy it [1].", det, None)
    assert chosen == "AC" and v.correct and v.reason == "chose AC; correct AC"
    chosen, v, _ = judge_answer(trade, "Answer: A [1]", det, None)
    assert chosen == "A" and not v.correct


def _row(item: str, mode: str, correct: bool, tokens: int, task: str = "t", **kw) -> ResultRow:  # type: ignore[no-untyped-def]
    return ResultRow(item, mode, task, answer="x", correct=correct, doc_tokens=tokens, **kw)


def test_length_buckets_and_judge_table_in_the_report(tmp_path: Path) -> None:
    assert [length_bucket(n) for n in (0, 500, 8_000, 40_000, 200_000)] == [
        "?",
        "<8k",
        "8-32k",
        "32-128k",
        ">128k",
    ]
    rows = [
        _row("a", "rag", True, 3_000, llm_correct=True),
        _row("a", "lc", True, 3_000, llm_correct=False),
        _row("b", "rag", False, 50_000, llm_correct=False),
        _row("b", "lc", True, 50_000, llm_correct=True),
        _row("c", "rag", True, 60_000, task="u", llm_correct=True),
        _row("c", "lc", False, 60_000, task="u", mc=True, choice=""),
    ]
    m = compute(rows)
    assert m.buckets == ("<8k", "32-128k")
    assert m.length_cell("rag", "32-128k").accuracy == 50.0  # type: ignore[union-attr]
    assert m.length_cell("lc", "<8k").accuracy == 100.0  # type: ignore[union-attr]
    overall = m.judge_table[-1]
    assert overall.task == "all" and overall.n == 5 and overall.det_only == 1 and overall.llm_only == 0
    assert m.mc == {"lc": (1, 1)}
    md = write_report(m, rows, tmp_path).read_text()
    assert "## Accuracy by document length (tokens)" in md
    assert "| 32-128k | 50.0% (n=2) | 50.0% (n=2) |" in md
    assert "| all | 5 | 80.0% |" in md and "lc 1 of 1" in md
    assert (tmp_path / "accuracy_by_length.png").stat().st_size > 0


# -- end to end: 'longqa eval' with the embedded test model -------------------------------------


def _env(tmp_path: Path, model_cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LONGQA_HOME": str(tmp_path / "home"),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MAX_TOKENS": "40",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
    }


def _cmd(dataset: Path, out: Path, *more: str) -> list[str]:
    return [str(LONGQA), "eval", str(dataset), "--modes", "rag,lc,auto", "--model", "smollm2-135m",
            "--out", str(out), *more]  # fmt: skip


def _results(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def test_longqa_eval_mc_inline_killed_and_resumed(tmp_path: Path, model_cache: Path) -> None:
    env, out = _env(tmp_path, model_cache), tmp_path / "out"
    cmd = _cmd(SAMPLES / "mc_inline.jsonl", out)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "results.jsonl").is_file() and len(_results(out)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before = _results(out)
    assert 2 <= len(before) < 9
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert f"{9 - len(before)} answered, {len(before)} already done, 0 errors" in r.stderr
    rows = _results(out)
    assert len(rows) == 9 and len({(x["item_id"], x["mode_requested"]) for x in rows}) == 9
    assert rows[: len(before)] == before  # nothing asked twice
    assert len(list((out / "contexts").iterdir())) == 2  # two distinct inline texts, ingested once each
    trade = [x for x in rows if x["item_id"] == "mc_inline:harbor-trade"]
    assert {x["mode_requested"] for x in trade} == {"rag", "lc", "auto"}
    for x in trade:
        assert x["mc"] and x["gold"] == "AC" and x["extra"] == {"source": "written for the tests"}
        assert x["correct"] == (x["choice"] == "AC") and 50 < x["doc_tokens"] < 200
        assert x["judge_reason"].startswith(f"chose {x['choice'] or 'no option'}; correct AC")
        assert x["question"] == "Which cities buy Velmora's salted cod?"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Accuracy by document length (tokens)" in report and "| <8k |" in report
    assert "| fact |" in report and "| multi |" in report and "exact set match" in report
    assert (out / "accuracy_by_length.png").stat().st_size > 0
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 answered, 9 already done" in again.stderr
    assert len(_results(out)) == 9


@pytest.mark.slow  # about 2 minutes: every answer is judged twice
def test_longqa_eval_open_set_with_both_judges(tmp_path: Path, model_cache: Path) -> None:
    out = tmp_path / "open"
    r = subprocess.run(
        _cmd(SAMPLES / "open_alt.jsonl", out, "--judge", "both", "--no-recall"),
        env=_env(tmp_path, model_cache),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    rows = _results(out)
    assert len(rows) == 9 and all(not x["error"] for x in rows)
    assert all(x["llm_correct"] is not None and not x["mc"] for x in rows)
    horse = next(x for x in rows if x["item_id"] == "open_alt:horse")
    assert horse["task"] == "unanswerable"
    assert horse["extra"] == {"grader_note": "the story never mentions a horse"}
    island = next(x for x in rows if x["item_id"] == "open_alt:island")
    assert island["alt_answers"] == ["Sullivan Island", "an island near Charleston"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Judges" in report and "| all | 9 |" in report and "Cohen's kappa" in report


def test_longqa_eval_longbench_json(tmp_path: Path, model_cache: Path) -> None:
    out = tmp_path / "lb"
    r = subprocess.run(
        _cmd(SAMPLES / "longbench_v2_sample.json", out, "--limit", "2"),
        env=_env(tmp_path, model_cache),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    rows = _results(out)
    assert len(rows) == 6 and all(x["mc"] and not x["error"] for x in rows)
    # --limit takes turns over (length, domain): one question of each domain
    assert {x["task"] for x in rows} == {"Single-Document QA", "Long In-context Learning"}
    assert {x["gold"] for x in rows} == {"C", "D"}
    assert {x["extra"]["sub_domain"] for x in rows} == {"Town history", "Farming"}
    assert all(x["correct"] == (x["choice"] == x["gold"]) for x in rows)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| Single-Document QA |" in report and "| Long In-context Learning |" in report
    assert "| <8k |" in report and (out / "accuracy_by_length.png").is_file()
