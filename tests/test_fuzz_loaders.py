"""Fuzz the loaders with 240 malformed files made from real seeds: every file either loads
into a consistent Document or fails with a one-line IngestError naming it. Nothing crashes."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from pipeline.errors import IngestError
from pipeline.loaders import load_document
from tests.conftest import shared

N_PER_SEED = 40


def _seeds() -> dict[str, bytes]:
    import docx

    d = docx.Document()
    d.add_heading("Seed", 1)
    d.add_paragraph("A paragraph with some words and the number 42.")
    buf = io.BytesIO()
    d.save(buf)
    return {
        ".pdf": shared("pdf/docling_multi_page.pdf").read_bytes(),
        ".srt": shared("transcripts/hf-course-en/01_the-pipeline-function.srt").read_bytes()[:3000],
        ".vtt": b"WEBVTT\n\n00:01.000 --> 00:02.000\n<v A>Hi there.\n\n00:02.500 --> 00:04.000\nBye now.\n",
        ".html": b"<html><head><title>T</title></head><body><nav>menu</nav><main><p>Main text &amp; more."
        b"</p><ul><li>item</li></ul></main></body></html>",
        ".docx": buf.getvalue(),
        ".txt": "Plain text with unicode: caf\u00e9, \u00f8l, \u65e5\u672c.\n".encode() * 20,
    }


def _mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(6)
    b = bytearray(data)
    if kind == 0:  # truncate
        return bytes(b[: rng.randrange(0, len(b))])
    if kind == 1:  # flip bytes
        for _ in range(rng.randrange(1, 50)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:  # insert junk
        pos = rng.randrange(len(b))
        return bytes(b[:pos]) + rng.randbytes(rng.randrange(1, 500)) + bytes(b[pos:])
    if kind == 3:  # zero a block
        pos = rng.randrange(len(b))
        b[pos : pos + rng.randrange(1, 2000)] = b"\x00" * len(b[pos : pos + 2000])
        return bytes(b)
    if kind == 4:  # random bytes
        return rng.randbytes(rng.randrange(0, 3000))
    return bytes(b) * 2 if len(b) < 10000 else bytes(b[::2])  # duplicated or decimated


def _check_document(doc, path: Path) -> None:  # type: ignore[no-untyped-def]
    n = len(doc.text)
    assert doc.text.strip()
    for p in doc.pages or ():
        assert 0 <= p.span.start <= p.span.end <= n
    for s in doc.segments or ():
        assert 0 <= s.span.start <= s.span.end <= n and s.start <= s.end


def test_malformed_corpus(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    seeds = _seeds()
    loaded = failed = 0
    for suffix, seed in seeds.items():
        for i in range(N_PER_SEED):
            path = tmp_path / f"fuzz_{i:03d}{suffix}"
            path.write_bytes(_mutate(rng, seed))
            try:
                doc = load_document(path)
            except IngestError as exc:
                msg = str(exc)
                assert msg.startswith(f"cannot read '{path}': ") and "\n" not in msg, msg
                failed += 1
                continue
            except Exception as exc:  # pragma: no cover - this is the bug the test looks for
                pytest.fail(f"{path.name}: {type(exc).__name__}: {exc}")
            _check_document(doc, path)
            loaded += 1
    assert loaded + failed == N_PER_SEED * len(seeds) >= 200
    assert failed > 20 and loaded > 20  # the corpus really exercises both outcomes
