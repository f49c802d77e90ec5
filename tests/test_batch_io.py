"""Question files in, result tables out, and the journal that makes batch runs resumable.

No models here: these are the parsing and bookkeeping rules, on real LaRA question files
where the format allows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.batch.files import (
    QuestionFileError,
    check_output_path,
    read_questions,
    read_table,
    write_table,
)
from app.batch.run import BatchError, DocRef, DocumentSet, Journal, RowResult, make_tasks, row_key
from tests.conftest import shared


def test_csv_columns_extras_and_bad_rows(tmp_path: Path) -> None:
    f = tmp_path / "q.csv"
    f.write_text(
        "ID,Question,Document,Mode,gold\n"
        "a1,What year was the typewriter patented?,multi_page.pdf,rag,1868\n"
        "\n"
        "a2,  ,multi_page.pdf,,\n"
        "a3,Who spoke?,talk.srt,fast,\n"
        '"a4","A question, with a comma",,,"x"\n',
        encoding="utf-8",
    )
    qf = read_questions(f)
    assert [r.row_id for r in qf.rows] == ["a1", "a2", "a3", "a4"]
    first = qf.rows[0]
    assert (first.line, first.question, first.doc, first.mode) == (
        2,
        "What year was the typewriter patented?",
        "multi_page.pdf",
        "rag",
    )
    assert first.extra == (("gold", "1868"),) and not first.error
    assert qf.rows[1].error == "line 4: the question is empty"
    assert "unknown mode 'fast'" in qf.rows[2].error
    assert qf.rows[3].question == "A question, with a comma" and qf.rows[3].doc == ""
    assert qf.notes == ("skipped 1 empty row(s) at line(s) 3",)


def test_csv_without_question_column_names_the_columns(tmp_path: Path) -> None:
    f = tmp_path / "q.csv"
    f.write_text("prompt,doc\nWhat is it?,a.pdf\n", encoding="utf-8")
    with pytest.raises(QuestionFileError, match=r"has no question column \(columns: prompt, doc\)"):
        read_questions(f)


def test_lara_jsonl_as_is_with_a_broken_line(tmp_path: Path) -> None:
    src = shared("lara/query/32k_paper_location.jsonl")
    lines = src.read_text(encoding="utf-8").splitlines()[:3]
    f = tmp_path / "q.jsonl"
    f.write_text("\n".join([lines[0], "", '{"question": "unterminated', lines[1], "[1, 2]", lines[2]]) + "\n")
    qf = read_questions(f)
    assert len(qf.rows) == 5
    ok = [r for r in qf.rows if not r.error]
    assert [r.question for r in ok] == [json.loads(x)["question"] for x in lines]
    assert ok[0].doc == json.loads(lines[0])["file"] == "32k_paper_0.md"
    extra = dict(ok[0].extra)
    assert extra["answer"] == json.loads(lines[0])["answer"] and extra["level"] == "location"
    bad = [r for r in qf.rows if r.error]
    assert bad[0].line == 3 and bad[0].error.startswith("line 3 is not valid JSON")
    assert bad[1].error == "line 5 is a JSON list, not an object"
    assert qf.notes == ("skipped 1 empty line(s): 2",)


def test_text_file_not_utf8_line_becomes_an_error_row(tmp_path: Path) -> None:
    f = tmp_path / "q.txt"
    f.write_bytes(
        b"Who is Legrand?\n\n" + "Qu'a dit le caf\xe9?\n".encode("latin-1") + b"What is the gold-bug?\n"
    )
    qf = read_questions(f)
    assert [r.question for r in qf.rows if not r.error] == ["Who is Legrand?", "What is the gold-bug?"]
    bad = [r for r in qf.rows if r.error]
    assert len(bad) == 1 and bad[0].line == 3
    assert bad[0].error == (
        "line 3 is not valid UTF-8 (byte 0xe9 at character 16); save the questions file as UTF-8"
    )
    assert "\ufffd" in bad[0].question  # shown, not crashed on
    assert qf.notes == ("skipped 1 empty line(s): 2",)


def test_utf16_and_bom_files_are_read(tmp_path: Path) -> None:
    f = tmp_path / "q.txt"
    f.write_bytes("Qu'a dit le café ?\n".encode("utf-16"))
    assert read_questions(f).rows[0].question == "Qu'a dit le café ?"
    g = tmp_path / "q.csv"
    g.write_bytes(b"\xef\xbb\xbfquestion\nWhat?\n")
    assert read_questions(g).rows[0].question == "What?"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("empty.txt", b"\n\n", "holds no questions"),
        ("bin.txt", b"\x00\x01\x02", "looks binary"),
        ("list.json", b'{"question": "x"}', "holds a JSON dict; give a list"),
    ],
)
def test_whole_file_problems_are_one_line(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(QuestionFileError, match=message) as exc:
        read_questions(f)
    assert "\n" not in str(exc.value)


def _docs() -> DocumentSet:
    return DocumentSet(
        [
            DocRef("d1", "reports/2024.pdf", "/x/reports/2024.pdf"),
            DocRef("d2", "talks/intro.srt", "/x/talks/intro.srt"),
            DocRef("d3", "old/2024.pdf", "/x/old/2024.pdf"),
        ],
        failed={"broken.pdf": "cannot read 'broken.pdf': not a readable PDF"},
    )


def test_documents_are_found_by_path_name_stem_or_id() -> None:
    docs = _docs()
    assert docs.find("talks/intro.srt").doc_id == "d2"  # type: ignore[union-attr]
    assert docs.find("INTRO.SRT").doc_id == "d2"  # type: ignore[union-attr]
    assert docs.find("intro").doc_id == "d2"  # type: ignore[union-attr]
    assert docs.find("d3").doc_id == "d3"  # type: ignore[union-attr]
    assert docs.find("old/2024.pdf").doc_id == "d3"  # type: ignore[union-attr]
    assert docs.find("2024.pdf") == (
        "document '2024.pdf' is ambiguous (old/2024.pdf, reports/2024.pdf); "
        "give its path relative to the folder"
    )
    assert docs.find("broken.pdf") == "document 'broken.pdf' could not be ingested: " + (
        "cannot read 'broken.pdf': not a readable PDF"
    )
    assert str(docs.find("nope.pdf")).startswith("unknown document 'nope.pdf'; known documents: old/2024.pdf")


def test_tasks_expand_per_document_and_keys_are_stable(tmp_path: Path) -> None:
    f = tmp_path / "q.csv"
    f.write_text(
        "question,doc,mode\nWhat changed?,,\nWho spoke?,intro,lc\nWho?,nope.pdf,\n", encoding="utf-8"
    )
    tasks = make_tasks(read_questions(f), _docs(), "rag")
    assert [(t.row.line, t.doc.label if t.doc else None, t.mode) for t in tasks] == [
        (2, "old/2024.pdf", "rag"),
        (2, "reports/2024.pdf", "rag"),
        (2, "talks/intro.srt", "rag"),
        (3, "talks/intro.srt", "lc"),
        (4, None, "rag"),
    ]
    assert tasks[-1].error.startswith("line 4: unknown document 'nope.pdf'")
    assert tasks[1].key == row_key("What  changed?", "d1", "rag")  # whitespace does not matter
    assert len({t.key for t in tasks}) == len(tasks)
    assert row_key("What changed?", "d1", "lc") != tasks[1].key


def test_journal_keeps_latest_ignores_torn_line_and_locks(tmp_path: Path) -> None:
    path = tmp_path / "out.csv.journal.jsonl"
    j = Journal(path)
    j.append(RowResult("k1", "failed", error="LLMError: down"))
    j.append(RowResult("k2", "ok", answer="Yes [1].", citations=({"n": 1, "quote": "q"},)))
    with pytest.raises(BatchError, match="another batch run is writing"):
        Journal(path)
    j.append(RowResult("k1", "ok", answer="Later."))
    j.close()
    with open(path, "a", encoding="utf-8") as fh:  # a crash in the middle of a record
        fh.write('{"key": "k3", "status": "o')
    j2 = Journal(path)
    assert {k: r.status for k, r in j2.records.items()} == {"k1": "ok", "k2": "ok"}
    assert j2.records["k2"].citations == ({"n": 1, "quote": "q"},)
    j2.append(RowResult("k3", "ok", answer="After the crash."))
    j2.close()
    assert Journal(path).records["k3"].answer == "After the crash."


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_tables_round_trip(tmp_path: Path, suffix: str) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    rows = [
        {
            "row": 2,
            "question": "Q, with comma",
            "answer": 'He said "yes".\nTwice.',
            "citations": [
                {
                    "n": 1,
                    "doc": "a.pdf",
                    "doc_id": "d1",
                    "where": "p. 3",
                    "pages": [3, 3],
                    "time": None,
                    "quote": "q",
                    "verified": True,
                    "model_check": "supported",
                }
            ],
            "tokens": 12,
            "seconds": 1.5,
            "error": "",
        },
        {
            "row": 3,
            "question": "Q2",
            "answer": "",
            "citations": [],
            "tokens": 0,
            "seconds": 0.0,
            "error": "bad",
        },
    ]
    cols = ["row", "question", "answer", "citations", "tokens", "seconds", "error"]
    out = check_output_path(tmp_path / f"r{suffix}")
    write_table(out, rows, cols)
    back = read_table(out)
    assert [r["answer"] for r in back] == ['He said "yes".\nTwice.', ""]
    cites = back[0]["citations"]
    cites = json.loads(cites) if isinstance(cites, str) else cites
    assert cites[0]["pages"] == [3, 3] and cites[0]["verified"] is True and cites[0]["where"] == "p. 3"
    assert cites[0]["model_check"] == "supported"
    assert not list(tmp_path.glob(".*tmp*"))


def test_output_path_problems(tmp_path: Path) -> None:
    with pytest.raises(QuestionFileError, match=r"unknown output type '.xlsx'; end the name with .csv"):
        check_output_path(tmp_path / "r.xlsx")
    with pytest.raises(QuestionFileError, match="the folder .* does not exist"):
        check_output_path(tmp_path / "nope" / "r.csv")
