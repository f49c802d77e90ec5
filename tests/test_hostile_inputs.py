"""Hostile but fair inputs (issue 18): each is read, or refused with one line naming the
file, the reason and the fix."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.ingest import WalkOptions, expand_paths, safe_destination
from pipeline.errors import IngestError
from pipeline.loaders import load_document
from pipeline.loaders.common import read_bytes
from tests.conftest import shared

TEXT = "Kestrels hover over fields. They dive on voles.\nA second line, with ümlauts and 中文.\n"


def _refused(path: Path) -> str:
    with pytest.raises(IngestError) as err:
        load_document(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"cannot read '{path}': ")
    return msg


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_decoded(tmp_path: Path, encoding: str) -> None:
    p = tmp_path / "u16.txt"
    p.write_bytes(TEXT.encode(encoding))
    doc = load_document(p)
    assert doc.text == TEXT
    assert doc.warnings == (f"decoded as {encoding.upper()} (no byte order mark)",)


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-be", "utf-16"])
def test_utf32_and_utf16_with_bom_are_decoded(tmp_path: Path, encoding: str) -> None:
    p = tmp_path / "bom.txt"
    data = TEXT.encode(encoding)
    if encoding == "utf-32-be":
        data = b"\x00\x00\xfe\xff" + data
    p.write_bytes(data)
    assert load_document(p).text == TEXT  # no NULs, no garbage


def test_a_few_nuls_after_8_kb_are_removed_with_a_warning(tmp_path: Path) -> None:
    p = tmp_path / "late_nuls.txt"
    body = "word " * 3000  # 15 KB
    p.write_bytes(body.encode() + b"\x00\x00tail text\n")
    doc = load_document(p)
    assert "\x00" not in doc.text and doc.text.endswith("tail text\n")
    assert doc.warnings == ("2 NUL character(s) removed (the first at character 15,000)",)


def test_many_nuls_after_8_kb_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "binary_tail.txt"
    p.write_bytes(b"word " * 3000 + b"\x00" * 5000)
    msg = _refused(p)
    assert "binary data in a text file (5,000 NUL characters, the first at character 15,000)" in msg
    assert "remove the NULs" in msg


def test_a_symlink_loop_named_directly_says_so(tmp_path: Path) -> None:
    p = tmp_path / "loop.txt"
    p.symlink_to(p)
    msg = _refused(p)
    assert (
        msg
        == f"cannot read '{p}': a symbolic link loop (the link points back to itself); fix or remove the link"
    )


def test_a_broken_link_says_where_it_points(tmp_path: Path) -> None:
    p = tmp_path / "broken.txt"
    p.symlink_to(tmp_path / "gone.txt")
    assert f"a broken symbolic link (to '{tmp_path / 'gone.txt'}')" in _refused(p)


def test_a_fifo_named_directly_is_not_a_regular_file_and_is_never_opened(tmp_path: Path) -> None:
    p = tmp_path / "pipe.txt"
    os.mkfifo(p)
    done: list[str] = []
    t = threading.Thread(target=lambda: done.append(_refused(p)), daemon=True)
    t.start()
    t.join(10)  # opening a FIFO with no writer would block forever
    assert done == [
        f"cannot read '{p}': not a regular file (a named pipe (FIFO)); "
        "copy its content into a file and ingest that"
    ]


def test_a_device_is_not_a_regular_file() -> None:
    with pytest.raises(IngestError, match=r"'/dev/zero': not a regular file \(a character device\)"):
        read_bytes(Path("/dev/zero"), 1000)  # never read: /dev/zero would fill the memory


def test_srt_times_beyond_100_hours_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "long.srt"
    p.write_text("1\n00:00:01,000 --> 00:00:02,000\nHello.\n\n2\n999:00:00,000 --> 999:00:01,000\nLater.\n")
    msg = _refused(p)
    assert "cue at line 6 is timed beyond 100 hours ('999:00:00,000 --> 999:00:01,000')" in msg
    assert msg.endswith("fix its timestamps (hours:minutes:seconds,milliseconds)")
    ok = tmp_path / "ok.srt"
    ok.write_text("1\n99:59:58,000 --> 99:59:59,000\nNear the end.\n")
    assert load_document(ok).segments[0].start == 99 * 3600 + 59 * 60 + 58  # type: ignore[index]


def test_a_repaired_pdf_is_ingested_with_a_notice(tmp_path: Path) -> None:
    data = shared("pdf/docling_multi_page.pdf").read_bytes()
    p = tmp_path / "damaged.pdf"
    p.write_bytes(data[: data.rfind(b"startxref")] + b"startxref\n999999\n%%EOF\n")  # broken xref
    doc = load_document(p)
    assert doc.pages is not None and len(doc.pages) == 5
    assert doc.warnings[0] == "the PDF was damaged and PyMuPDF repaired it; check that its text is complete"
    assert not load_document(shared("pdf/docling_multi_page.pdf")).warnings


def test_a_folder_walk_skips_links_out_of_the_folder_unless_asked(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the library")
    folder = tmp_path / "lib"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    (folder / "passwd.txt").symlink_to(outside / "secret.txt")
    (folder / "linked_dir").symlink_to(outside, target_is_directory=True)
    (folder / "inner.txt").symlink_to(folder / "a.txt")  # inside: read
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)  # a loop
    skipped: list[tuple[str, str]] = []
    names = [p.relative_to(folder).as_posix() for p in expand_paths([folder], WalkOptions(), skipped)]
    assert names == ["a.txt", "inner.txt", "sub/b.txt"]
    assert sorted(skipped) == [
        (
            str(folder / "linked_dir"),
            f"skipped: a symbolic link to '{outside}', outside the folder; pass --follow-links to read it",
        ),
        (
            str(folder / "passwd.txt"),
            f"skipped: a symbolic link to '{outside / 'secret.txt'}', outside the folder; "
            "pass --follow-links to read it",
        ),
    ]
    followed = expand_paths([folder], WalkOptions(follow_links=True))
    names = sorted(p.relative_to(folder).as_posix() for p in followed)
    assert names == ["a.txt", "inner.txt", "linked_dir/secret.txt", "passwd.txt", "sub/b.txt"]  # loop ends


def test_a_300_character_upload_name_keeps_its_suffix(tmp_path: Path) -> None:
    target = safe_destination(tmp_path, "r" * 300 + ".pdf")
    assert target.suffix == ".pdf" and len(target.name.encode()) <= 200
    wide = safe_destination(tmp_path, "报" * 200 + ".pdf")  # 600 bytes of UTF-8
    assert wide.suffix == ".pdf" and len(wide.name.encode()) <= 200
    wide.write_bytes(b"%PDF-1.4")  # the file system accepts the name


def test_uploads_whose_names_collide_never_overwrite_a_different_file(tmp_path: Path) -> None:
    first = safe_destination(tmp_path, "report?.pdf", b"first")
    assert first.name == "report_.pdf"
    first.write_bytes(b"first")
    second = safe_destination(tmp_path, "report*.pdf", b"second")
    assert second != first and second.name.startswith("report_-") and second.suffix == ".pdf"
    second.write_bytes(b"second")
    assert first.read_bytes() == b"first"
    assert safe_destination(tmp_path, "report?.pdf", b"first") == first  # same content: same file
    assert safe_destination(tmp_path, "report*.pdf", b"second") == second


def test_a_100000_character_question_is_refused_with_the_reason(tmp_path: Path) -> None:
    from app.service import QAService
    from app.settings import Settings

    svc = QAService(Settings(data_dir=tmp_path / "home"))
    try:
        with pytest.raises(ValueError) as err:
            svc.ask("why " * 25_000, mode="rag")
    finally:
        svc.close()
    assert str(err.value) == (
        "the question is 99,999 characters long, over the 4,000 a question may have; shorten it, "
        "or save the long text as a file, ingest it and ask about it"
    )


def test_a_folder_of_hostile_files_ingests_the_real_ones(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """Through the service with the real encoder: the statement page that used to be refused
    (duplicate chunk ids) is stored, a zip bomb fails with its line, a link out of the
    folder is skipped with a warning, and nothing stops the rest."""
    from app.service import QAService
    from app.settings import Settings
    from tests.test_resource_caps import _bomb

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    folder = tmp_path / "lib"
    folder.mkdir()
    table = "\n".join(f"Revenue {i}   1,234   5,678   9,012" for i in range(60))
    statement = folder / "statement.txt"
    statement.write_text(
        table + "\n\nSee accompanying notes to consolidated financial statements.\n\n\nF-7\n"
    )
    (folder / "good.txt").write_text(TEXT)
    (folder / "passwd.txt").symlink_to(outside / "secret.txt")
    bomb = _bomb(tmp_path, 30).rename(folder / "bomb.docx")
    settings = Settings(data_dir=tmp_path / "home", chunking={"max_tokens": 9, "overlap_tokens": 8})
    svc = QAService(settings, embedder=embedder)
    try:
        report = svc.ingest([folder])
        assert report.ingested == [str(folder / "good.txt"), str(statement)]
        assert [why for _p, why in report.failed] == [
            next(why for _p, why in report.failed if why.startswith(f"cannot read '{bomb}': a zip bomb"))
        ]
        assert report.warnings == [
            (
                str(folder / "passwd.txt"),
                f"skipped: a symbolic link to '{outside / 'secret.txt'}', outside the folder; "
                "pass --follow-links to read it",
            )
        ]
        docs = {Path(d.source_path).name: d for d in svc.documents()}
        chunks = svc.store.chunks_of(docs["statement.txt"].doc_id)
        assert len(chunks) == docs["statement.txt"].n_chunks > 20
        assert sum(c.text.startswith("See accompanying notes") for c in chunks) == 1
        assert svc.index.ids() == svc.store.all_vec_ids()
    finally:
        svc.close()


def test_a_long_file_reports_progress_within_the_file(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """A single large file is no longer a silent bar: chunking and embedding report how far
    they are."""
    from app.ingest import Progress
    from app.service import QAService
    from app.settings import Settings

    p = tmp_path / "long.txt"
    p.write_text(" ".join(f"word{i % 97} number {i}." for i in range(3000)))
    events: list[Progress] = []
    settings = Settings(data_dir=tmp_path / "home", chunking={"max_tokens": 8, "overlap_tokens": 0})
    svc = QAService(settings, embedder=embedder)
    try:
        report = svc.ingest([p], events.append)
    finally:
        svc.close()
    assert report.ingested == [str(p)] and report.chunks > 2000
    chunking = [e.part for e in events if e.stage == "chunk"]
    embedding = [e.part for e in events if e.stage == "embed"]
    assert len(chunking) >= 4 and chunking == sorted(chunking) and 0 < chunking[-1] < 1
    assert embedding[0] == 0 and len(embedding) >= 2 and embedding == sorted(embedding)
    assert [e.stage for e in events][0] == "load" and [e.stage for e in events][-2:] == ["done", "finished"]
