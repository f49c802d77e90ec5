"""HTML, DOCX, SRT and VTT loaders on real and realistic files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.errors import IngestError
from pipeline.loaders import load_document
from pipeline.tokens import RegexTokenCounter
from tests.conftest import shared

SRT_DIR = "transcripts/hf-course-en"


def test_srt_keeps_every_cue_and_its_time() -> None:
    path = shared(f"{SRT_DIR}/00_welcome-to-the-hugging-face-course.srt")
    doc = load_document(path)
    assert doc.media_type == "transcript" and doc.segments
    first = doc.segments[0]
    assert (first.start, first.end) == (5.85, 7.713)
    assert doc.text[first.span.start : first.span.end] == "Welcome to the Hugging Face Course."
    n_blocks = sum(1 for line in path.read_text(encoding="utf-8-sig").splitlines() if "-->" in line)
    assert len(doc.segments) == n_blocks
    for a, b in zip(doc.segments, doc.segments[1:]):
        assert a.span.end < b.span.start and a.start <= b.start


def test_transcript_chunks_cover_whole_cues() -> None:
    doc = load_document(shared(f"{SRT_DIR}/01_the-pipeline-function.srt"))
    assert doc.segments is not None
    chunks = chunk_document(doc, RegexTokenCounter(), ChunkingConfig(120, 20))
    assert len(chunks) > 3
    for c in chunks:
        assert doc.text[c.span.start : c.span.end] == c.text
        inside = [s for s in doc.segments if s.span.overlaps(c.span)]
        # Whole cues only: every touched cue lies entirely inside the chunk.
        assert all(c.span.start <= s.span.start and s.span.end <= c.span.end for s in inside)
        assert c.time == (inside[0].start, max(s.end for s in inside))


def test_file_names_with_parentheses() -> None:
    path = shared(f"{SRT_DIR}/08_what-happens-inside-the-pipeline-function-(pytorch).srt")
    assert load_document(path).title.endswith("(pytorch)")


def test_vtt_with_voices_notes_and_styles(tmp_path: Path) -> None:
    vtt = tmp_path / "talk.vtt"
    vtt.write_text(
        "WEBVTT - a talk\n\nNOTE this is a comment\n\nSTYLE\n::cue { color: red }\n\n"
        "intro\n00:01.000 --> 00:04.500 align:start\n<v Ada>Hello, <b>engines</b> of the world.\n\n"
        "01:02:03.250 --> 01:02:05.000\n<v.loud Bob>The difference engine\ncomputes tables.\n"
    )
    doc = load_document(vtt)
    assert doc.text == "Ada: Hello, engines of the world.\nBob: The difference engine computes tables."
    assert [(s.start, s.end) for s in doc.segments or ()] == [(1.0, 4.5), (3723.25, 3725.0)]


@pytest.mark.parametrize(
    "body, reason",
    [
        ("1\n00:00:01,000 -> 00:00:02,000\nhi\n", "no 'start --> end' timing line"),
        ("1\n00:00:xx,000 --> 00:00:02,000\nhi\n", "malformed timestamp at line 2"),
        ("1\n00:00:05,000 --> 00:00:02,000\nhi\n", "ends before it starts"),
    ],
)
def test_malformed_subtitles_are_reported(tmp_path: Path, body: str, reason: str) -> None:
    path = tmp_path / "bad.srt"
    path.write_text(body)
    with pytest.raises(IngestError, match=reason) as info:
        load_document(path)
    assert str(path) in str(info.value)


def test_vtt_without_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.vtt"
    path.write_text("00:01.000 --> 00:02.000\nhello\n")
    with pytest.raises(IngestError, match="WEBVTT"):
        load_document(path)


def test_html_main_text_without_navigation(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Lighthouses of Norway</title><style>p{color:red}</style></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/about'>About us</a></nav>"
        "<div class='cookie-banner'>We use cookies</div>"
        "<main><h1>Lighthouses</h1><p>The Lindesnes lighthouse was first lit in 1656.</p>"
        "<ul><li>Height: 16 m</li><li>Range: 19 nmi</li></ul>"
        "<script>var tracking = 1;</script><p>It is the oldest in Norway &amp; still active.</p></main>"
        "<footer>Copyright 2024</footer></body></html>"
    )
    doc = load_document(page)
    assert doc.media_type == "html" and doc.title == "Lighthouses of Norway"
    assert "# Lighthouses" in doc.text and "first lit in 1656" in doc.text
    assert "- Height: 16 m\n- Range: 19 nmi" in doc.text and "oldest in Norway & still active" in doc.text
    for junk in ("Home", "About us", "cookies", "tracking", "Copyright", "color:red"):
        assert junk not in doc.text


def test_html_without_main_keeps_body_minus_boilerplate(tmp_path: Path) -> None:
    page = tmp_path / "plain.htm"
    page.write_text(
        "<body><div id='sidebar'>Links</div><p>First paragraph.<br>Second line.</p><p>Third.</p></body>"
    )
    assert load_document(page).text == "First paragraph.\nSecond line.\n\nThird."


def test_docx_paragraphs_headings_and_tables(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Fleet report"
    d.add_heading("Fleet", level=1)
    d.add_paragraph("The company operates 12 vessels in the North Sea.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Vessel", "Tonnage"
    table.cell(1, 0).text, table.cell(1, 1).text = "Nordkapp", "3,200"
    d.add_paragraph("Maintenance is done in Bergen.")
    path = tmp_path / "fleet.docx"
    d.save(path)
    doc = load_document(path)
    assert doc.title == "Fleet report" and doc.media_type == "docx"
    assert doc.text == (
        "# Fleet\n\nThe company operates 12 vessels in the North Sea.\n\n"
        "Vessel | Tonnage\nNordkapp | 3,200\n\nMaintenance is done in Bergen."
    )


def test_bad_docx_files(tmp_path: Path) -> None:
    fake = tmp_path / "fake.docx"
    fake.write_bytes(b"just some bytes, not a zip")
    with pytest.raises(IngestError, match="not a valid DOCX"):
        load_document(fake)
    ole = tmp_path / "locked.docx"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    with pytest.raises(IngestError, match="encrypted or legacy"):
        load_document(ole)
