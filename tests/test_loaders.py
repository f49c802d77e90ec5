"""Loaders on real files, and bad input that must fail with a one-line reason."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from pipeline.errors import IngestError
from pipeline.loaders import load_document
from tests.conftest import shared


def test_pdf_pages_and_offsets_match_pymupdf() -> None:
    path = shared("pdf/docling_redp5110_sampled.pdf")
    doc = load_document(path)
    assert doc.media_type == "pdf"
    assert doc.pages is not None and len(doc.pages) == 18
    with pymupdf.open(path) as pdf:
        for page, ps in zip(pdf, doc.pages):
            assert doc.text[ps.span.start : ps.span.end] == page.get_text("text").rstrip()
    # Page order and non-overlap.
    for a, b in zip(doc.pages, doc.pages[1:]):
        assert a.span.end <= b.span.start
    assert "almost 5000" in doc.text[doc.pages[4].span.start : doc.pages[4].span.end]
    # Page 17 is an image page: reported, not silently empty.
    assert any("17" in w for w in doc.warnings)


def test_text_loader_reads_lara_book() -> None:
    path = shared("lara/32k/book/The Time Machine.txt")
    doc = load_document(path)
    assert doc.media_type == "text" and doc.pages is None
    assert doc.text.startswith("I.\nIntroduction\nThe Chrono Voyager")  # LaRA renamed the hero
    assert doc.doc_id == doc.content_hash[:16]


def _one_line_error(path: Path) -> str:
    with pytest.raises(IngestError) as info:
        load_document(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_bad_inputs_name_the_file_and_the_reason(tmp_path: Path) -> None:
    assert "no such file" in _one_line_error(tmp_path / "missing.pdf")

    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    assert "not a readable PDF" in _one_line_error(corrupt)

    unsupported = tmp_path / "data.xyz"
    unsupported.write_text("hello")
    assert "unsupported file type '.xyz'" in _one_line_error(unsupported)

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert "empty" in _one_line_error(empty)

    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02\x03" * 100)
    assert "binary" in _one_line_error(binary)

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    assert "not valid UTF-8" in _one_line_error(latin1)


def test_encrypted_pdf_is_reported(tmp_path: Path) -> None:
    src = pymupdf.open()
    src.new_page().insert_text((72, 72), "secret text")
    path = tmp_path / "locked.pdf"
    src.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    assert "encrypted" in _one_line_error(path)


def test_scanned_pdf_without_text_layer_is_refused(tmp_path: Path) -> None:
    src = pymupdf.open()
    page = src.new_page()
    page.draw_rect(pymupdf.Rect(50, 50, 200, 200), color=(0, 0, 0), fill=(0.5, 0.5, 0.5))
    path = tmp_path / "scan.pdf"
    src.save(path)
    assert "no text layer" in _one_line_error(path)
