"""SRT and WebVTT subtitles: one line of text per cue, each cue's time and span kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash, doc_id_for
from pipeline.loaders.text import decode_text
from pipeline.types import Document, Span, TimedSegment

_TS = r"(?:(\d{1,3}):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+([^>]+)>")
# No real recording is this long; a later time is a typo or a broken file.
MAX_HOURS = 100


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _clean(lines: list[str]) -> str:
    joined = " ".join(line.strip() for line in lines if line.strip())
    joined = _VOICE.sub(lambda m: f"{m.group(1).strip()}: ", joined)
    joined = _TAG.sub("", joined)
    return re.sub(r"\s+", " ", joined).strip()


def parse_cues(path: Path, text: str, vtt: bool) -> list[Cue]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    if vtt:
        if not lines or not lines[0].lstrip("\ufeff").startswith("WEBVTT"):
            raise IngestError(
                str(path), "not a WebVTT file (no 'WEBVTT' header)", "check the file or its suffix"
            )
        i = 1
    cues: list[Cue] = []
    n = len(lines)
    while i < n:
        # Skip blank lines between blocks.
        while i < n and not lines[i].strip():
            i += 1
        if i >= n:
            break
        block_start = i
        block: list[str] = []
        while i < n and lines[i].strip():
            block.append(lines[i])
            i += 1
        if vtt and block[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing_at = next((k for k, line in enumerate(block[:2]) if "-->" in line), None)
        if timing_at is None:
            raise IngestError(
                str(path),
                f"malformed cue at line {block_start + 1}: no 'start --> end' timing line",
                "fix or remove that cue",
            )
        m = _TIMING.match(block[timing_at])
        if not m:
            raise IngestError(
                str(path),
                f"malformed timestamp at line {block_start + timing_at + 1}: "
                f"'{block[timing_at].strip()[:60]}'",
                "timestamps look like 00:01:02,500 --> 00:01:04,000",
            )
        start = _seconds(*m.group(1, 2, 3, 4))
        end = _seconds(*m.group(5, 6, 7, 8))
        if max(start, end) > MAX_HOURS * 3600:
            raise IngestError(
                str(path),
                f"cue at line {block_start + timing_at + 1} is timed beyond {MAX_HOURS} hours "
                f"('{block[timing_at].strip()[:60]}')",
                "fix its timestamps (hours:minutes:seconds,milliseconds)",
            )
        if end < start:
            raise IngestError(
                str(path),
                f"cue at line {block_start + timing_at + 1} ends before it starts",
                "fix its timestamps",
            )
        cue_text = _clean(block[timing_at + 1 :])
        if cue_text:
            cues.append(Cue(start, end, cue_text))
    return cues


def load_subtitles(path: Path, data: bytes) -> Document:
    vtt = path.suffix.lower() == ".vtt"
    text = decode_text(path, data)
    cues = parse_cues(path, text, vtt)
    if not cues:
        raise IngestError(str(path), "no subtitle cues with text", "check that the file is a subtitle file")
    return transcript_document(path, cues, content_hash(data))


def transcript_document(path: Path, cues: list[Cue], digest: str) -> Document:
    """A transcript Document: one cue per line, each cue a TimedSegment over its line."""
    parts: list[str] = []
    segments: list[TimedSegment] = []
    offset = 0
    for k, cue in enumerate(cues):
        if parts:
            parts.append("\n")
            offset += 1
        parts.append(cue.text)
        segments.append(TimedSegment(k, cue.start, cue.end, Span(offset, offset + len(cue.text))))
        offset += len(cue.text)
    return Document(
        doc_id=doc_id_for(digest),
        source_path=str(path),
        media_type="transcript",
        text="".join(parts),
        content_hash=digest,
        segments=tuple(segments),
        title=path.stem,
    )
