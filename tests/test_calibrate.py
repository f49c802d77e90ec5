"""``longqa calibrate``: the model's own LC-vs-RAG measurements become the router's profile."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from app.routing.profiles import CALIBRATED_FILE, load_calibrated, profile_caption
from app.routing.router import class_prior
from eval.calibrate import Pair, bucket_of, calibrated_profile, measurements, pairs
from eval.runner import ResultRow

ROOT = Path(__file__).resolve().parents[1]
LONGQA = ROOT / ".venv" / "bin" / "longqa"
SAMPLES = ROOT / "tests" / "eval_samples"


def _rows(item: str, task: str, tokens: int, rag: bool | None, lc: bool | None, **kw) -> list[ResultRow]:  # type: ignore[no-untyped-def]
    return [
        ResultRow(item, m, task, correct=ok, doc_tokens=tokens, **kw)
        for m, ok in (("rag", rag), ("lc", lc))
        if ok is not None or kw
    ]


def test_pairs_keep_only_questions_judged_in_both_modes() -> None:
    rows = [
        *_rows("a", "location", 30_000, True, False),
        *_rows("b", "comp", 30_000, False, True),
        ResultRow("c", "rag", "comp", correct=True, doc_tokens=30_000),  # no LC answer yet
        *_rows("d", "comp", 30_000, None, None, error="the model failed"),
    ]
    got = pairs(rows)
    assert [(p.item_id, p.rag_ok, p.lc_ok) for p in got] == [("a", True, False), ("b", False, True)]


def test_measurements_bucket_by_length_at_the_median() -> None:
    ps = [Pair(f"q{i}", "comp", t, False, True) for i, t in enumerate((5_000, 7_000, 8_000, 30_000))]
    ms = measurements(ps)
    assert bucket_of(5_000) == 0 and bucket_of(7_000) == bucket_of(8_000) == 1
    assert [(m.tokens, m.task, m.diffs) for m in ms] == [
        (5_000, "comp", (1,)),
        (7_500, "comp", (1, 1)),
        (30_000, "comp", (1,)),
    ]


def test_few_questions_stay_near_the_prior_many_move_to_the_measurement() -> None:
    prior = class_prior(1.5)
    assert prior is not None and prior.points
    mu0 = prior.advantage_at(30_000)
    assert mu0 is not None

    def profile(n: int):  # type: ignore[no-untyped-def]
        # LC wins 3 of 4 disagreements: a raw advantage of +0.25 on n questions of one task.
        ps = [Pair(f"q{i}", "comp", 30_000, i % 4 == 3, i % 4 != 3 and i % 2 == 0) for i in range(n)]
        raw = sum(p.lc_ok - p.rag_ok for p in ps) / n
        return calibrated_profile("m", 1.5, measurements(ps), prior, "2026-12-06T18:00:00"), raw

    small, raw = profile(8)
    big, _ = profile(400)
    assert small.source == "calibrated" and small.points[0].n == 8
    assert abs(small.advantage_at(30_000) - mu0) < abs(big.advantage_at(30_000) - mu0)  # type: ignore[operator]
    assert abs(big.advantage_at(30_000) - raw) < abs(small.advantage_at(30_000) - raw)  # type: ignore[operator]
    assert big.sd_at(30_000) < small.sd_at(30_000) < prior.sd_at(30_000)


@pytest.mark.timeout(900)
def test_longqa_calibrate_writes_the_profile_the_router_uses_and_resumes(
    tmp_path: Path, model_cache: Path
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "24",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
    }
    data = SAMPLES / "open_alt.jsonl"

    def calibrate() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(LONGQA), "calibrate", str(data), "--limit", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
        return done

    first = calibrate()
    assert "6 answered, 0 already done" in first.stderr, first.stderr
    assert "router profile for smollm2-135m written to" in first.stderr
    path = home / CALIBRATED_FILE
    saved = json.loads(path.read_text())
    assert saved["questions"] == 3 and saved["dataset"] == str(data.resolve())
    prof = load_calibrated(path)
    assert prof is not None and prof.name == "smollm2-135m" and prof.source == "calibrated"
    assert sum(p.n for p in prof.points) == 3 and all(p.sd > 0 for p in prof.points)
    # The calibration's documents went to its own library, not the user's.
    assert not (home / "longqa.db").exists() and (home / "calibration" / "library").is_dir()
    # The service (and so the router and the app's caption) now uses it.
    from app.service import QAService
    from app.settings import Settings

    svc = QAService(Settings(data_dir=home, model_cache=model_cache, llm={"model": "smollm2-135m"}))
    try:
        used = svc.router_profile()
    finally:
        svc.close()
    assert used == prof
    assert profile_caption(used).startswith("Router profile: calibrated for this model on ")
    # Rerun: nothing is asked again.
    again = calibrate()
    assert "0 answered, 6 already done" in again.stderr, again.stderr


def test_cut_documents_keep_the_window_with_the_question_and_answer(tmp_path: Path) -> None:
    from eval.calibrate import CHARS_PER_TOKEN, cut_items
    from eval.datasets import EvalItem

    filler = " ".join(f"Paragraph {i} talks about the weather in spring and rain." for i in range(3000))
    needle = " The treasury reported total stockholders' equity of $2,576,340 as of March 31, 2024. "
    doc = tmp_path / "report.txt"
    doc.write_text(filler[: len(filler) // 2] + needle + filler[len(filler) // 2 :], encoding="utf-8")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    items = [
        EvalItem(
            "q1",
            "What was the total stockholders' equity as of March 31, 2024?",
            "$2,576,340.",
            "location",
            str(doc),
        ),
        EvalItem("q2", "What was the total stockholders' equity?", "$2,576,340", "location", str(doc)),
        EvalItem("q3", "Anything?", "x", "location", str(pdf)),
    ]
    cut = cut_items(items, (1000, 2000))
    assert [c.item_id for c in cut] == ["q1@1k", "q2@2k", "q3"]
    for c, tokens in zip(cut[:2], (1000, 2000)):
        assert c.doc == "" and "2,576,340" in c.context
        assert tokens * CHARS_PER_TOKEN - 200 <= len(c.context) <= tokens * CHARS_PER_TOKEN
        assert c.extra == {"cut_from": "report.txt", "cut_tokens": tokens}
        assert not c.context.startswith(" ") and c.context.split()[0] in filler + needle
    assert cut[2] == items[2]  # not a text file: whole
    assert cut_items(items, ()) == items
    short = cut_items(items[:1], (100_000,))
    assert short == items[:1]  # already shorter than the length asked


def test_calibrate_lengths_option_is_checked() -> None:
    import typer

    from eval.calibrate_cli import parse_lengths

    assert parse_lengths("4000, 8k,") == (4000, 8000)
    assert parse_lengths(None) == ()
    with pytest.raises((typer.Exit, SystemExit)):
        parse_lengths("4000,lots")
