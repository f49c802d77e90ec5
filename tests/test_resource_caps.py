"""Caps on what a file may cost once parsed (issue 18): inflated DOCX size, characters per
document, and chunking memory on a 48 MB single line."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import pipeline.loaders.docx as docx_loader
from pipeline.errors import IngestError
from pipeline.loaders import LoaderOptions, load_document


def _docx(tmp_path: Path, name: str = "ok.docx") -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Kestrels", level=1)
    d.add_paragraph("Kestrels hover before they dive.")
    p = tmp_path / name
    d.save(str(p))
    return p


def _bomb(tmp_path: Path, inflated_mb: int) -> Path:
    """A real DOCX whose document.xml is replaced by inflated_mb MB of repeated paragraphs."""
    src = zipfile.ZipFile(_docx(tmp_path, "seed.docx"))
    para = b"<w:p><w:r><w:t>kestrel</w:t></w:r></w:p>"
    body = para * (inflated_mb * 1_000_000 // len(para))
    xml = src.read("word/document.xml")
    head, tail = xml.split(b"<w:body>", 1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for item in src.infolist():
            data = (
                head + b"<w:body>" + body + tail if item.filename == "word/document.xml" else src.read(item)
            )
            z.writestr(item.filename, data)
    p = tmp_path / "bomb.docx"
    p.write_bytes(buf.getvalue())
    return p


def test_a_docx_zip_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path, 40)
    assert bomb.stat().st_size < 400_000
    t0 = time.perf_counter()
    with pytest.raises(IngestError) as err:
        load_document(bomb)
    assert time.perf_counter() - t0 < 2
    msg = str(err.value)
    assert msg.startswith(f"cannot read '{bomb}': a zip bomb: 'word/document.xml' inflates from ")
    assert " KB to 40 MB; open and re-save it in a word processor if it is a real document" in msg
    assert "Kestrels hover" in load_document(_docx(tmp_path)).text  # a real one still loads


def test_a_docx_over_the_inflated_xml_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _docx(tmp_path)
    monkeypatch.setattr(docx_loader, "MAX_XML_BYTES", 100_000)  # a real DOCX has more XML than that
    with pytest.raises(
        IngestError, match=r"too large once unzipped \(its XML inflates to 0\.\d MB > 0\.1 MB\)"
    ):
        load_document(p)


def test_characters_per_document_are_capped(tmp_path: Path) -> None:
    p = tmp_path / "long.txt"
    p.write_text("word " * 1000)
    assert len(load_document(p, LoaderOptions(max_chars=5000)).text) == 5000
    with pytest.raises(IngestError) as err:
        load_document(p, LoaderOptions(max_chars=4999))
    assert str(err.value) == (
        f"cannot read '{p}': too much text (5,000 characters > 4,999); "
        "split it, or raise LONGQA_INGEST__MAX_CHARS"
    )


# Peak RSS as VmHWM of this process's own memory: ru_maxrss also counts the parent's RSS at
# exec (Linux keeps it across execve), so a pytest process grown by earlier tests would show.
CHUNK_48MB = """
import random, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.loaders import load_document
from pipeline.tokens import RegexTokenCounter
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
p = Path(sys.argv[1])
rnd = random.Random(0)
words = ["alpha", "beta", "revenue", "consolidated", "x" * 150, "1,234", "notes", "the"]
with p.open("w") as f:  # written in pieces so that making the file does not set the peak
    left = 48_000_000
    while left > 0:
        piece = " ".join(rnd.choice(words) for _ in range(100_000)) + " "
        f.write(piece[:left])
        left -= len(piece[:left])
before = peak_mb()
chunks = chunk_document(load_document(p), RegexTokenCounter(), ChunkingConfig(240, 40))
print(len(chunks), before, peak_mb())
"""


def test_chunking_a_48_mb_single_line_needs_bounded_memory(tmp_path: Path) -> None:
    """It took 6.1 GB (units for millions of words); now the peak is the text and the chunks."""
    r = subprocess.run(
        [sys.executable, "-c", CHUNK_48MB, str(tmp_path / "line.txt"), str(Path(__file__).parents[1])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    n_chunks, before_mb, peak_mb = map(int, r.stdout.split())
    assert n_chunks > 20_000
    assert before_mb < 200, f"making the file alone peaked at {before_mb} MB"
    assert peak_mb < 1000, f"peak RSS {peak_mb} MB (before loading: {before_mb} MB)"


def _pdf(path: Path, pages: int) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page().insert_text((72, 72), f"Page {i + 1}: the kestrel hovers over the field.")
    doc.save(str(path))
    return path


def test_pdfs_over_the_page_cap_are_refused_before_parsing(tmp_path: Path) -> None:
    p = _pdf(tmp_path / "three.pdf", 3)
    assert len(load_document(p, LoaderOptions(max_pages=3)).pages) == 3
    with pytest.raises(IngestError) as err:
        load_document(p, LoaderOptions(max_pages=2))
    assert str(err.value) == (
        f"cannot read '{p}': too many pages (3 > 2); split it, or raise LONGQA_INGEST__MAX_PAGES"
    )


def test_reading_one_file_stops_at_its_time_limit(tmp_path: Path) -> None:
    p = _pdf(tmp_path / "slow.pdf", 3)
    with pytest.raises(IngestError, match=r"reading it took over 0 s \(stopped at page 1 of 3\); split it"):
        load_document(p, LoaderOptions(max_seconds=0))


def test_media_over_the_length_cap_is_refused_before_transcribing(tmp_path: Path) -> None:
    import wave

    pytest.importorskip("av", reason="PyAV comes with the asr extra (pip install 'longqa[asr]')")
    from pipeline.loaders import ASRConfig

    p = tmp_path / "talk.wav"
    with wave.open(str(p), "wb") as w:  # 90 s of silence, 8 kHz mono
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 90)
    # No model is loaded for this: the length comes from the header, before any decoding.
    asr = ASRConfig(model_dir=str(tmp_path / "no-model-here"))
    with pytest.raises(IngestError) as err:
        load_document(p, LoaderOptions(asr=asr, max_media_minutes=1))
    assert "too long to transcribe (2 minutes > 1)" in str(err.value)  # 1.5 minutes, rounded
    assert "ffmpeg -f segment" in str(err.value)
