"""User, document and model text is printed as text: no rich markup, no forged lines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import app.terminal.cli as cli
from app.terminal.text import line, shown_name, shown_text
from pipeline.types import Answer, Citation, RouteDecision, Span, Usage

LONGQA = Path(sys.executable).with_name("longqa")
MARKUP = "Revenue rose [/bold] and [link=http://evil.example/x]click[/link] [red]x[/] \\[b]"


def test_names_show_control_characters_and_keep_brackets() -> None:
    assert shown_name("a\nfailed  b\r\t\x1b[31m") == "a\\nfailed  b\\r\\t\\x1b[31m"
    assert shown_name("t14_dir[/]kestrel.txt") == "t14_dir[/]kestrel.txt"
    assert shown_name("x\u202etxt.exe") == "x\\u202etxt.exe"
    assert shown_text("two\nlines\x07\tok") == "two\nlines\\x07\tok"


def _render(obj: object) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=300, color_system="truecolor").print(obj, highlight=False)
    return buf.getvalue()


def test_markup_in_a_line_prints_literally_with_no_hyperlink() -> None:
    shown = _render(line(("ok", "green"), " ", MARKUP))
    assert "\x1b]8;" not in shown  # no OSC 8 hyperlink
    plain = io.StringIO()
    Console(file=plain, width=300).print(line(MARKUP))
    assert plain.getvalue().rstrip("\n") == MARKUP


def _answer(text: str, quote: str, source: str, model: str) -> Answer:
    cite = Citation(1, "d1", source, "c1", Span(0, 5), (3, 3), None, quote, True)
    return Answer(
        question="q",
        text=text,
        mode="rag",
        route=RouteDecision("rag", "reason with [/] in it"),
        citations=(cite,),
        usage=Usage(10, 5, 1.0),
        model=model,
    )


def test_print_answer_prints_document_and_model_text_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buf, width=400, force_terminal=False))
    ans = _answer(MARKUP + " [1]", "quote " + MARKUP, "/d/t14_dir[/]kestrel\nfailed x.txt", "m[/bold]")
    cli.print_answer(ans)  # used to raise MarkupError on '[/bold]'
    text = buf.getvalue()
    assert text.startswith(MARKUP + " [1]\n")
    assert "RAG — reason with [/] in it" in text
    assert "[1] ]kestrel\\nfailed x.txt, p. 3 (verified): “quote " + MARKUP in text
    assert "model m[/bold]" in text
    assert not any(ln.startswith("failed") for ln in text.splitlines())


def _run(args: list[str], home: Path, model_cache: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "COLUMNS": "400",
    }
    return subprocess.run(
        [str(LONGQA), *args], env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )


def test_hostile_names_and_text_through_ingest_docs_delete(tmp_path: Path, model_cache: Path) -> None:
    home = tmp_path / "home"
    folder = tmp_path / "t14_dir["
    folder.mkdir()
    kestrel = folder / "]kestrel.txt"  # the path contains '[/]'
    kestrel.write_text("The kestrel hovers over the field before it dives on a vole.\n")
    marked = tmp_path / "[bold]marked[red].txt"  # (no "/" in a file name)
    marked.write_text("A document that says " + MARKUP + " in its text.\n")
    forged = tmp_path / "evil\ningested  ok.txt"  # a newline in the name
    forged.write_text("Nothing but an honest sentence in a badly named file.\n")
    bad = tmp_path / "[link=mailto:x]bad[bold].pdf"
    bad.write_bytes(b"not a pdf")

    r = _run(["ingest", str(folder), str(marked), str(forged), str(bad)], home, model_cache)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert f"ingested  {kestrel}" in lines
    assert f"ingested  {marked}" in lines
    assert f"ingested  {tmp_path}/evil\\ningested  ok.txt" in lines
    assert not any(ln.startswith("ingested  ok.txt") for ln in lines)  # no forged line
    assert (
        f"failed    cannot read '{bad}': not a readable PDF (FileDataError); "
        "check that the file is not corrupt" in lines
    )
    assert "3 ingested, 0 unchanged, 1 failed, 3 chunks added" in lines

    r = _run(["docs"], home, model_cache)
    assert r.returncode == 0, r.stderr
    assert str(kestrel) in r.stdout and str(marked) in r.stdout and "evil\\ningested  ok.txt" in r.stdout
    docs = json.loads(_run(["docs", "--json"], home, model_cache).stdout)
    by_path = {d["source_path"]: d["doc_id"] for d in docs}

    # delete: a script must confirm; ids and paths both name a document.
    r = _run(["delete", str(kestrel)], home, model_cache)
    assert r.returncode == 2
    assert "error: not deleting without confirmation; add --yes to delete from a script" in r.stderr
    r = _run(["delete", str(kestrel), "--yes"], home, model_cache)
    assert r.returncode == 0, r.stderr
    assert f"will delete {by_path[str(kestrel)]}  {kestrel}" in r.stdout
    assert "deleted   1 document(s), 1 chunks" in r.stderr
    r = _run(["delete", by_path[str(forged)], "-y"], home, model_cache)
    assert r.returncode == 0, r.stderr
    r = _run(["delete", "no-such-doc", "--yes"], home, model_cache)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "error: no document with id or path 'no-such-doc'; see 'longqa docs' for ids and paths"
    )
    left = json.loads(_run(["docs", "--json"], home, model_cache).stdout)
    assert [d["source_path"] for d in left] == [str(marked)]
