"""The eval harness end to end: datasets, the runner with the embedded test model, error rows,
resuming, backend timeouts, metrics, the report, and the 'longqa eval' command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eval.datasets import load_jsonl, load_lara
from eval.evidence import SentenceIndex, locate_evidence, retrieval_hit
from eval.metrics import compute
from eval.report import write_report
from eval.runner import ResultStore, RunOptions, run_eval
from tests.conftest import shared

SAMPLE = Path(__file__).resolve().parents[1] / "app" / "samples" / "gold-bug-opening.txt"
LONGQA = Path(sys.executable).with_name("longqa")


def write_dataset(folder: Path) -> Path:
    (folder / "gold-bug.txt").write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    lines = [
        {"doc": "gold-bug.txt", "question": "On which island did the narrator's friend live?",
         "answer": "Sullivan's Island", "task": "location"},
        {"doc": "gold-bug.txt", "question": "What was the name of Stern's favourite horse?",
         "answer": "The text does not say.", "task": "hallu"},
        {"doc": "missing.txt", "question": "Who wrote it?", "answer": "Poe"},
        {"doc": "gold-bug.txt", "answer": "no question on this line"},
    ]  # fmt: skip
    path = folder / "set.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n", encoding="utf-8")
    return path


def test_jsonl_dataset_keeps_bad_lines_as_errors(tmp_path: Path) -> None:
    items = load_jsonl(write_dataset(tmp_path))
    assert len(items) == 5
    assert items[0].doc == str((tmp_path / "gold-bug.txt").resolve()) and not items[0].error
    assert items[3].error == "set.jsonl:4: no 'question'; add the question text"
    assert items[4].error.startswith("set.jsonl:5: not valid JSON")


def test_lara_dataset_round_robin_and_evidence() -> None:
    root = shared("lara")
    items = load_lara(root, limit=8)
    assert {it.task for it in items} == {"location", "reasoning", "comp", "hallu"}
    assert all(Path(it.doc).is_file() and not it.error for it in items)
    fin = next(it for it in load_lara(root, kinds=("financial",), tasks=("location",)) if "$" in it.answer)
    doc = SentenceIndex(Path(fin.doc).read_text(encoding="utf-8"))
    spans = locate_evidence(doc, fin.answer, fin.question, task=fin.task)
    assert spans and retrieval_hit(spans, [spans[0]]) is True and retrieval_hit(spans, [(0, 1)]) is False
    assert locate_evidence(doc, "The text does not say.", "Q?", task="hallu") == []


def test_runner_records_errors_resumes_and_reports(tmp_path: Path, service) -> None:  # type: ignore[no-untyped-def]
    service.settings.router.latency_budget_s = 1e9  # the learned policy decides, however busy the CPU
    items = load_jsonl(write_dataset(tmp_path))
    store = ResultStore(tmp_path / "out" / "results.jsonl")
    seen: list[tuple[int, int]] = []
    summary = run_eval(
        service,
        items,
        store,
        RunOptions(modes=("rag", "auto")),
        progress=lambda d, t, _w: seen.append((d, t)),
    )
    rows = {r.key: r for r in store.all()}
    assert len(rows) == 10 and summary.answered == 4 and summary.errors == 6
    assert "document 'missing.txt' not found" in rows[("set:3", "rag")].error
    assert rows[("set:4", "auto")].error == "set.jsonl:4: no 'question'; add the question text"
    good = rows[("set:1", "rag")]
    assert good.ok and good.answer and good.correct is not None and good.prompt_tokens > 0
    assert good.retrieval_hit is True  # "Sullivan's Island" is in the retrieved passages
    assert good.first_citations is not None and good.first_verified is not None
    if not good.rechecked:  # no re-check: the first try is what was shown
        assert (good.first_citations, good.first_verified) == (good.citations, good.verified)
    # Each shown citation's verdict and reason travel with the row.
    assert len(good.verdicts) == good.citations
    assert sum(v["verified"] for v in good.verdicts) == good.verified
    assert all(v["verdict"] and v["reason"] for v in good.verdicts)
    assert good.cut_off == good.answer.endswith(" …")  # an answer cut at the limit says so
    auto = rows[("set:1", "auto")]
    assert auto.mode in ("rag", "lc") and auto.route_reason and "p_lc_better" in auto.route_features
    assert seen[-1][0] == seen[-1][1] == 10

    again = run_eval(service, items, ResultStore(store.path), RunOptions(modes=("rag", "auto")))
    assert again.answered == 0 and again.skipped == 10

    metrics = compute(list(rows.values()))
    rag = metrics.cell("rag")
    assert rag is not None and rag.n == 2 and rag.errors == 3 and rag.retrieval_recall == 100.0
    assert metrics.routing is not None and metrics.routing.oracle_n == 0
    md = write_report(metrics, list(rows.values()), tmp_path / "out", config={"model": "smollm2-135m"})
    text = md.read_text()
    assert "## Per mode" in text and "## Routing" in text and "## Errors (6)" in text
    for name in (
        "report.html",
        "summary.json",
        "accuracy_by_task.png",
        "latency.png",
        "accuracy_vs_tokens.png",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "data:image/png;base64" in (tmp_path / "out" / "report.html").read_text()


def test_a_copy_of_an_ingested_document_resolves_to_it(tmp_path: Path, service) -> None:  # type: ignore[no-untyped-def]
    """An eval set moved or copied elsewhere names the same bytes at a new path: ingest keeps the
    first copy (same content), and the items must still find it, not fail as 'not ingested'."""
    from eval.runner import resolve_documents

    (tmp_path / "a").mkdir()
    resolve_documents(service, load_jsonl(write_dataset(tmp_path / "a")))
    (tmp_path / "b").mkdir()
    moved = write_dataset(tmp_path / "b")
    ids, failed = resolve_documents(service, load_jsonl(moved))
    doc = str((tmp_path / "b" / "gold-bug.txt").resolve())
    assert doc not in failed, failed
    assert ids[doc] == next(iter({d.doc_id for d in service.documents()}))
    assert list(failed) == ["missing.txt"]
    # The rule is app.ingest.stored_file, which batch uses too: by path, else by the bytes.
    from app.ingest import stored_file

    found = stored_file(service.store, tmp_path / "b" / "gold-bug.txt", {})
    assert found is not None and found.doc_id == ids[doc]
    (tmp_path / "other.txt").write_text("Never ingested.\n", encoding="utf-8")
    assert stored_file(service.store, tmp_path / "other.txt", {}) is None


def test_citation_figures_first_try_and_final(tmp_path: Path) -> None:
    """The share of shown citations verified, before and after the re-check; rows from before the
    first-try counts were recorded count in the final figure only."""
    from eval.runner import ResultRow

    def row(qid: str, shown: int, ok: int, first: tuple[int, int] | None) -> ResultRow:
        fc, fv = first if first else (None, None)
        return ResultRow(qid, "rag", "location", answer="x", citations=shown, verified=ok,
                         first_citations=fc, first_verified=fv)  # fmt: skip

    rows = [row("a", 2, 2, (2, 1)), row("b", 1, 0, (1, 0)), row("c", 0, 0, (0, 0))]
    rows.append(row("d", 1, 1, None))  # written before the first-try counts were recorded
    cell = compute(rows).cell("rag")
    assert cell is not None and cell.citations == 4
    assert cell.citation_verified == 75.0 and cell.citation_verified_first == round(100 / 3, 2)
    assert cell.answers_with_citation == 75.0 and cell.answers_with_verified == 50.0
    text = write_report(compute(rows), rows, tmp_path).read_text()
    assert "| 75.0% (33.3%) of 4 | 75% / 50% |" in text


def test_report_lists_unverified_citations_as_text(tmp_path: Path) -> None:
    """Each shown citation the check did not verify is listed with its claim and reason; text from
    documents, file names and models stays text in report.md and report.html (no HTML, no
    links, no emphasis, no cell breaks)."""
    from eval.runner import ResultRow

    claim = 'The fee was <img src=x onerror="alert(1)"> *$5* | [see](http://evil.example) :red[now]'
    verdicts = [
        {"number": 1, "verified": True, "verdict": "verified", "reason": "states it", "claim": "ok"},
        {
            "number": 2,
            "verified": False,
            "verdict": "not_stated",
            "reason": "model: No (0.12)",
            "claim": claim,
        },
    ]
    good = ResultRow("q1", "rag", "location", answer="x", citations=2, verified=1, verdicts=verdicts)
    bad = ResultRow("q2<b>", "rag", "location", error="document '<script>alert(2)</script>.txt' not found")
    out = tmp_path / "out"
    md = write_report(compute([good, bad]), [good, bad], out, config={"dataset": "<i>mine</i>"}).read_text()
    assert "## Citations shown unverified (1)" in md and "model: No (0.12)" in md
    assert "| q1 | rag | The fee was \\<img" in md and "states it" not in md
    page = (out / "report.html").read_text()
    for raw in ("<img src=x", "<script", "<i>", "<a href", "<em>$5", "<b>"):
        assert raw not in page, raw
    assert "The fee was &lt;img src=x" in page and "*$5* | [see](http://evil.example) :red[now]" in page
    assert "document '&lt;script&gt;alert(2)&lt;/script&gt;.txt' not found" in page


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An HTTP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    sock.close()


def test_a_backend_that_times_out_becomes_an_error_row(
    tmp_path: Path, settings, embedder, silent_server
) -> None:  # type: ignore[no-untyped-def]
    from app.llm.openai_compat import OpenAICompatGenerator
    from app.service import QAService

    gen = OpenAICompatGenerator(silent_server, "test", timeout_s=1.0, retries=0)
    svc = QAService(settings, embedder=embedder, generator=gen)
    try:
        items = load_jsonl(write_dataset(tmp_path))[:1]
        store = ResultStore(tmp_path / "r.jsonl")
        summary = run_eval(svc, items, store, RunOptions(modes=("rag",), retrieval_recall=False))
        row = store.all()[0]
        assert summary.errors == 1 and row.error_kind == "backend" and "the model failed" in row.error
        assert not store.done(row.key)  # backend failures are tried again on resume
    finally:
        svc.close()


def test_longqa_eval_command(tmp_path: Path, model_cache: Path) -> None:
    env = {
        **os.environ,
        "LONGQA_HOME": str(tmp_path / "home"),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MAX_TOKENS": "48",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
    }
    ds = write_dataset(tmp_path)
    out = tmp_path / "out"
    cmd = [
        str(LONGQA),
        "eval",
        str(ds),
        "--modes",
        "rag",
        "--model",
        "smollm2-135m",
        "--out",
        str(out),
        "--no-recall",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "2 answered" in r.stderr and "3 errors" in r.stderr and (out / "report.md").is_file()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "0 answered, 5 already done" in again.stderr
    other_cmd = [
        str(LONGQA),
        "eval",
        str(ds),
        "--modes",
        "rag",
        "--model",
        "qwen2.5-coder-1.5b",
        "--out",
        str(out),
    ]
    other = subprocess.run(other_cmd, env=env, capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "holds results for model 'smollm2-135m'" in other.stderr
    bad = subprocess.run(
        [str(LONGQA), "eval", str(ds), "--modes", "rag,fast"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown modes fast" in bad.stderr
